"""Serving roles of a model's versions, their changes, and the audit trail of those changes.

Roles (docs/ARCHITECTURE.md): the ``champion`` serves; a ``challenger`` takes ``percent``
(0-100) of the traffic as a canary; a ``shadow`` is scored on every event but never served.
A version holds at most one role. Every change bumps the model's ``revision`` (a watcher polls
:class:`ServingSet` and compares that one integer) and appends one :class:`RoleEvent` to the
history: who, when, which role, from which version to which, the percent and why.

The transitions here are pure (state in, state and event out); the registry backends apply
them under their lock and store the result. ``previous_champions`` is the rollback stack: a
promotion pushes the outgoing champion, a rollback pops it back.
"""

from __future__ import annotations

import getpass
import socket
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stream_infer.errors import ModelNotFoundError, ModelRoleError

Role = Literal["champion", "challenger", "shadow"]
Action = Literal["promote", "rollback", "canary", "shadow", "clear"]
LoadState = Literal["ready", "failed"]
ROLES: tuple[Role, ...] = ("champion", "challenger", "shadow")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Canary(_Record):
    """The challenger and the share of traffic it serves (KServe's canaryTrafficPercent)."""

    version: int = Field(ge=1)
    percent: int = Field(ge=0, le=100)


class ServingSet(_Record):
    """What to load and route: cheap to read, compared by ``revision`` alone."""

    name: str
    revision: int = Field(ge=0)
    champion: int
    challenger: Canary | None = None
    shadow: int | None = None


class RoleEvent(_Record):
    """One role change. ``cleared`` names roles the moved version gave up by taking this one."""

    revision: int = Field(ge=1)
    at: datetime
    actor: str
    action: Action
    role: Role
    from_version: int | None
    to_version: int | None
    percent: int | None = None
    reason: str = ""
    cleared: tuple[Role, ...] = ()


class RoleState(_Record):
    """A model's current roles; ``previous_champions`` is the rollback stack, oldest first."""

    revision: int = Field(default=0, ge=0)
    champion: int | None = None
    challenger: Canary | None = None
    shadow: int | None = None
    previous_champions: tuple[int, ...] = ()

    def roles_of(self, version: int) -> list[Role]:
        """The roles ``version`` holds (at most one; a list for display)."""
        held: list[Role] = []
        if self.champion == version:
            held.append("champion")
        if self.challenger is not None and self.challenger.version == version:
            held.append("challenger")
        if self.shadow == version:
            held.append("shadow")
        return held

    def serving(self, name: str) -> ServingSet:
        """The serving set.

        Raises:
            ModelNotFoundError: the model has no champion.
        """
        if self.champion is None:
            raise ModelNotFoundError(
                f"model {name!r} has no champion (promote a version: "
                f"`stream-infer model promote {name} VERSION`)"
            )
        return ServingSet(
            name=name,
            revision=self.revision,
            champion=self.champion,
            challenger=self.challenger,
            shadow=self.shadow,
        )


class VersionStatus(_Record):
    """A load outcome one reporter (a worker, a sidecar) recorded for a version."""

    state: LoadState
    reason: str = ""
    at: datetime
    reporter: str


def default_actor() -> str:
    """``user@host`` of this process, for the audit trail."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def latest_status(statuses: dict[str, VersionStatus]) -> VersionStatus | None:
    """The most recent of a version's reports, or None."""
    return max(statuses.values(), key=lambda s: s.at, default=None)


def _without(state: RoleState, version: int) -> tuple[dict[str, object], tuple[Role, ...]]:
    """Field updates that take ``version`` out of the challenger and shadow roles."""
    updates: dict[str, object] = {}
    cleared: list[Role] = []
    if state.challenger is not None and state.challenger.version == version:
        updates["challenger"] = None
        cleared.append("challenger")
    if state.shadow == version:
        updates["shadow"] = None
        cleared.append("shadow")
    return updates, tuple(cleared)


def _change(
    state: RoleState,
    updates: dict[str, object],
    *,
    action: Action,
    role: Role,
    from_version: int | None,
    to_version: int | None,
    actor: str | None,
    reason: str,
    percent: int | None = None,
    cleared: tuple[Role, ...] = (),
) -> tuple[RoleState, RoleEvent]:
    revision = state.revision + 1
    event = RoleEvent(
        revision=revision,
        at=datetime.now(UTC),
        actor=actor or default_actor(),
        action=action,
        role=role,
        from_version=from_version,
        to_version=to_version,
        percent=percent,
        reason=reason,
        cleared=cleared,
    )
    return state.model_copy(update={**updates, "revision": revision}), event


def promote(
    state: RoleState, version: int, *, actor: str | None = None, reason: str = ""
) -> tuple[RoleState, RoleEvent]:
    """``version`` becomes champion; the outgoing champion goes on the rollback stack.

    Raises:
        ModelRoleError: ``version`` is already the champion.
    """
    if state.champion == version:
        raise ModelRoleError(f"v{version} is already the champion")
    updates, cleared = _without(state, version)
    if state.champion is not None:
        updates["previous_champions"] = (*state.previous_champions, state.champion)
    updates["champion"] = version
    return _change(
        state, updates, action="promote", role="champion", from_version=state.champion,
        to_version=version, actor=actor, reason=reason, cleared=cleared,
    )  # fmt: skip


def rollback(
    state: RoleState, *, actor: str | None = None, reason: str = ""
) -> tuple[RoleState, RoleEvent]:
    """The previous champion serves again (the stack is popped; repeated rollbacks walk back).

    Raises:
        ModelRoleError: there is no previous champion.
    """
    if not state.previous_champions:
        raise ModelRoleError("no previous champion to roll back to")
    target = state.previous_champions[-1]
    updates, cleared = _without(state, target)
    updates["previous_champions"] = state.previous_champions[:-1]
    updates["champion"] = target
    return _change(
        state, updates, action="rollback", role="champion", from_version=state.champion,
        to_version=target, actor=actor, reason=reason, cleared=cleared,
    )  # fmt: skip


def previous_champion(state: RoleState) -> int | None:
    """The version :func:`rollback` would bring back, or None."""
    return state.previous_champions[-1] if state.previous_champions else None


def canary(
    state: RoleState, version: int, percent: int, *, actor: str | None = None, reason: str = ""
) -> tuple[RoleState, RoleEvent]:
    """``version`` becomes the challenger at ``percent`` of the traffic (0 stops the canary
    without forgetting it, as KServe's rollback does).

    Raises:
        ModelRoleError: the percent is outside 0-100, or ``version`` is the champion.
    """
    if not 0 <= percent <= 100:
        raise ModelRoleError(f"canary percent must be 0-100, got {percent}")
    if state.champion == version:
        raise ModelRoleError(f"v{version} is the champion; it cannot also be the challenger")
    updates, cleared = _without(state, version)
    cleared = tuple(r for r in cleared if r != "challenger")
    updates["challenger"] = Canary(version=version, percent=percent)
    return _change(
        state, updates, action="canary", role="challenger",
        from_version=state.challenger.version if state.challenger else None,
        to_version=version, percent=percent, actor=actor, reason=reason, cleared=cleared,
    )  # fmt: skip


def shadow(
    state: RoleState, version: int, *, actor: str | None = None, reason: str = ""
) -> tuple[RoleState, RoleEvent]:
    """``version`` becomes the shadow (scored on every event, never served).

    Raises:
        ModelRoleError: ``version`` is the champion, or already the shadow.
    """
    if state.champion == version:
        raise ModelRoleError(f"v{version} is the champion; it cannot also be the shadow")
    if state.shadow == version:
        raise ModelRoleError(f"v{version} is already the shadow")
    updates, cleared = _without(state, version)
    updates["shadow"] = version
    return _change(
        state, updates, action="shadow", role="shadow", from_version=state.shadow,
        to_version=version, actor=actor, reason=reason, cleared=cleared,
    )  # fmt: skip


def clear(
    state: RoleState, role: str, *, actor: str | None = None, reason: str = ""
) -> tuple[RoleState, RoleEvent]:
    """Nobody holds ``role`` any more (challenger or shadow).

    Raises:
        ModelRoleError: ``role`` is the champion (promote or roll back instead), is not a
            role, or is not held.
    """
    if role == "champion":
        raise ModelRoleError(
            "the champion cannot be cleared (promote another version or roll back)"
        )
    if role == "challenger":
        if state.challenger is None:
            raise ModelRoleError("there is no challenger to clear")
        return _change(
            state, {"challenger": None}, action="clear", role="challenger",
            from_version=state.challenger.version, to_version=None, actor=actor, reason=reason,
        )  # fmt: skip
    if role == "shadow":
        if state.shadow is None:
            raise ModelRoleError("there is no shadow to clear")
        return _change(
            state, {"shadow": None}, action="clear", role="shadow",
            from_version=state.shadow, to_version=None, actor=actor, reason=reason,
        )  # fmt: skip
    raise ModelRoleError(f"unknown role {role!r} (one of {', '.join(ROLES)})")

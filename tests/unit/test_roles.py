"""Role transitions, the rollback stack and semantic versions, without any storage."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stream_infer.errors import ModelNotFoundError, ModelRoleError
from stream_infer.model import roles
from stream_infer.model.manifest import Manifest, next_semver
from stream_infer.model.roles import Canary, RoleState

FEATURES = ("a", "b", "c")


def test_promotions_stack_and_rollbacks_walk_back() -> None:
    state = RoleState()
    for version in (1, 2, 3):
        state, event = roles.promote(state, version, actor="ci", reason=f"v{version}")
        assert event.action == "promote" and event.to_version == version
    assert state.champion == 3 and state.previous_champions == (1, 2) and state.revision == 3
    state, event = roles.rollback(state, actor="ci", reason="bad auc")
    assert (state.champion, event.from_version, event.to_version) == (2, 3, 2)
    state, _ = roles.rollback(state)
    assert state.champion == 1 and state.previous_champions == ()
    with pytest.raises(ModelRoleError, match="no previous champion"):
        roles.rollback(state)
    assert state.revision == 5


def test_each_version_holds_one_role() -> None:
    state = RoleState(champion=1)
    state, _ = roles.shadow(state, 2)
    state, event = roles.canary(state, 2, 10, reason="from shadow to canary")
    assert state.shadow is None and state.challenger == Canary(version=2, percent=10)
    assert event.cleared == ("shadow",) and event.percent == 10
    state, event = roles.promote(state, 2)
    assert state.challenger is None and state.champion == 2 and event.cleared == ("challenger",)
    assert state.roles_of(2) == ["champion"] and state.roles_of(1) == []


def test_canary_percent_zero_keeps_the_challenger_and_range_is_enforced() -> None:
    state, _ = roles.canary(RoleState(champion=1), 2, 50)
    state, event = roles.canary(state, 2, 0, reason="pause")
    assert state.challenger == Canary(version=2, percent=0) and event.from_version == 2
    for bad in (-1, 101):
        with pytest.raises(ModelRoleError, match="0-100"):
            roles.canary(state, 2, bad)


def test_refused_transitions() -> None:
    state = RoleState(champion=1)
    with pytest.raises(ModelRoleError, match="already the champion"):
        roles.promote(state, 1)
    with pytest.raises(ModelRoleError, match="champion"):
        roles.canary(state, 1, 5)
    with pytest.raises(ModelRoleError, match="champion"):
        roles.shadow(state, 1)
    with pytest.raises(ModelRoleError, match="cannot be cleared"):
        roles.clear(state, "champion")
    with pytest.raises(ModelRoleError, match="no challenger"):
        roles.clear(state, "challenger")
    with pytest.raises(ModelRoleError, match="unknown role"):
        roles.clear(state, "staging")
    with pytest.raises(ModelNotFoundError, match="no champion"):
        RoleState().serving("fraud")


def test_clear_records_who_and_why() -> None:
    state, _ = roles.shadow(RoleState(champion=1), 4)
    state, event = roles.clear(state, "shadow", actor="alice@box", reason="done")
    assert state.shadow is None and state.revision == 2
    assert (event.role, event.from_version, event.to_version) == ("shadow", 4, None)
    assert (event.actor, event.reason) == ("alice@box", "done")
    assert "@" in roles.default_actor()


def _manifest(
    semver: str | None, data: str | None, features: tuple[str, ...] = FEATURES
) -> Manifest:
    return Manifest(
        name="m",
        version=1,
        created_at=datetime.now(UTC),
        sha256="0" * 64,
        input_name="input",
        output_name="probabilities",
        feature_names=features,
        training_data_hash=data,
        semver=semver,
    )


def test_semver_major_minor_patch() -> None:
    def nxt(
        prev: Manifest | None,
        features: tuple[str, ...] = FEATURES,
        input_name: str = "input",
        data: str = "d1",
    ) -> str:
        return next_semver(
            prev, feature_names=features, input_name=input_name, training_data_hash=data
        )

    assert nxt(None) == "1.0.0"
    prev = _manifest("1.2.3", "d1")
    assert nxt(prev) == "1.2.4"  # same inputs, same data
    assert nxt(prev, data="d2") == "1.3.0"  # retrained on new data
    assert nxt(prev, features=("a", "c", "b")) == "2.0.0"  # order is the signature
    assert nxt(prev, input_name="x", data="d2") == "2.0.0"
    assert nxt(_manifest(None, "d1")) == "1.0.1"  # a manifest from before semver


def test_manifest_validates_the_reference() -> None:
    base = _manifest("1.0.0", None).model_dump()
    ok = Manifest(**{**base, "reference_deciles": [i / 10 for i in range(1, 10)]})
    assert ok.reference_deciles is not None and len(ok.reference_deciles) == 9
    with pytest.raises(ValueError, match="9 ascending"):
        Manifest(**{**base, "reference_deciles": [0.5, 0.4, *[0.6] * 7]})
    with pytest.raises(ValueError, match="10 counts"):
        Manifest(**{**base, "reference_histogram": [1, 2, 3]})

"""``stream-infer model``: the registry's versions, roles, history and load reports.

Every change takes ``--reason`` (and ``--actor``, default ``user@host``) for the audit trail,
and the registry verifies the artifact's sha256 before a version is given a role. Anything
refused (an unknown version, a tampered artifact, a percent outside 0-100, a rollback with no
previous champion, clearing the champion) exits non-zero with one line saying why, and
changes nothing. Tables for people; ``--json`` for scripts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
import orjson
from rich.console import Console
from rich.table import Table

from stream_infer.config import Settings
from stream_infer.errors import StreamInferError
from stream_infer.model.control import announce
from stream_infer.model.manifest import Manifest
from stream_infer.model.registry import Registry, open_registry
from stream_infer.model.roles import ROLES, RoleEvent, RoleState, latest_status, previous_champion


def _settings(ctx: click.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _registry(ctx: click.Context) -> Registry:
    return open_registry(_settings(ctx).model)


@contextmanager
def _refusals() -> Iterator[None]:
    """Errors we raise on purpose become one line on stderr and exit status 1."""
    try:
        yield
    except StreamInferError as exc:
        raise click.ClickException(str(exc)) from exc


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _when(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%SZ")


def _v(version: int | None) -> str:
    return "-" if version is None else f"v{version}"


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _print(*tables: Table) -> None:
    # Built per call so click's stdout (CliRunner's in tests) is the one written to; wide
    # enough that a piped table is not cut.
    console = Console(width=None if click.get_text_stream("stdout").isatty() else 160)
    for table in tables:
        console.print(table)


json_option = click.option("--json", "as_json", is_flag=True, help="machine-readable output")


def change_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--reason``, ``--actor`` and ``--json``: the options of every role change."""
    fn = click.option("--reason", default="", help="why (kept in the history)")(fn)
    fn = click.option("--actor", default=None, help="who (default: user@host)")(fn)
    return json_option(fn)


@click.group()
def model() -> None:
    """The model registry: versions, serving roles (champion, challenger, shadow), history."""


def _manifest_or_none(registry: Registry, name: str, version: int) -> Manifest | None:
    # A listing still shows the other versions when one manifest is unreadable.
    try:
        return registry.manifest(name, version)
    except StreamInferError:
        return None


def version_rows(registry: Registry, name: str) -> list[dict[str, Any]]:
    """One JSON-ready row per version of ``name``: semver, roles, metrics, load status."""
    state = registry.roles(name)
    rows = []
    for version in registry.versions(name):
        manifest = _manifest_or_none(registry, name, version)
        status = latest_status(registry.statuses(name, version))
        canary = state.challenger
        rows.append(
            {
                "name": name,
                "version": version,
                "semver": manifest.semver if manifest else None,
                "roles": state.roles_of(version),
                "percent": canary.percent if canary and canary.version == version else None,
                "created_at": manifest.created_at.isoformat() if manifest else None,
                "auc_roc": manifest.metrics.get("auc_roc") if manifest else None,
                "state": status.state if status else None,
                "reason": status.reason if status else None,
                "description": manifest.description if manifest else "unreadable manifest",
            }
        )
    return rows


def _roles_cell(row: dict[str, Any]) -> str:
    roles = list(row["roles"])
    if row["percent"] is not None:
        roles = [f"challenger {row['percent']}%" if r == "challenger" else r for r in roles]
    return ", ".join(roles) or "candidate"


def _versions_table(title: str, rows: list[dict[str, Any]], with_name: bool) -> Table:
    table = Table(title=title)
    columns = ["model"] if with_name else []
    columns += ["version", "semver", "role", "created", "auc_roc", "state", "reason", "about"]
    for col in columns:
        table.add_column(col, justify="right" if col in ("version", "auc_roc") else "left")
    for row in rows:
        auc = row["auc_roc"]
        created = datetime.fromisoformat(row["created_at"]) if row["created_at"] else None
        cells = [row["name"]] if with_name else []
        cells += [
            f"v{row['version']}",
            _cell(row["semver"]),
            _roles_cell(row),
            _when(created),
            "-" if auc is None else f"{auc:.3f}",
            _cell(row["state"]),
            _cell(row["reason"]),
            _cell(row["description"]),
        ]
        table.add_row(*cells)
    return table


@model.command("list")
@json_option
@click.pass_context
def list_models(ctx: click.Context, as_json: bool) -> None:
    """Every model's versions with their roles and load status."""
    with _refusals():
        registry = _registry(ctx)
        rows = [row for name in registry.names() for row in version_rows(registry, name)]
    if as_json:
        _echo_json(rows)
    elif not rows:
        click.echo(f"no models registered in {registry}")
    else:
        _print(_versions_table(f"models in {registry}", rows, with_name=True))


def _state_json(name: str, state: RoleState) -> dict[str, Any]:
    return {"name": name, **state.model_dump(mode="json"), "rollback_to": previous_champion(state)}


def _history_table(events: list[RoleEvent]) -> Table:
    table = Table(title="history")
    for col in ("rev", "when", "who", "action", "role", "from", "to", "percent", "why"):
        table.add_column(col)
    for e in events:
        table.add_row(
            str(e.revision),
            _when(e.at),
            e.actor,
            e.action + (f" (cleared {', '.join(e.cleared)})" if e.cleared else ""),
            e.role,
            _v(e.from_version),
            _v(e.to_version),
            "-" if e.percent is None else f"{e.percent}%",
            _cell(e.reason),
        )
    return table


def _show_model(registry: Registry, name: str, as_json: bool) -> None:
    if not registry.versions(name):
        raise click.ClickException(f"model {name!r} has no versions in {registry}")
    state = registry.roles(name)
    rows = version_rows(registry, name)
    events = registry.history(name)
    if as_json:
        history = [e.model_dump(mode="json") for e in events]
        _echo_json({"roles": _state_json(name, state), "versions": rows, "history": history})
        return
    canary = state.challenger
    click.echo(
        f"{name}: revision {state.revision}, champion {_v(state.champion)}, challenger "
        f"{f'{_v(canary.version)} at {canary.percent}%' if canary else '-'}, shadow "
        f"{_v(state.shadow)}, rollback to {_v(previous_champion(state))}"
    )
    _print(_versions_table(f"{name} versions", rows, with_name=False), _history_table(events))


def _show_version(registry: Registry, name: str, version: int, as_json: bool) -> None:
    manifest = registry.manifest(name, version)
    state = registry.roles(name)
    statuses = registry.statuses(name, version)
    if as_json:
        _echo_json(
            {
                "manifest": manifest.model_dump(mode="json"),
                "roles": state.roles_of(version),
                "statuses": {k: v.model_dump(mode="json") for k, v in statuses.items()},
            }
        )
        return
    table = Table(title=f"{name} v{version}", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("roles", ", ".join(state.roles_of(version)) or "candidate")
    for key, value in manifest.model_dump(mode="json").items():
        shown = orjson.dumps(value).decode() if isinstance(value, list | dict) else _cell(value)
        table.add_row(key, shown)
    reports = Table(title="load reports")
    for col in ("reporter", "state", "when", "reason"):
        reports.add_column(col)
    for status in sorted(statuses.values(), key=lambda s: s.at):
        reports.add_row(status.reporter, status.state, _when(status.at), _cell(status.reason))
    _print(table, reports)


@model.command("show")
@click.argument("name")
@click.argument("version", type=int, required=False)
@json_option
@click.pass_context
def show(ctx: click.Context, name: str, version: int | None, as_json: bool) -> None:
    """A model's roles, versions and history; or one version's manifest and load reports."""
    with _refusals():
        registry = _registry(ctx)
        if version is None:
            _show_model(registry, name, as_json)
        else:
            _show_version(registry, name, version, as_json)


def _report_change(
    ctx: click.Context, registry: Registry, name: str, event: RoleEvent, as_json: bool
) -> None:
    announce(_settings(ctx), name, event.revision)  # watchers switch now, not at their poll
    if as_json:
        state = registry.roles(name)
        _echo_json({"event": event.model_dump(mode="json"), "roles": _state_json(name, state)})
        return
    before = _v(event.from_version)
    after = "nobody" if event.to_version is None else _v(event.to_version)
    percent = "" if event.percent is None else f" at {event.percent}%"
    click.echo(
        f"{name}: {event.action} {event.role} {before} -> {after}{percent} "
        f"(revision {event.revision}, by {event.actor})"
    )


@model.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@change_options
@click.pass_context
def promote(
    ctx: click.Context, name: str, version: int, reason: str, actor: str | None, as_json: bool
) -> None:
    """VERSION becomes champion (the current one can be rolled back to)."""
    with _refusals():
        registry = _registry(ctx)
        event = registry.promote(name, version, actor=actor, reason=reason)
        _report_change(ctx, registry, name, event, as_json)


@model.command("rollback")
@click.argument("name")
@change_options
@click.pass_context
def rollback(ctx: click.Context, name: str, reason: str, actor: str | None, as_json: bool) -> None:
    """The previous champion serves again."""
    with _refusals():
        registry = _registry(ctx)
        event = registry.rollback(name, actor=actor, reason=reason)
        _report_change(ctx, registry, name, event, as_json)


@model.command("canary")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--percent", type=int, required=True, help="share of traffic, 0-100")
@change_options
@click.pass_context
def canary(
    ctx: click.Context,
    name: str,
    version: int,
    percent: int,
    reason: str,
    actor: str | None,
    as_json: bool,
) -> None:
    """VERSION becomes the challenger, served to PERCENT of the traffic (0 pauses it)."""
    with _refusals():
        registry = _registry(ctx)
        event = registry.canary(name, version, percent, actor=actor, reason=reason)
        _report_change(ctx, registry, name, event, as_json)


@model.command("shadow")
@click.argument("name")
@click.argument("version", type=int)
@change_options
@click.pass_context
def shadow(
    ctx: click.Context, name: str, version: int, reason: str, actor: str | None, as_json: bool
) -> None:
    """VERSION becomes the shadow: scored on every event, never served."""
    with _refusals():
        registry = _registry(ctx)
        event = registry.shadow(name, version, actor=actor, reason=reason)
        _report_change(ctx, registry, name, event, as_json)


@model.command("clear")
@click.argument("name")
@click.argument("role", type=click.Choice(ROLES))
@change_options
@click.pass_context
def clear(
    ctx: click.Context, name: str, role: str, reason: str, actor: str | None, as_json: bool
) -> None:
    """Nobody holds ROLE (challenger or shadow) any more."""
    with _refusals():
        registry = _registry(ctx)
        event = registry.clear(name, role, actor=actor, reason=reason)
        _report_change(ctx, registry, name, event, as_json)


def add_compare_command(group: click.Group) -> None:
    """Hook: ``model compare NAME`` (evidence to promote, :mod:`stream_infer.model.compare`)."""

    @group.command("compare")
    @click.argument("name")
    @click.option("--champion", type=int, default=None, help="default: as the scores say")
    @click.option("--k", type=int, default=100, show_default=True, help="card precision@k")
    @json_option
    @click.pass_context
    def compare(ctx: click.Context, name: str, champion: int | None, k: int, as_json: bool) -> None:
        """Each version's scores next to the champion's, and against the labels so far."""
        from stream_infer.model.compare import compare as build
        from stream_infer.model.compare import render_json, render_table

        settings = _settings(ctx)
        bootstrap = settings.resolved_bootstrap()
        if not bootstrap:
            raise click.UsageError("set KAFKA_BOOTSTRAP or STREAM_INFER_KAFKA__BOOTSTRAP_SERVERS")
        with _refusals():
            report = build(settings.with_bootstrap(bootstrap), name, champion=champion, k=k)
        if as_json:
            click.echo(render_json(report))
        else:
            _print(render_table(report))


add_compare_command(model)

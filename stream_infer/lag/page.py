"""``GET /status``: one server-rendered HTML page for the person on call (no script, no build
step; ``<meta http-equiv="refresh">`` reloads it). The verdict comes first, large and
coloured; then each group's partitions; then throughput, latency, models, drift and labels.
Every value is escaped."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape

from stream_infer.lag.dashboard import DashboardView
from stream_infer.lag.scrape import total_rate
from stream_infer.lag.status import SEVERITY, GroupStatus, PartitionStatus
from stream_infer.lag.view import GroupSummary, LagRow, LagView

_TONE = {
    "OK": "ok",
    "UNKNOWN": "unknown",
    "WARN": "warn",
    "ERR": "err",
    "STOP": "err",
    "STALL": "err",
    "REWIND": "err",
    "NOTFOUND": "unknown",
}
_MEANING = {
    GroupStatus.OK: "keeping up",
    GroupStatus.WARN: "falling behind: lag not shrinking",
    GroupStatus.ERR: "not consuming",
    GroupStatus.UNKNOWN: "lag, not judged yet (one sample)",
    GroupStatus.NOTFOUND: "nothing committed yet",
}
_PARTITION_MEANING = {
    PartitionStatus.STOP: "no commits, consumer gone",
    PartitionStatus.STALL: "consumer present, offset stuck",
    PartitionStatus.REWIND: "committed offset went back",
    PartitionStatus.WARN: "lag not shrinking",
}

_STATES = {
    "STABLE": "consumers in the group",
    "EMPTY": "no consumer in the group",
    "DEAD": "group unknown to the broker",
    "PREPARING_REBALANCING": "group rebalancing",
    "COMPLETING_REBALANCING": "group rebalancing",
}

_CSS = """
body{background:#101418;color:#e8ecef;font:18px/1.45 system-ui,-apple-system,"DejaVu Sans",
sans-serif;margin:0;padding:24px 32px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:21px;margin:28px 0 8px;color:#cfd8dc}
.meta{color:#9aa7b0;font-size:15px}.err-text{color:#ff8a80}
.cards{display:flex;flex-wrap:wrap;gap:14px;margin-top:18px}
.card{border-radius:10px;padding:12px 18px;flex:1 1 0;min-width:240px;max-width:420px;
background:#1b2229;
border-left:12px solid #607d8b}
.card.ok{border-color:#2e7d32}.card.warn{border-color:#f9a825}.card.err{border-color:#d32f2f;
background:#2a1416}.card.unknown{border-color:#78909c}
.card .name{font-size:16px;color:#b0bec5;overflow-wrap:anywhere}
.card .verdict{font-size:30px;font-weight:700;letter-spacing:1px}
.card .why{font-size:16px;color:#cfd8dc}.card .nums{font-size:20px;margin-top:6px}
.pill{display:inline-block;padding:1px 10px;border-radius:6px;font-weight:700;font-size:15px}
.pill.ok{background:#2e7d32}.pill.warn{background:#f9a825;color:#111}.pill.err{background:#d32f2f}
.pill.unknown{background:#546e7a}
table{border-collapse:collapse;margin-top:6px;font-size:16px}
th{text-align:left;color:#9aa7b0;font-weight:600;padding:4px 14px 4px 0;
border-bottom:1px solid #37474f}
td{padding:4px 14px 4px 0;border-bottom:1px solid #222b33;font-variant-numeric:tabular-nums}
td.n{text-align:right}tr.bad td{background:#2a1416}
.grid{display:flex;flex-wrap:wrap;gap:40px}
"""


def _cell(value: object, numeric: bool = False) -> str:
    text = "-" if value is None else str(value)
    return f'<td class="n">{escape(text)}</td>' if numeric else f"<td>{escape(text)}</td>"


def _pill(status: str | None) -> str:
    if status is None:
        return "-"
    return f'<span class="pill {_TONE.get(status, "unknown")}">{escape(status)}</span>'


def age(seconds: float | None) -> str:
    """``seconds`` for a human: 0.8 s, 42 s, 3 min 12 s, 2 h 05 min."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _card(g: GroupSummary, rows: list[LagRow]) -> str:
    bad = [r.status for r in rows if r.status in _PARTITION_MEANING]
    why = _MEANING[g.status]
    if bad:
        # Worst first: "STOP on 3/3 partitions (no commits, consumer gone)".
        judged = sum(1 for r in rows if r.status is not None)
        detail = "; ".join(
            f"{s.value} on {bad.count(s)}/{judged} partitions ({_PARTITION_MEANING[s]})"
            for s in sorted(set(bad), key=SEVERITY.index, reverse=True)
            if s is not None
        )
        why = f"{why}: {detail}"
    nums = (
        f"lag <b>{g.sum_lag:,}</b> &middot; oldest waiting <b>{escape(age(g.max_lag_seconds))}</b>"
        if g.status is not GroupStatus.NOTFOUND
        else "no lag to report"
    )
    state = _STATES.get(g.state, g.state.lower())
    return (
        f'<div class="card {_TONE[g.status.value]}"><div class="name">group {escape(g.group)}'
        f'</div><div class="verdict">{escape(g.status.value)}</div>'
        f'<div class="why">{escape(why)}</div><div class="nums">{nums}</div>'
        f'<div class="name">{escape(state)}</div></div>'
    )


def _scoring_card(board: DashboardView) -> str:
    if not board.workers:
        return ""
    up = [w for w in board.workers if w.error is None]
    rate = total_rate(board.workers)
    p99s = [w.p99_s for w in up if w.p99_s is not None]
    tone = "ok" if len(up) == len(board.workers) else "err"
    verdict = f"{len(up)}/{len(board.workers)} up"
    per_s = "-" if rate is None else f"{rate:,.0f}/s"
    p99 = "-" if not p99s else f"{max(p99s) * 1000:,.0f} ms"
    why = "workers answering /metrics" if tone == "ok" else "a worker is not answering"
    figures = f"scores <b>{per_s}</b> &middot; p99 <b>{p99}</b>" if up else "no figures"
    return (
        f'<div class="card {tone}"><div class="name">scoring workers</div>'
        f'<div class="verdict">{verdict}</div><div class="why">{why}</div>'
        f'<div class="nums">{figures}</div></div>'
    )


def _model_card(board: DashboardView) -> str:
    m = board.model
    if m.error is not None or m.roles is None:
        return (
            f'<div class="card unknown"><div class="name">model {escape(m.name)}</div>'
            f'<div class="verdict">?</div><div class="why">{escape(m.error or "no roles")}</div>'
            "</div>"
        )
    roles = m.roles
    parts = []
    if roles.challenger is not None:
        parts.append(f"challenger v{roles.challenger.version} at {roles.challenger.percent}%")
    if roles.shadow is not None:
        parts.append(f"shadow v{roles.shadow}")
    last = m.rollbacks[0] if m.rollbacks else None
    tone = "warn" if last is not None else "ok"
    note = (
        f"last rollback {last.at.strftime('%Y-%m-%d %H:%M')} UTC"
        if last is not None
        else "no recent rollback"
    )
    champion = f"v{roles.champion}" if roles.champion else "none"
    return (
        f'<div class="card {tone}"><div class="name">model {escape(m.name)}</div>'
        f'<div class="verdict">champion {escape(champion)}</div>'
        f'<div class="why">{escape(" · ".join(parts) or "no canary, no shadow")}</div>'
        f'<div class="nums">{escape(note)}</div></div>'
    )


def _partition_table(rows: Iterable[LagRow]) -> str:
    head = (
        "<tr><th>topic</th><th>partition</th><th>status</th><th>lag</th><th>oldest waiting</th>"
        "<th>committed</th><th>log end</th><th>consumer</th><th>host</th></tr>"
    )
    body = []
    for r in rows:
        css = ' class="bad"' if r.status in _PARTITION_MEANING else ""
        body.append(
            f"<tr{css}>{_cell(r.topic)}{_cell(r.partition, True)}<td>{_pill(r.status)}</td>"
            f"{_cell(None if r.lag is None else f'{r.lag:,}', True)}"
            f"{_cell(age(r.lag_seconds) if r.lag is not None else None, True)}"
            f"{_cell(r.current_offset, True)}{_cell(r.log_end_offset, True)}"
            f"{_cell(r.client_id or r.consumer_id)}{_cell(r.host)}</tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _workers(board: DashboardView) -> str:
    if not board.workers:
        return '<p class="meta">no worker scraped (start the exporter with --scrape URL)</p>'
    rate = total_rate(board.workers)
    rows = []
    for w in board.workers:
        if w.error is not None:
            rows.append(
                f'<tr>{_cell(w.url)}<td class="err-text" colspan="4">{escape(w.error)}</td></tr>'
            )
            continue
        serving = ", ".join(f"v{v} {role}" for role, v, _semver in w.serving) or "-"
        psi = ", ".join(f"v{v} {role}: {value:.3f}" for (v, role), value in sorted(w.psi.items()))
        p99 = None if w.p99_s is None else f"{w.p99_s * 1000:,.0f} ms"
        per_s = None if w.scored_per_s is None else f"{w.scored_per_s:,.0f}"
        rows.append(
            f"<tr>{_cell(w.url)}{_cell(per_s, True)}{_cell(p99, True)}{_cell(serving)}"
            f"{_cell(psi or None)}</tr>"
        )
    total = "-" if rate is None else f"{rate:,.0f} scores/s"
    return (
        f"<p>throughput <b>{escape(total)}</b></p><table><tr><th>worker</th><th>scores/s</th>"
        f"<th>p99 end-to-end</th><th>serving</th><th>PSI (drift)</th></tr>{''.join(rows)}</table>"
    )


def _models(board: DashboardView) -> str:
    m = board.model
    if m.error is not None:
        return f'<p class="err-text">model {escape(m.name)}: {escape(m.error)}</p>'
    roles = m.roles
    parts = []
    if roles is not None:
        parts.append(f"champion <b>v{roles.champion}</b>" if roles.champion else "no champion")
        if roles.challenger is not None:
            parts.append(f"challenger v{roles.challenger.version} at {roles.challenger.percent}%")
        if roles.shadow is not None:
            parts.append(f"shadow v{roles.shadow}")
    head = f"<p>{escape(m.name)}: {' &middot; '.join(parts)}</p>"
    rollbacks = m.rollbacks
    note = (
        f'<p class="err-text">{len(rollbacks)} rollback(s) among the last changes</p>'
        if rollbacks
        else ""
    )
    rows = [
        f"<tr>{_cell(e.at.strftime('%Y-%m-%d %H:%M:%S'))}{_cell(e.action)}{_cell(e.role)}"
        f"{_cell(_move(e.from_version, e.to_version))}{_cell(e.actor)}"
        f"{_cell(e.reason or None)}</tr>"
        for e in m.history
    ]
    table = (
        "<table><tr><th>when (UTC)</th><th>action</th><th>role</th><th>versions</th>"
        f"<th>who</th><th>why</th></tr>{''.join(rows)}</table>"
        if rows
        else '<p class="meta">no role changes</p>'
    )
    return head + note + table


def _move(before: int | None, after: int | None) -> str:
    return f"{'v' + str(before) if before else '-'} → {'v' + str(after) if after else '-'}"


def _labels(board: DashboardView) -> str:
    scraped = [w.label_watermark_s for w in board.workers if w.label_watermark_s is not None]
    if scraped:
        # The processor's own gauge: the end of the last complete day (epoch seconds).
        through = datetime.fromtimestamp(max(scraped), UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"<p>labels complete up to <b>{through}</b></p>"
    if board.label_watermark is not None:
        return f"<p>labels complete through <b>{board.label_watermark.isoformat()}</b></p>"
    why = board.label_watermark_error or "no day has all its labels yet"
    return f'<p class="meta">label watermark: {escape(why)}</p>'


def render(
    view: LagView | None,
    error: str | None,
    board: DashboardView | None,
    cluster_name: str,
    refresh_s: float,
) -> str:
    """The whole page. ``view`` None: no sample yet; ``error``: the last sample failed."""
    wall = time.time()
    now = datetime.fromtimestamp(wall, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="refresh" content="{max(1, round(refresh_s))}">',
        f"<title>stream-infer status · {escape(cluster_name)}</title>",
        f"<style>{_CSS}</style></head><body><h1>stream-infer status</h1>",
        f'<div class="meta">cluster {escape(cluster_name)} &middot; {now}',
    ]
    if view is not None:
        stale = wall - view.taken_at
        out.append(
            f" &middot; lag sampled {escape(age(max(0.0, stale)))} ago &middot; log-end offsets "
            f"by {escape(view.method)}"
        )
    out.append("</div>")
    if error is not None:
        out.append(f'<p class="err-text">broker not answering: {escape(error)}</p>')
    if view is not None and wall - view.taken_at > 3 * refresh_s + 10:
        out.append('<p class="err-text">the lag figures below are stale</p>')
    out.append('<div class="cards">')
    if view is None:
        out.append("<p>no lag sample yet</p>")
    else:
        out.extend(_card(g, view.rows_of(g.group)) for g in view.groups)
    if board is not None:
        out.append(_scoring_card(board))
        out.append(_model_card(board))
    out.append("</div>")
    if view is not None:
        for g in view.groups:
            out.append(f"<h2>{escape(g.group)} {_pill(g.status.value)}</h2>")
            out.append(_partition_table(view.rows_of(g.group)))
    if board is not None:
        out.append('<div class="grid"><div><h2>Workers</h2>')
        out.append(_workers(board))
        out.append("</div><div><h2>Labels</h2>")
        out.append(_labels(board))
        out.append("</div></div><h2>Model</h2>")
        out.append(_models(board))
    out.append("</body></html>")
    return "".join(out)

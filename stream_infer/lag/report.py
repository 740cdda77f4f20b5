"""How ``stream-infer lag`` prints a :class:`~stream_infer.lag.view.LagView`: the columns of
``kafka-consumer-groups.sh --describe`` plus LAG-SECONDS and STATUS, as text, as JSON rows,
or as a rich table for ``--watch``."""

from __future__ import annotations

from typing import Any

import orjson

from stream_infer.lag.status import GroupStatus
from stream_infer.lag.view import LagRow, LagView

COLUMNS = (
    "GROUP",
    "TOPIC",
    "PARTITION",
    "CURRENT-OFFSET",
    "LOG-END-OFFSET",
    "LAG",
    "LAG-SECONDS",
    "STATUS",
    "CONSUMER-ID",
    "HOST",
    "CLIENT-ID",
)
METHODS = {
    "fetch": "high watermark of a fetch response",
    "listoffsets": "ListOffsets (latest)",
}


def _text(value: object) -> str:
    return "-" if value is None else str(value)


def cells(r: LagRow) -> list[str]:
    """A row's cells in :data:`COLUMNS` order ("-" where there is nothing)."""
    seconds = None if r.lag_seconds is None or r.lag is None else f"{r.lag_seconds:.1f}"
    return [
        r.group,
        r.topic,
        str(r.partition),
        _text(r.current_offset),
        str(r.log_end_offset),
        _text(r.lag),
        _text(seconds),
        _text(None if r.status is None else r.status.value),
        _text(r.consumer_id),
        _text(r.host),
        _text(r.client_id),
    ]


def method_line(view: LagView) -> str:
    """Which way log-end offsets were read."""
    return f"log-end offsets: {view.method} ({METHODS.get(view.method, view.method)})"


def summary_lines(view: LagView) -> list[str]:
    """One line per group: status, state, total lag, oldest waiting record's age."""
    return [
        f"{g.group}: {g.status.value} (group {g.state.lower()}) "
        + (
            "nothing committed"
            if g.status is GroupStatus.NOTFOUND
            else f"lag {g.sum_lag} max-lag-seconds {g.max_lag_seconds:.1f}"
        )
        for g in view.groups
    ]


def as_text(view: LagView) -> str:
    """The kafka-consumer-groups-style table, the method line and group summaries."""
    table = [list(COLUMNS), *(cells(r) for r in view.rows)]
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    lines = [method_line(view), ""]
    lines.extend(
        " ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table
    )
    lines.append("")
    lines.extend(summary_lines(view))
    return "\n".join(lines)


def as_json(view: LagView) -> str:
    """A JSON list of row objects (snake_case; ``method`` on every row)."""
    rows: list[dict[str, Any]] = [r.as_json() for r in view.rows]
    return orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode()


_STYLE = {"OK": "green", "WARN": "yellow", "UNKNOWN": "cyan", "NOTFOUND": "cyan"}


def as_rich(view: LagView | None, error: str | None) -> Any:
    """A rich renderable for ``--watch``: the table, then the summaries and any error."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    if view is None:
        return Text(f"waiting for the first sample{': ' + error if error else ''}")
    table = Table(title=method_line(view), title_justify="left")
    for name in COLUMNS:
        table.add_column(name, justify="right" if "OFFSET" in name or name[:3] == "LAG" else "left")
    for r in view.rows:
        row = cells(r)
        status = row[7]
        row[7] = f"[{_STYLE.get(status, 'bold red')}]{status}[/]" if status != "-" else status
        table.add_row(*row)
    lines = [
        Text(line, style=_STYLE.get(g.status.value, "bold red"))
        for g, line in zip(view.groups, summary_lines(view), strict=True)
    ]
    if error:
        lines.append(Text(f"last sample failed: {error}", style="bold red"))
    return Group(table, *lines)

"""Replay and measure together: the one command a user reaches for.

The measurer starts first, in a background thread, assigned to the scores topic from the
beginning and skipping scores intended before this run started; the replayer then sends on its
open-loop schedule in the foreground, with its live progress; when it is done it hands the sent
ids to the measurer, which stops once every one is scored, or after the idle timeout.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from loadgen.measure import (
    Measurement,
    MeasureOptions,
    ScoreCollector,
    StopReason,
    collect,
    open_consumer,
)
from loadgen.replay import ReplayOptions, ReplayResult, replay
from loadgen.stream import Dataset


@dataclass(frozen=True)
class RunResult:
    """The replay's figures and the measurement of its scores."""

    replay: ReplayResult
    measurement: Measurement


def run(
    data: Dataset,
    replay_options: ReplayOptions,
    measure_options: MeasureOptions,
    client_config: Mapping[str, Any],
    *,
    progress: bool = True,
) -> RunResult:
    """Replay ``data`` and measure the scores it produces.

    Raises:
        TimeoutError: the scores topic does not exist (checked before anything is sent).
    """
    since_ns = time.time_ns()
    options = measure_options
    if options.since_wall_ns is None:
        options = replace(options, since_wall_ns=since_ns)
    collector = ScoreCollector(options.since_wall_ns, awaiting_expected=True)
    consumer = open_consumer(client_config, options.topic)
    stop = threading.Event()
    reason: list[StopReason] = []
    started = time.monotonic()

    def _measure() -> None:
        try:
            reason.append(collect(consumer, collector, options, stop=stop))
        finally:
            consumer.close()

    thread = threading.Thread(target=_measure, name="loadgen-measure", daemon=True)
    thread.start()
    try:
        sent = replay(data, replay_options, client_config, progress=progress)
        collector.expect(sent.sent_ids)
        _wait_for_scores(thread, collector, progress)
    except KeyboardInterrupt:
        stop.set()
        thread.join()
        raise
    return RunResult(
        sent,
        collector.result(since_ns, time.monotonic() - started, reason[0] if reason else "stopped"),
    )


def _wait_for_scores(thread: threading.Thread, collector: ScoreCollector, progress: bool) -> None:
    """Join the measuring thread, showing scored/expected while it runs."""
    columns = (
        TextColumn("[bold]scores"),
        BarColumn(),
        TextColumn("{task.completed:,.0f}/{task.total:,.0f}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        seen, expected = collector.progress()
        task = bar.add_task("scores", total=expected or 0, completed=seen)
        while thread.is_alive():
            thread.join(0.25)
            seen, expected = collector.progress()
            bar.update(task, completed=seen, total=expected or 0)

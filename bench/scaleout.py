"""``stream-infer worker --processes N`` as a benchmark row, measured from outside.

The CLI's workers cannot time themselves for us, and a group of N must finish joining before
its rate means anything (a member that starts alone takes every partition, then gives half of
them back). So, per run: start the workers on empty fresh topics; wait until the newest N
``assigned [...]`` lines of their log are disjoint, non-empty and cover every partition; then
preload the events as fast as the producer goes; wait until the group has committed every one.

Throughput counts the scores produced after the preload finished (their Kafka timestamps, set
when the worker hands a score to its producer) over the span from the preload's end to the last
score: the workers on a standing backlog, with the producer no longer sharing the cores. Should
the workers have kept up with the preload itself (tiny quick runs), the span from the first to
the last score is used instead; ``measured_from`` says which. CPU is the process tree's from
readiness to the last commit; memory is the tree's (:class:`bench.memory.TreeSampler`): the
supervisor and its N workers when N > 1, the worker alone when N = 1.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.memory import TreeSampler
from stream_infer.config import Settings

_ASSIGNED = re.compile(r"stream_infer\.worker: assigned \[([\d, ]*)\]")


def group_assignment(log: str, processes: int, partitions: int) -> list[list[int]] | None:
    """The group's assignment once it is complete: the newest ``processes`` ``assigned`` lines,
    when they are non-empty, disjoint and cover ``range(partitions)``; else None."""
    found = [
        sorted(int(p) for p in m.group(1).split(",") if p.strip()) for m in _ASSIGNED.finditer(log)
    ]
    newest = found[-processes:]
    if len(newest) < processes or not all(newest):
        return None
    flat = [p for parts in newest for p in parts]
    if len(flat) != len(set(flat)) or set(flat) != set(range(partitions)):
        return None
    return sorted(newest)


def _committed(admin: Any, group: str) -> int:
    """The group's committed offsets summed over partitions (the topics started empty)."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    future = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=10
    )[group]
    answer = future.result(timeout=15)
    return sum(
        tp.offset for tp in answer.topic_partitions or () if tp.error is None and tp.offset > 0
    )


def _read_to_end(consumer: Any) -> bool:
    """Whether ``consumer`` has read each assigned partition up to the high watermark its
    fetches reported (the fetch's figure: ListOffsets is wrong on Tansu)."""
    for tp in consumer.position(consumer.assignment()):
        _low, high = consumer.get_watermark_offsets(tp, cached=True)
        if high < 0 or (high > 0 and tp.offset < high):
            return False
    return True


def _score_times(settings: Settings, idle_s: float = 5.0) -> tuple[list[int], int]:
    """Every score's Kafka timestamp (ms) and the number of distinct transaction ids: read to
    the end of every partition (or until ``idle_s`` brings nothing)."""
    from loadgen.measure import open_consumer

    consumer = open_consumer(settings.kafka.client_config(), settings.topics.scores)
    stamps: list[int] = []
    ids: set[str] = set()
    last = time.monotonic()
    try:
        while time.monotonic() - last < idle_s:
            msgs = [m for m in consumer.consume(1000, 0.1) if m.error() is None]
            if msgs:
                last = time.monotonic()
            stamps.extend(m.timestamp()[1] for m in msgs)
            ids.update(orjson.loads(m.value())["transaction_id"] for m in msgs)
            if not msgs and _read_to_end(consumer):
                break
    finally:
        consumer.close()
    return stamps, len(ids)


def backlog_rate(stamps: list[int], preload_end_ms: float) -> tuple[float, float, str]:
    """(events/s, seconds, measured_from): see the module docstring."""
    ts = np.asarray(stamps, dtype=np.float64)
    after = ts[ts > preload_end_ms]
    span_ms = float(ts.max()) - preload_end_ms
    if len(after) >= 2 and span_ms > 0:
        return len(after) / (span_ms / 1000), span_ms / 1000, "preload end"
    span_s = max(1.0, float(ts.max() - ts.min())) / 1000  # whole ms: at least one
    return len(ts) / span_s, span_s, "first score"


def cli_worker(
    settings: Settings,
    processes: int,
    events: int,
    preload: Callable[[], None],
    log: Path,
    partitions: int,
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """One run of ``stream-infer worker --processes <processes>`` over ``events`` events that
    ``preload`` sends once the group is complete; figures as the module docstring says.

    Raises:
        RuntimeError: the workers exited, never formed the group, or never committed
            ``events`` records within ``timeout_s``.
    """
    from confluent_kafka.admin import AdminClient

    from stream_infer.process import ChildProcess

    worker = ChildProcess(settings, log, "worker", ["--processes", str(processes)])
    admin = AdminClient(settings.kafka.client_config())
    sampler: TreeSampler | None = None
    try:
        deadline = time.monotonic() + 180
        while (assignment := group_assignment(worker.output(), processes, partitions)) is None:
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"group of {processes} never formed: {worker.output()[-2000:]}")
            time.sleep(0.1)
        sampler = TreeSampler(worker.proc.pid)
        cpu0 = sampler.cpu_s()
        preload()
        preload_end_ms = time.time() * 1000
        deadline = time.monotonic() + timeout_s
        while _committed(admin, settings.worker.group_id) < events:
            if worker.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{events} events never committed: {worker.output()[-2000:]}")
            time.sleep(0.2)
        cpu_s = sampler.cpu_s() - cpu0
        hwm = sampler.hwm_mb()
    finally:
        peak = sampler.stop() if sampler is not None else 0.0
        code = worker.terminate()
    stamps, distinct = _score_times(settings)
    rate, seconds, measured_from = backlog_rate(stamps, preload_end_ms)
    return {
        "events": events,
        "events_per_s": rate,
        "seconds": seconds,
        "measured_from": measured_from,
        "cpu_s": cpu_s,
        "hwm_mb": round(sum(hwm), 1),
        "hwm_mb_per_process": hwm,
        "sampled_rss_mb": round(peak, 1),
        "processes": len(hwm),
        "assignment": assignment,
        "scores": len(stamps),
        "distinct_scores": distinct,
        "exit_code": code,
    }

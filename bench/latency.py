"""End-to-end latency at a fixed offered rate, open loop, from each event's intended send time.

Two processes under test, driven and measured identically (``loadgen.run``: paced producer ->
``transactions`` -> process -> ``scores`` -> this process's consumer):

- :func:`worker_latency`: a ``stream-infer worker`` child (``batch.max_wait_ms=5``);
- :func:`broker_floor`: the ``relay`` row of :mod:`bench.rows`, which forwards every record
  untouched with the worker's own client settings. The same two broker hops with no work in
  between: the floor the worker's figures stand on, measured in the same run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from bench.child import RowProcess, row_args
from stream_infer.config import Settings

#: The latency rows' batching wait (the worker's and therefore the relay's poll).
MAX_WAIT_MS = 5.0


def _open_loop(s: Settings, data: pd.DataFrame, rate: float, seconds: float) -> dict[str, Any]:
    from loadgen.measure import MeasureOptions
    from loadgen.replay import ReplayOptions
    from loadgen.run import run
    from loadgen.stream import Dataset

    count = min(len(data), int(rate * seconds))
    result = run(
        Dataset.from_frame(data),
        ReplayOptions(
            s.topics.transactions, s.topics.labels, rate=rate, count=count, labels="none"
        ),
        MeasureOptions(s.topics.scores, idle_timeout_s=30.0),
        s.kafka.client_config(),
        progress=False,
    )
    m = result.measurement
    lat = m.summary()["latency_ms"]
    acc = m.accounting
    # What the process under test kept up with: scores received per second from the first
    # intended send to the last arrival (below ``rate``: it fell behind, and latency grows).
    span_s = (int(m.received_ns.max()) - result.replay.started_wall_ns) / 1e9 if count else 0.0
    return {
        "rate": rate,
        "received_per_s": len(m.received_ns) / span_s if span_s > 0 else 0.0,
        "events": count,
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "p99.9_ms": lat["p99.9"],
        "missing": acc.missing if acc else None,
        "max_behind_s": result.replay.max_behind_s,
    }


def _fast(s: Settings) -> Settings:
    return s.model_copy(update={"batch": s.batch.model_copy(update={"max_wait_ms": MAX_WAIT_MS})})


def worker_latency(
    s: Settings, work: Path, data: pd.DataFrame, rate: float, seconds: float
) -> dict[str, Any]:
    """A ``stream-infer worker`` on fresh topics ``s`` at ``rate`` events/s for ``seconds``.

    Raises:
        RuntimeError: the worker never got partitions.
    """
    from stream_infer.process import ChildProcess

    worker = ChildProcess(_fast(s), work / "latency-worker.log")
    try:
        worker.wait_for("assigned [", timeout_s=120)
        return _open_loop(s, data, rate, seconds)
    finally:
        worker.terminate()


def broker_floor(
    s: Settings, work: Path, data: pd.DataFrame, rate: float, seconds: float
) -> dict[str, Any]:
    """The relay on fresh topics ``s``, driven exactly as :func:`worker_latency`.

    Raises:
        RuntimeError: the relay never got partitions or failed.
    """
    count = min(len(data), int(rate * seconds))
    relay = RowProcess("relay", row_args(s, count, max_wait_ms=MAX_WAIT_MS), work / "rows")
    try:
        relay.wait_for("assigned [")
        figures = _open_loop(s, data, rate, seconds)
    except BaseException:
        relay.kill()
        raise
    relay.result(timeout_s=60)  # it relayed all ``count`` and exited cleanly
    return figures

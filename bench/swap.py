"""Hot swap cost: promote version 2 while a real worker scores a steady paced load.

A ``stream-infer worker`` child follows the registry (``model.version`` unset, so its
ServingWatcher polls the roles every ``model.poll_interval_s``). This process paces the
transactions in (open loop, a background thread) and reads every score back; half-way through it
promotes version 2. Figures:

- ``to_v2_s``: from the promote call to the ``scored_at`` of the first score carrying version 2
  (one poll interval at most, plus loading, warming up and probing the new version);
- the longest gap between consecutive ``scored_at`` values (the worker's clock: one per batch)
  in the window starting at the promote, against the same-length window just before it, and the
  same for the times the scores arrived here (which add the broker hop's jitter).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pandas as pd

from bench.versions import SECOND
from stream_infer.config import Settings
from stream_infer.model.interface import Registry

#: The promote happens at this fraction of the paced stream; each window is this long.
PROMOTE_AT = 0.5
WINDOW = 0.3
#: The figures a run reports that the harness takes medians of.
FIGURES = (
    "to_v2_s",
    "gap_ms_swap",
    "gap_ms_before",
    "arrival_gap_ms_swap",
    "arrival_gap_ms_before",
)


def _max_gap_ms(times: npt.NDArray[np.float64], start: float, end: float) -> float:
    inside = np.unique(times[(times >= start) & (times < end)])
    return float(np.diff(inside).max() * 1000.0) if len(inside) > 1 else float("nan")


def hot_swap(
    settings: Settings, registry: Registry, data: pd.DataFrame, rate: float, log: Path
) -> dict[str, Any]:
    """One paced run with a promote of version 2 in the middle; see the module docstring.

    Raises:
        RuntimeError: the worker did not start, or no score carried version 2.
    """
    from loadgen.measure import open_consumer
    from loadgen.replay import ReplayOptions, replay
    from loadgen.stream import Dataset
    from stream_infer.process import ChildProcess

    count = len(data)
    seconds = count / rate
    cfg = settings.kafka.client_config()
    options = ReplayOptions(
        settings.topics.transactions, settings.topics.labels, rate=rate, labels="none"
    )
    sender = threading.Thread(
        target=replay,
        args=(Dataset.from_frame(data), options, cfg),
        kwargs={"progress": False},
        daemon=True,
    )
    promoted: list[float] = []

    def promote() -> None:
        promoted.append(time.time())
        registry.promote(settings.model.name, SECOND, reason="bench: hot swap")

    # A timer thread, so the promote call never holds up the reading of scores here.
    timer = threading.Timer(seconds * PROMOTE_AT, promote)
    parsed: dict[str, float] = {}  # a batch's records share one scored_at
    scored: list[float] = []
    arrived: list[float] = []
    first_v2 = float("inf")
    worker = ChildProcess(settings, log)
    try:
        worker.wait_for("assigned [", timeout_s=120)
        consumer = open_consumer(cfg, settings.topics.scores)
        sender.start()
        timer.start()
        last = time.monotonic()
        while len(scored) < count and time.monotonic() - last < 15.0:
            msgs = consumer.consume(1000, 0.005)
            now = time.time()
            for m in msgs:
                if m.error() is not None:
                    continue
                score = orjson.loads(m.value())
                at = parsed.get(score["scored_at"])
                if at is None:
                    at = datetime.fromisoformat(score["scored_at"]).timestamp()
                    parsed[score["scored_at"]] = at
                scored.append(at)
                arrived.append(now)
                if score["model_version"] == SECOND:
                    first_v2 = min(first_v2, at)
            if msgs:
                last = time.monotonic()
        consumer.close()
        sender.join(60)
    finally:
        timer.cancel()
        code = worker.terminate()
    if not promoted or first_v2 == float("inf"):
        raise RuntimeError(f"no score carried version 2; worker log: {worker.output()[-2000:]}")
    window, t = seconds * WINDOW, promoted[0]
    times, recv = np.asarray(scored, np.float64), np.asarray(arrived, np.float64)
    return {
        "rate": rate,
        "events": count,
        "scores": len(scored),
        "worker_exit": code,
        "window_s": window,
        "to_v2_s": first_v2 - t,
        "gap_ms_swap": _max_gap_ms(times, t, t + window),
        "gap_ms_before": _max_gap_ms(times, t - window, t),
        "arrival_gap_ms_swap": _max_gap_ms(recv, t, t + window),
        "arrival_gap_ms_before": _max_gap_ms(recv, t - window, t),
    }

"""Feature values the stream computed, written to Feast's online store in batches.

The Feast SDK costs ~100 µs a row (DESIGN.md), so it never runs on the per-event path: the
worker hands each batch's latest customer rows to :class:`FeastCustomerSink`, which keeps the
newest row per customer and pushes them from its own thread every ``interval_s``. The state
store, not Feast, is what the stream's correctness rests on; Feast serves other readers (and
proves the stream's values are the ones Feast would serve).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stream_infer.config import RedisSettings
from stream_infer.features.definitions import CUSTOMER_FEATURES, FEATURE_NAMES
from stream_infer.streamdef.daily_source import DailyRow

log = logging.getLogger(__name__)
_CUSTOMER_COLUMNS = [FEATURE_NAMES.index(name) for name in CUSTOMER_FEATURES]
#: The fraud example's daily view, as the label processor publishes it.
TERMINAL_COUNTS = "terminal_counts"


def terminal_risk_row(row: DailyRow) -> DailyRow:
    """A ``terminal_counts`` row ``(nb_tx_1d, nb_fraud_1d, ..._7d, ..._30d)`` as the Feast
    serving view's ``(nb_tx, risk)`` pairs: risk = frauds / transactions, 0 when there are
    none (the fraud example's ODFV ``terminal_risk``)."""
    a, b, c, d, e, f = row
    return (a, b / a if a else 0.0, c, d / c if c else 0.0, e, f / e if e else 0.0)


class FeastCustomerSink:
    """Newest customer window row per customer, pushed to Feast from a background thread."""

    def __init__(
        self,
        repo_dir: Path,
        redis_url: str | RedisSettings | None = None,
        interval_s: float = 1.0,
    ) -> None:
        self._repo_dir = repo_dir
        self._redis_url = redis_url
        self._interval_s = interval_s
        self._lock = threading.Lock()
        # Bounded by the number of customers: one pending row each, newest wins.
        self._pending: dict[str, tuple[int, list[float]]] = {}
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._pushing = False
        self._flushed = threading.Condition(self._lock)
        self._store: Any = None
        self.pushed = 0
        self.errors = 0
        self._thread = threading.Thread(target=self._run, name="feast-sink", daemon=True)
        self._thread.start()

    def offer(
        self,
        customer_ids: Sequence[str],
        epoch_seconds: Sequence[int],
        features: npt.NDArray[np.float64],
    ) -> None:
        """Remember the batch's rows (the worker's thread; cheap, no I/O)."""
        rows = features[:, _CUSTOMER_COLUMNS].tolist()
        with self._lock:
            pending = self._pending
            for cid, ts, row in zip(customer_ids, epoch_seconds, rows, strict=True):
                have = pending.get(cid)
                if have is None or have[0] <= ts:
                    pending[cid] = (ts, row)

    def flush(self, timeout_s: float = 120.0) -> bool:
        """Push what is pending now and wait until it is written; False on timeout."""
        self._kick.set()
        with self._lock:
            return self._flushed.wait_for(
                lambda: not self._pending and not self._pushing, timeout=timeout_s
            )

    def close(self) -> None:
        """Push what is pending, then stop the thread."""
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=180)

    def _run(self) -> None:
        from stream_infer.features.feast_repo import feature_store

        self._store = feature_store(self._repo_dir, self._redis_url)
        while True:
            self._kick.wait(self._interval_s)
            self._kick.clear()
            stopping = self._stop.is_set()
            with self._lock:
                batch, self._pending = self._pending, {}
                self._pushing = bool(batch)
            if batch:
                self._push(batch)
            with self._lock:
                self._pushing = False
                self._flushed.notify_all()
            if stopping:
                return

    def _push(self, batch: Mapping[str, tuple[int, list[float]]]) -> None:
        import pandas as pd

        from stream_infer.features.feast_repo import push_customer_rows

        frame = pd.DataFrame([row for _ts, row in batch.values()], columns=list(CUSTOMER_FEATURES))
        frame.insert(0, "customer_id", list(batch.keys()))
        frame.insert(
            1,
            "event_timestamp",
            [datetime.fromtimestamp(ts, tz=UTC) for ts, _row in batch.values()],
        )
        try:
            self.pushed += push_customer_rows(self._store, frame)
        except Exception as exc:  # any Feast/store failure: count it, keep the stream going
            self.errors += 1
            log.warning("feast push of %d customer rows failed: %s", len(frame), exc)


class FeastTerminalSink:
    """A label-processor row sink writing the final ``terminal_counts`` rows to Feast's online
    store as the serving repository's ``terminal_risk`` rows (other views are not served)."""

    def __init__(self, repo_dir: Path, redis_url: str | RedisSettings | None = None) -> None:
        from stream_infer.features.feast_repo import feature_store

        self._store = feature_store(repo_dir, redis_url)

    def publish(
        self, rows: Mapping[str, Mapping[tuple[str, int], DailyRow]], complete_through: int
    ) -> None:
        import pandas as pd

        from stream_infer.features.definitions import SECONDS_PER_DAY, TERMINAL_FEATURES
        from stream_infer.features.feast_repo import write_terminal_rows

        got = rows.get(TERMINAL_COUNTS, {})
        if not got:
            return
        frame = pd.DataFrame(
            [terminal_risk_row(r) for r in got.values()], columns=list(TERMINAL_FEATURES)
        )
        frame.insert(0, "terminal_id", [t for t, _d in got])
        frame.insert(
            1,
            "event_timestamp",
            [datetime.fromtimestamp(d * SECONDS_PER_DAY, tz=UTC) for _t, d in got],
        )
        write_terminal_rows(self._store, frame)

"""Riding out a feature-store outage: pause, retry with bounded backoff, resume by itself.

A store that does not answer is not the events' fault and not a reason to die: the worker
pauses its partitions (nothing is scored from missing state, no offset moves), retries the same
call with exponential backoff capped at ``worker.store_retry_max_s`` for as long as the outage
lasts, reports not-ready and ``stream_infer_state_errors_total``, and resumes when a call
succeeds (docs/ARCHITECTURE.md, "Reliability"). Store calls are safe to repeat: state is
idempotent by (transaction, offset).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential

from stream_infer.config import WorkerSettings
from stream_infer.errors import StoreUnavailableError
from stream_infer.metrics import WorkerMetrics
from stream_infer.worker_io import Pauses

log = logging.getLogger(__name__)
T = TypeVar("T")


class StoreGuard:
    """Retries store calls through an outage and keeps the pause, readiness and metrics."""

    def __init__(self, settings: WorkerSettings, metrics: WorkerMetrics, pauses: Pauses) -> None:
        self._wait = wait_exponential(
            multiplier=settings.store_retry_initial_s, max=settings.store_retry_max_s
        )
        self._metrics = metrics
        self._pauses = pauses
        #: Set while a state write is failing (writer thread); cleared when one succeeds.
        self.write_failing = threading.Event()
        self._abandon = threading.Event()

    @property
    def down(self) -> bool:
        return self._pauses.has("store")

    def read(
        self, call: Callable[[], T], idle: Callable[[float], None], stopping: Callable[[], bool]
    ) -> T:
        """``call()`` until it stops raising StoreUnavailableError; ``idle(s)`` between tries.

        Raises:
            StoreUnavailableError: still failing when ``stopping()`` became true.
        """
        retrying = Retrying(
            wait=self._wait,
            retry=retry_if_exception_type(StoreUnavailableError),
            stop=lambda _state: stopping(),
            sleep=idle,
            before_sleep=self._failed,
            reraise=True,
        )
        try:
            return retrying(call)
        finally:
            self.recovered()

    def write(self, call: Callable[[], None]) -> None:
        """``call()`` until it succeeds or :meth:`abandon` (writer thread; blocks meanwhile).

        Raises:
            StoreUnavailableError: still failing when abandoned (the batch is never acked).
        """

        def sleep(seconds: float) -> None:
            self._abandon.wait(seconds)

        def failed(_state: RetryCallState) -> None:
            self._metrics.state_errors.labels("write").inc()
            self.write_failing.set()

        retrying = Retrying(
            wait=self._wait,
            retry=retry_if_exception_type(StoreUnavailableError),
            stop=lambda _state: self._abandon.is_set(),
            sleep=sleep,
            before_sleep=failed,
            reraise=True,
        )
        retrying(call)
        self.write_failing.clear()

    def wait_writes(self, idle: Callable[[float], None], stopping: Callable[[], bool]) -> None:
        """Stay paused while state writes fail (the next reads would fail too)."""
        self._mark_down(None)
        while self.write_failing.is_set() and not stopping():
            idle(0.1)
        self.recovered()

    def abandon(self) -> None:
        """Stop retrying writes (shutdown after the drain gave up)."""
        self._abandon.set()

    def recovered(self) -> None:
        if self._pauses.has("store") and not self.write_failing.is_set():
            log.info("feature store answers again; resuming partitions")
            self._pauses.discard("store")
            self._metrics.store_down.set(0)
            self._metrics.ready.set(1)

    def _failed(self, state: RetryCallState) -> None:
        self._metrics.state_errors.labels("read").inc()
        self._mark_down(state.outcome.exception() if state.outcome is not None else None)

    def _mark_down(self, exc: BaseException | None) -> None:
        if not self._pauses.has("store"):
            log.warning("feature store unavailable, pausing partitions: %s", exc or "write failed")
        self._pauses.add("store")
        self._metrics.store_down.set(1)
        self._metrics.ready.set(0)

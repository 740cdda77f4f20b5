"""Whether the sidecar's feature store answers, and what the sidecar does while it does not.

A scoring call whose store read fails (:class:`~stream_infer.errors.RetryableError`, which
:class:`~stream_infer.errors.StoreUnavailableError` is) marks the store down. While it is down:
- scoring batches fail at once, without waiting on the store (so a request answers 503 with
  ``Retry-After`` in about no time, not after a socket timeout per queued batch);
- readiness reports not ready, so a load balancer sends the requests elsewhere;
- a probe (one cheap store read every :data:`PROBE_INTERVAL_S`) runs in the background: with
  no traffic coming (the pod is not ready) nothing else would find out that the store is back.
The first call that succeeds, a probe's or a request's, marks the store up again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from stream_infer.errors import RetryableError, StoreUnavailableError

log = logging.getLogger(__name__)
#: Seconds between probes while the store is down; also what ``Retry-After`` tells callers.
PROBE_INTERVAL_S = 1.0
#: A customer no transaction has: reading it costs one store round trip and finds nothing.
PROBE_CUSTOMER = "\x00stream-infer-sidecar-probe"


class StoreHealth:
    """Up or down, from the outcome of the last store call. Thread-safe (the scorer runs in a
    worker thread, readiness and the probe on the event loop)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._reason = ""

    @property
    def down(self) -> bool:
        return self._down_since is not None

    @property
    def reason(self) -> str:
        """What the last failure said ("" while up)."""
        return self._reason

    def check(self) -> None:
        """Refuse a store call while the store is down.

        Raises:
            StoreUnavailableError: the store is down (the last call failed).
        """
        if self._down_since is not None:
            raise StoreUnavailableError(f"feature store unavailable: {self._reason}")

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._reason = str(exc)
            if self._down_since is not None:
                return
            self._down_since = time.monotonic()
        log.warning("feature store unavailable (%s): answering 503 until it is back", exc)

    def succeeded(self) -> None:
        with self._lock:
            if self._down_since is None:
                return
            outage_s = time.monotonic() - self._down_since
            self._down_since = None
            self._reason = ""
        log.warning("feature store is back after %.1fs; serving again", outage_s)


async def probe_while_down(
    health: StoreHealth, probe: Callable[[], object], interval_s: float = PROBE_INTERVAL_S
) -> None:
    """Run forever (cancel to stop): every ``interval_s`` while ``health`` is down, call
    ``probe`` in a thread and record its outcome. ``probe`` raises
    :class:`~stream_infer.errors.RetryableError` when the store does not answer."""
    while True:
        await asyncio.sleep(interval_s)
        if not health.down:
            continue
        try:
            await asyncio.to_thread(probe)
        except RetryableError as exc:
            health.failed(exc)
        else:
            health.succeeded()

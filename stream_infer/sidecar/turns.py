"""Batching that costs nothing when the sidecar is idle: batches are formed from the requests
that reached the event loop in the same turn, never by waiting on a clock.

:meth:`TurnBatcher.submit` appends the request to a pending list and, if no scoring is already
scheduled, schedules one with :meth:`asyncio.AbstractEventLoop.call_soon`. That callback runs
after every task the loop already had ready, i.e. after the other requests parsed from the
same socket reads have also been submitted, and scores them all in one call of
``score_batch``, on the loop itself. Alone (concurrency 1), a request is therefore scored at
once, in a batch of one, with no thread, queue, task or timer: the only cost over calling
the model in the handler is one future (measured in ``bench.sidecar``). Under load, requests
that arrived together are scored together: the loop is busy while it scores, and what
arrives meanwhile waits in the socket buffers and forms the next batch.

A batch that takes longer than :data:`INLINE_BUDGET_S` (a slow store, a big model) moves
scoring to a worker thread until a batch is quick again: while the loop waits on scoring,
requests would pile up unseen in the kernel's socket buffers, whereas with the loop free they
are read, queue up (bounded, ``max_queue``) and turn overload into 503s. ``in_thread=True``
always scores in the thread: for a store on the network (Redis), whose calls may block up to
the client's socket timeout, during which the loop must keep answering health checks. Only
then (in the thread) does a request carry a timer (``timeout_s``): on the loop, nothing else
can run while it waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from stream_infer.errors import BatchTimeoutError, QueueFullError

#: The longest a batch may hold the loop: above it, the next batches are scored in a thread.
#: A batch of 64 transactions takes well under a millisecond; a store outage or a slow model
#: (seconds) is what this catches, not load.
INLINE_BUDGET_S = 0.01
ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


def _expire(future: asyncio.Future[Any], timeout_s: float) -> None:
    if not future.done():  # scoring skips a request whose future is done
        future.set_exception(BatchTimeoutError(f"not scored within {timeout_s * 1000:.0f} ms"))


class TurnBatcher(Generic[ItemT, ResultT]):
    """Scores concurrent :meth:`submit` calls together with a synchronous ``score_batch``
    (one result per item, in order), at most ``max_batch_size`` per call, with at most
    ``max_queue`` requests waiting. Scores on the loop while batches take at most
    :data:`INLINE_BUDGET_S`, in a worker thread otherwise (and always with ``in_thread``)."""

    def __init__(
        self,
        score_batch: Callable[[Sequence[ItemT]], Sequence[ResultT]],
        max_batch_size: int,
        max_queue: int,
        *,
        in_thread: bool = False,
    ) -> None:
        self._score = score_batch
        self._max_batch = max_batch_size
        self._max_queue = max_queue
        self._in_thread = in_thread
        self._pending: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        self._scheduled = False
        self._slow = False  # the last batch took longer than INLINE_BUDGET_S
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0
        self.last_batch_size = 0

    @property
    def depth(self) -> int:
        """Requests waiting to be scored."""
        return len(self._pending)

    @property
    def threaded(self) -> bool:
        """Whether batches are scored in a worker thread now."""
        return self._in_thread or self._slow or self._worker is not None

    def start(self) -> None:
        """Nothing to start (scoring is scheduled per turn); kept for the batcher interface."""

    async def stop(self) -> None:
        """Fail what is still waiting (the process is stopping) and stop the worker."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        pending, self._pending = self._pending, []
        for _item, future in pending:
            if not future.done():
                future.cancel()

    async def submit(self, item: ItemT, timeout_s: float) -> ResultT:
        """Score ``item`` with whatever else arrived in this turn.

        Raises:
            QueueFullError: ``max_queue`` requests are already waiting.
            BatchTimeoutError: not scored within ``timeout_s`` (while scoring in a thread;
                on the loop, nothing else runs while a request waits).
            Exception: whatever ``score_batch`` raised for the batch.
        """
        if len(self._pending) >= self._max_queue:
            raise QueueFullError(f"{self._max_queue} requests already queued")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ResultT] = loop.create_future()
        self._pending.append((item, future))
        if not self.threaded:
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._score_pending)
            return await future
        if self._worker is None:
            self._worker = loop.create_task(self._score_in_thread(), name="sidecar-batches")
        timer = loop.call_later(timeout_s, _expire, future, timeout_s)
        try:
            return await future
        finally:
            timer.cancel()

    def _take(self) -> list[tuple[ItemT, asyncio.Future[ResultT]]]:
        batch = self._pending[: self._max_batch]
        del self._pending[: self._max_batch]
        # A caller that went away (cancelled) or timed out is not scored.
        return [(item, future) for item, future in batch if not future.done()]

    def _timed(self, items: list[ItemT]) -> Sequence[ResultT]:
        started = time.monotonic()
        try:
            return self._score(items)
        finally:
            self._slow = time.monotonic() - started > INLINE_BUDGET_S

    def _score_pending(self) -> None:
        self._scheduled = False
        while self._pending and not self.threaded:
            self._run(self._take(), self._timed)
        if self._pending and self._worker is None:  # turned slow: the rest in the thread
            self._worker = asyncio.get_running_loop().create_task(self._score_in_thread())

    async def _score_in_thread(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                if not batch:
                    continue
                try:
                    items = [item for item, _ in batch]
                    results = await asyncio.to_thread(self._timed, items)
                except Exception as exc:
                    _fail(batch, exc)
                    continue
                self._settle(batch, results)
        finally:
            self._worker = None  # drained: the next request is scored on the loop if quick

    def _run(
        self,
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]],
        score: Callable[[list[ItemT]], Sequence[ResultT]],
    ) -> None:
        if not batch:
            return
        try:
            results = score([item for item, _ in batch])
        except Exception as exc:  # the batch failed: every caller in it gets the error
            _fail(batch, exc)
            return
        self._settle(batch, results)

    def _settle(
        self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]], results: Sequence[ResultT]
    ) -> None:
        self.batches += 1
        self.last_batch_size = len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


def _fail(batch: Sequence[tuple[object, asyncio.Future[ResultT]]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)

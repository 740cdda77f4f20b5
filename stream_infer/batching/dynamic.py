"""Dynamic batching for request-driven callers (the sidecar).

Concurrent requests are scored in one call of ``score_batch``, bounded by ``max_batch_size``
and ``max_wait_ms`` (the same :class:`~stream_infer.config.BatchSettings` as the stream). A
request never waits for company when nothing else is queued: the batcher takes whatever is
there and goes, and only waits up to ``max_wait_ms`` while a batch is already forming and more
requests keep arriving. The queue is bounded: when it is full, :meth:`DynamicBatcher.submit`
raises :class:`QueueFullError` at once (the caller answers 503).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from stream_infer.errors import StreamInferError

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")


class QueueFullError(StreamInferError):
    """The batcher's queue is at its bound; retry later."""


class BatchTimeoutError(StreamInferError):
    """The request was not scored within its timeout."""


class DynamicBatcher(Generic[ItemT, ResultT]):
    """Batches concurrent :meth:`submit` calls onto a synchronous ``score_batch``.

    ``score_batch`` runs in a worker thread (it is CPU and I/O bound: features, the model),
    one batch at a time, and must return one result per item, in order.
    """

    def __init__(
        self,
        score_batch: Callable[[Sequence[ItemT]], Sequence[ResultT]],
        max_batch_size: int,
        max_wait_ms: float,
        max_queue: int,
    ) -> None:
        self._score = score_batch
        self._max_batch = max_batch_size
        self._max_wait_s = max_wait_ms / 1000.0
        self._queue: asyncio.Queue[tuple[ItemT, asyncio.Future[ResultT]]] = asyncio.Queue(
            maxsize=max_queue
        )
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.last_batch_size = 0

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def submit(self, item: ItemT, timeout_s: float) -> ResultT:
        """Score ``item`` with whatever else is queued.

        Raises:
            QueueFullError: the queue is at its bound.
            BatchTimeoutError: no result within ``timeout_s``.
            Exception: whatever ``score_batch`` raised for the batch.
        """
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull as exc:
            raise QueueFullError(f"{self._queue.maxsize} requests already queued") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError as exc:
            future.cancel()  # the batcher skips it if it has not started it yet
            raise BatchTimeoutError(f"not scored within {timeout_s * 1000:.0f} ms") from exc

    async def _collect(self) -> list[tuple[ItemT, asyncio.Future[ResultT]]]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or len(batch) == 1:
                # Alone: go now. With company: wait only while the batch is still filling.
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [(item, fut) for item, fut in batch if not fut.cancelled()]

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            if not batch:
                continue
            self.batches += 1
            self.last_batch_size = len(batch)
            try:
                results = await asyncio.to_thread(self._score, [item for item, _ in batch])
            except Exception as exc:  # the batch failed: every caller in it gets the error
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

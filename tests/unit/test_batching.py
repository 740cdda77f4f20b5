"""The dynamic batcher: one call for concurrent requests, no waiting alone, bounded queue."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from stream_infer.batching.dynamic import BatchTimeoutError, DynamicBatcher, QueueFullError


class Recorder:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[list[int]] = []
        self.delay_s = delay_s
        self.release = threading.Event()
        self.release.set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.release.wait(5)
        time.sleep(self.delay_s)
        self.calls.append(list(items))
        return [i * 10 for i in items]


def test_concurrent_requests_share_one_call() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        rec.release.clear()  # hold the first batch so the rest queue up behind it
        batcher: DynamicBatcher[int, int] = DynamicBatcher(rec, 64, 5.0, 100, in_thread=True)
        batcher.start()
        first = asyncio.create_task(batcher.submit(0, 5))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher.submit(i, 5)) for i in range(1, 11)]
        await asyncio.sleep(0.05)
        rec.release.set()
        assert await first == 0
        assert [await r for r in rest] == [i * 10 for i in range(1, 11)]
        await batcher.stop()
        return rec

    rec = asyncio.run(main())
    assert rec.calls == [[0], list(range(1, 11))]


def test_alone_does_not_wait_for_company() -> None:
    async def main() -> float:
        batcher: DynamicBatcher[int, int] = DynamicBatcher(Recorder(), 64, 1000.0, 10)
        batcher.start()
        start = time.monotonic()
        assert await batcher.submit(3, 5) == 30
        elapsed = time.monotonic() - start
        await batcher.stop()
        return elapsed

    # max_wait is a whole second: a lone request must not sit through it.
    assert asyncio.run(main()) < 0.5


def test_max_batch_size_is_respected() -> None:
    async def main() -> Recorder:
        rec = Recorder()
        rec.release.clear()
        batcher: DynamicBatcher[int, int] = DynamicBatcher(rec, 4, 5.0, 100, in_thread=True)
        batcher.start()
        tasks = [asyncio.create_task(batcher.submit(i, 5)) for i in range(10)]
        await asyncio.sleep(0.05)
        rec.release.set()
        await asyncio.gather(*tasks)
        await batcher.stop()
        return rec

    rec = asyncio.run(main())
    assert max(len(c) for c in rec.calls) <= 4
    assert sorted(i for c in rec.calls for i in c) == list(range(10))


def test_full_queue_rejects_at_once() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.release.clear()
        batcher: DynamicBatcher[int, int] = DynamicBatcher(rec, 1, 0.0, 2, in_thread=True)
        batcher.start()
        held = asyncio.create_task(batcher.submit(0, 5))  # taken by the batcher, blocked
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(batcher.submit(i, 5)) for i in (1, 2)]
        await asyncio.sleep(0.01)
        with pytest.raises(QueueFullError):
            await batcher.submit(3, 5)
        rec.release.set()
        assert await asyncio.gather(held, *queued) == [0, 10, 20]
        await batcher.stop()

    asyncio.run(main())


def test_slow_scoring_times_out() -> None:
    async def main() -> None:
        rec = Recorder()
        rec.release.clear()
        batcher: DynamicBatcher[int, int] = DynamicBatcher(rec, 8, 0.0, 8, in_thread=True)
        batcher.start()
        with pytest.raises(BatchTimeoutError):
            await batcher.submit(1, 0.05)
        rec.release.set()
        await batcher.stop()

    asyncio.run(main())


def test_a_failing_batch_fails_its_callers() -> None:
    def boom(items: Sequence[int]) -> list[int]:
        raise RuntimeError("model exploded")

    async def main() -> None:
        batcher: DynamicBatcher[int, int] = DynamicBatcher(boom, 8, 1.0, 8)
        batcher.start()
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.submit(1, 5)
        await batcher.stop()

    asyncio.run(main())

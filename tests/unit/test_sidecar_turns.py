"""Turn batching (stream_infer.sidecar.turns): a request alone is scored at once in a batch of
one, requests of the same turn share one batch, and either way a transaction gets the same
score and features (the real read-only pipeline on a temporary SQLite store)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from stream_infer.config import Settings, load_settings
from stream_infer.errors import BatchTimeoutError, QueueFullError
from stream_infer.events import Transaction
from stream_infer.model.registry import ModelRegistry
from stream_infer.pipeline import ScoringPipeline
from stream_infer.runtime import build_features, build_pipeline, load_serving_model
from stream_infer.sidecar.scoring import Scored, TransactionScorer
from stream_infer.sidecar.turns import TurnBatcher

from .fakes import FakeRecord


class Recorder:
    """A score function that records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        return [i * 10 for i in items]


def test_a_request_alone_is_a_batch_of_one_and_a_turn_is_one_batch() -> None:
    async def main() -> None:
        rec = Recorder()
        batcher: TurnBatcher[int, int] = TurnBatcher(rec, 64, 100)
        assert await batcher.submit(1, 1.0) == 10
        assert await batcher.submit(2, 1.0) == 20
        assert rec.batches == [[1], [2]]  # alone: never waited for company
        assert await asyncio.gather(*(batcher.submit(i, 1.0) for i in range(5))) == [
            0,
            10,
            20,
            30,
            40,
        ]
        assert rec.batches[2:] == [[0, 1, 2, 3, 4]]  # arrived in one turn: one batch
        assert batcher.last_batch_size == 5 and batcher.depth == 0

    asyncio.run(main())


def test_batches_are_bounded_and_so_is_the_queue() -> None:
    async def main() -> None:
        rec = Recorder()
        batcher: TurnBatcher[int, int] = TurnBatcher(rec, 2, 3)
        calls = [batcher.submit(i, 1.0) for i in range(4)]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes[:3] == [0, 10, 20]
        assert isinstance(outcomes[3], QueueFullError)
        assert rec.batches == [[0, 1], [2]]

    asyncio.run(main())


def test_a_failed_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    def flaky(items: Sequence[int]) -> list[int]:
        if 0 in items:
            raise RuntimeError("model down")
        return list(items)

    async def main() -> None:
        batcher: TurnBatcher[int, int] = TurnBatcher(flaky, 8, 8)
        outcomes = await asyncio.gather(
            batcher.submit(0, 1.0), batcher.submit(1, 1.0), return_exceptions=True
        )
        assert all(isinstance(o, RuntimeError) for o in outcomes)
        assert await batcher.submit(2, 1.0) == 2

    asyncio.run(main())


def test_in_a_thread_a_slow_batch_times_out_and_the_next_ones_batch_up() -> None:
    import threading

    gate = threading.Event()
    rec = Recorder()

    def slow(items: Sequence[int]) -> list[int]:
        gate.wait(5)
        return rec(items)

    async def main() -> None:
        batcher: TurnBatcher[int, int] = TurnBatcher(slow, 8, 8, in_thread=True)
        first = asyncio.ensure_future(batcher.submit(1, 0.05))
        await asyncio.sleep(0)  # the first batch is in the thread now
        later = [asyncio.ensure_future(batcher.submit(i, 5.0)) for i in (2, 3)]
        with pytest.raises(BatchTimeoutError):
            await first
        gate.set()
        assert await asyncio.gather(*later) == [20, 30]
        assert rec.batches == [[1], [2, 3]]  # queued while the thread scored: one batch
        await batcher.stop()

    asyncio.run(main())


def _settings(tmp_path: Path, registry: ModelRegistry) -> Settings:
    return load_settings(
        model={"registry_dir": str(registry.root), "warmup_batches": 1},
        features={"state_dir": str(tmp_path / "state")},
        metrics={"enabled": False},
    )


def _transactions(n: int, customers: int, start: datetime) -> list[Transaction]:
    return [
        Transaction(
            transaction_id=f"tx-{start.timestamp():.0f}-{i}",
            tx_datetime=start + timedelta(minutes=7 * i),
            customer_id=f"c{i % customers}",
            terminal_id=f"t{i % 5}",
            tx_amount=5 + (i * 37) % 200,
        )
        for i in range(n)
    ]


def test_the_inline_fast_path_scores_as_the_batched_path(
    tmp_path: Path, registry: ModelRegistry
) -> None:
    settings = _settings(tmp_path, registry)
    model = load_serving_model(settings)
    # Some stored history, written as the stream writes it.
    writer = build_pipeline(settings, model)
    history = _transactions(30, 6, datetime(2026, 4, 1, tzinfo=UTC))
    written = writer.process(
        [
            FakeRecord(orjson.dumps(tx.model_dump(mode="json")), tx.customer_id.encode(), _offset=i)
            for i, tx in enumerate(history)
        ]
    )
    writer.features.state.save(written.state_writes)  # as the worker's writer thread does
    pipeline = ScoringPipeline(model, build_features(settings, read_only=True), emit_features=True)
    scorer = TransactionScorer(pipeline)
    # Eight customers, two of them twice: the batched path scores those in rounds.
    txs = _transactions(10, 8, datetime(2026, 4, 2, tzinfo=UTC))

    async def main() -> tuple[list[Scored], list[Scored], int]:
        batcher: TurnBatcher[Transaction, Scored] = TurnBatcher(scorer, 512, 1024)
        alone = [await batcher.submit(tx, 1.0) for tx in txs]  # each a batch of one
        together = await asyncio.gather(*(batcher.submit(tx, 1.0) for tx in txs))
        return alone, list(together), batcher.last_batch_size

    alone, together, last_batch = asyncio.run(main())
    assert last_batch == len(txs)
    assert [s.score for s in alone] == [s.score for s in together]
    assert [s.features for s in alone] == [s.features for s in together]
    assert max(s.features["customer_nb_tx_30d"] for s in alone) > 1  # the history was read


def test_a_slow_batch_moves_scoring_to_a_thread_and_a_quick_one_back() -> None:
    import time

    slow = {"on": True}
    rec = Recorder()

    def score(items: Sequence[int]) -> list[int]:
        if slow["on"]:
            time.sleep(0.05)  # over INLINE_BUDGET_S
        return rec(items)

    async def main() -> None:
        batcher: TurnBatcher[int, int] = TurnBatcher(score, 8, 8)
        assert not batcher.threaded
        assert await batcher.submit(1, 5.0) == 10  # on the loop, and slow
        assert batcher.threaded
        slow["on"] = False
        assert await batcher.submit(2, 5.0) == 20  # in the thread, and quick
        assert not batcher.threaded
        assert await asyncio.gather(*(batcher.submit(i, 5.0) for i in (3, 4))) == [30, 40]
        assert rec.batches == [[1], [2], [3, 4]]

    asyncio.run(main())

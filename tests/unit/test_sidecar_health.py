"""The sidecar's view of its feature store: down on a failure, up on the next success."""

from __future__ import annotations

import asyncio

import pytest

from stream_infer.errors import RetryableError, StoreUnavailableError
from stream_infer.sidecar.health import StoreHealth, probe_while_down


def test_down_from_a_failure_until_a_success() -> None:
    health = StoreHealth()
    health.check()  # up: nothing to refuse
    health.failed(StoreUnavailableError("redis load failed: Timeout"))
    assert health.down and health.reason == "redis load failed: Timeout"
    with pytest.raises(StoreUnavailableError, match="feature store unavailable: redis load"):
        health.check()
    health.succeeded()
    assert not health.down and health.reason == ""
    health.check()


def test_the_probe_brings_the_store_back_up() -> None:
    health = StoreHealth()
    outcomes: list[BaseException | None] = [RetryableError("still down"), None]
    calls: list[int] = []

    def probe() -> None:
        calls.append(1)
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    async def scenario() -> None:
        prober = asyncio.create_task(probe_while_down(health, probe, interval_s=0.001))
        await asyncio.sleep(0.01)
        assert not calls  # never probes while the store is up
        health.failed(StoreUnavailableError("timeout"))
        while health.down:
            await asyncio.sleep(0.001)
        prober.cancel()
        with pytest.raises(asyncio.CancelledError):
            await prober

    asyncio.run(scenario())
    assert len(calls) == 2 and not outcomes

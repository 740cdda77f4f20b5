"""The sidecar through a Redis outage: 503 with Retry-After (never a 500, never a hang), not
ready while the store fails, and the same score as before once it is back.

The sidecar reads its feature state from a private Redis that the test pauses (SIGSTOP); the
shared Redis on 6379 is never paused.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from stream_infer.config import Settings
from stream_infer.features.compiled import FeatureComputer
from stream_infer.state.factory import open_state

from .conftest import make_test_settings
from .fraud_events import columns, fraud_defs
from .kafka_io import make_transactions
from .redis_server import RedisServer
from .test_sidecar import predict_body, serving

PREDICT = "/v1/models/fraud/predict"


@pytest.fixture
def settings(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
    own_redis: RedisServer,
) -> Settings:
    return make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        # A store call fails well inside the request's own timeout, so an outage is a 503.
        redis={
            "url": own_redis.url,
            "key_prefix": "sidecar",
            "socket_timeout_s": 0.5,
            "connect_timeout_s": 0.5,
        },
        serve={"request_timeout_ms": 5000.0},
    )


def seed_history(settings: Settings, tx: dict[str, Any], n: int) -> None:
    """Earlier transactions of the customer, as the worker would have stored them."""
    when = int(datetime.fromisoformat(tx["tx_datetime"]).timestamp())
    rows = [(f"seed-{i}", tx["customer_id"], when - 600 * (n - i), 10.0 + i, i) for i in range(n)]
    store = open_state(settings).entities
    FeatureComputer(fraud_defs(), store=store).compute(columns(rows))


def wait_ready(client: httpx.Client, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "the sidecar never became ready again"
        time.sleep(0.05)


def test_a_paused_redis_answers_503_then_the_same_score(
    settings: Settings, own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    tx = make_transactions(1, start=datetime.fromisoformat("2026-04-02T10:00:00+00:00"))[0]
    seed_history(settings, tx, n=4)
    body = predict_body(tx, return_features=True)
    with (
        caplog.at_level(logging.WARNING, logger="stream_infer.sidecar.health"),
        serving(settings) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        before = client.post(PREDICT, json=body)
        assert before.status_code == 200, before.text
        assert before.json()["features"]["customer_nb_tx_1d"] == 5  # the history was read

        with own_redis.outage():
            started = time.monotonic()
            failed = client.post(PREDICT, json=body)
            first_answer_s = time.monotonic() - started
            # 503, not the batcher's 504 after request_timeout_ms: the store call gave up.
            assert failed.status_code == 503, failed.text
            assert failed.headers["Retry-After"] == "1"
            assert failed.json()["error"] == "feature store unavailable"
            assert failed.json()["detail"]  # what the store said
            ready = client.get("/v2/health/ready")
            assert ready.status_code == 503
            assert ready.json() == {"ready": False, "error": "feature store unavailable"}
            again = client.post(PREDICT, json=body)  # known down: refused without a store call
            assert again.status_code == 503 and again.headers["Retry-After"] == "1"
            assert client.get("/v2/health/live").status_code == 200

        wait_ready(client)  # the background probe found the store back
        after = client.post(PREDICT, json=body)
        assert after.status_code == 200, after.text
        assert after.json()["predictions"] == before.json()["predictions"]
        assert after.json()["features"] == before.json()["features"]
        metrics = client.get("/metrics").text
    assert 'stream_infer_http_requests_total{api="v1",status="503"} 2.0' in metrics
    assert 'status="500"' not in metrics
    messages = [r.getMessage() for r in caplog.records if r.name == "stream_infer.sidecar.health"]
    assert len(messages) == 2, messages
    assert messages[0].startswith("feature store unavailable")
    assert messages[1].startswith("feature store is back")
    print(f"first 503 after {first_answer_s * 1000:.0f} ms (socket timeout 500 ms)")

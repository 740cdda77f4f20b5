"""The sidecar refuses a transaction from the future with 400, alone or in a batch, and still
answers the rest of its callers (issue 19)."""

from __future__ import annotations

from pathlib import Path

import httpx

from stream_infer.config import Settings

from .conftest import make_test_settings
from .kafka_io import make_transactions
from .test_sidecar import predict_body, serving

PREDICT = "/v1/models/fraud/predict"


def test_a_transaction_from_the_future_is_a_400_naming_the_setting(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    settings = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path, model={"registry_dir": str(model_registry)}
    )
    txs = make_transactions(3, customers=1)
    future = {**txs[1], "transaction_id": "from-2999", "tx_datetime": "2999-01-01T00:00:00Z"}
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        for body in (predict_body(future), {"transactions": [txs[0], future]}):
            refused = client.post(PREDICT, json=body)
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error.startswith("event from the future: tx_datetime 2999-01-01T00:00:00Z")
            assert error.endswith("ahead of the wall clock (events.max_future_s=3600)")
        # History is never refused, and the refusals changed nothing for the next caller.
        assert client.post(PREDICT, json={"transactions": txs}).status_code == 200

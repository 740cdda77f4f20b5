"""The per-request baseline for the sidecar benchmark: what most teams write first.

A plain FastAPI ``async def`` handler that validates the same request, computes the same
features (the same read-only feature computer) and calls ONNX Runtime once per request, with
no batching. Run: ``python -m bench.baseline_app <port>`` with the same STREAM_INFER_* settings.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from fastapi import FastAPI

from stream_infer.config import Settings, load_settings
from stream_infer.features.online import TxInput
from stream_infer.runtime import build_features, load_serving_model
from stream_infer.sidecar.schemas import PredictRequest
from stream_infer.wire import epoch_seconds


def create_app(settings: Settings) -> FastAPI:
    model = load_serving_model(settings)
    features = build_features(settings, read_only=True)
    app = FastAPI(title="baseline")

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, body: PredictRequest) -> dict[str, Any]:
        tx = body.inputs
        row, _flags = features.compute(
            [
                TxInput(
                    tx.transaction_id,
                    tx.customer_id,
                    tx.terminal_id,
                    epoch_seconds(tx.tx_datetime),
                    tx.tx_amount,
                    -1,
                    2**62,
                )
            ]
        )
        features.state.drop_partitions([-1])
        score = float(model.predict(row.astype(np.float32))[0])
        return {
            "request_id": body.request_id,
            "model_name": model.name,
            "model_version": model.version,
            "predictions": {"fraud_probability": score, "is_fraud": score >= 0.5},
        }

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    import uvicorn

    uvicorn.run(
        create_app(load_settings()),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()

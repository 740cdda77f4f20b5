"""The per-request baseline for the sidecar benchmark: what most teams write first.

A plain FastAPI ``async def`` handler that validates the same request and scores it with the
same pipeline core (same read-only features, same model), one ONNX Runtime call per request,
no batching, default JSON responses.
Run: ``python -m bench.baseline_app <port>`` with the same STREAM_INFER_* settings.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
from fastapi import FastAPI

from stream_infer.config import Settings, load_settings
from stream_infer.pipeline import ScoringPipeline
from stream_infer.runtime import build_features, load_serving_model
from stream_infer.sidecar.schemas import PredictRequest
from stream_infer.sidecar.scoring import SIDECAR_PARTITION, sidecar_inputs


def create_app(settings: Settings) -> FastAPI:
    model = load_serving_model(settings)
    pipeline = ScoringPipeline(model, build_features(settings, read_only=True))
    app = FastAPI(title="baseline")

    @app.post("/v1/models/{name}/predict")
    async def predict(name: str, body: PredictRequest) -> dict[str, Any]:
        cols = sidecar_inputs(pipeline.source, [body.inputs])
        out = pipeline.score_columns(cols, np.full(1, SIDECAR_PARTITION, dtype=np.int64))
        pipeline.features.state.drop_partitions([SIDECAR_PARTITION])
        score = float(out.scores[0])
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

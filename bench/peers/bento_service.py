"""BentoML's service for the benchmark's model (runs inside BentoML's environment).

``POST /predict`` with ``{"rows": [[15 floats], ...]}`` answers the class probabilities. The
API is ``batchable``: BentoML's adaptive batching merges concurrent requests along axis 0
(up to ``max_batch_size``, within ``max_latency_ms``). The ONNX file is named by the
``BENCH_ONNX_MODEL`` environment variable (set by :mod:`bench.peers.servers`).
"""

from __future__ import annotations

import os

import bentoml  # type: ignore[import-not-found]
import numpy as np
import onnxruntime as ort


@bentoml.service(workers=1, logging={"access": {"enabled": False}})
class Fraud:
    def __init__(self) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # as the sidecar's model.intra_op_threads
        self.session = ort.InferenceSession(
            os.environ["BENCH_ONNX_MODEL"], options, providers=["CPUExecutionProvider"]
        )

    @bentoml.api(  # type: ignore[untyped-decorator]
        batchable=True, batch_dim=0, max_batch_size=64, max_latency_ms=1000
    )
    def predict(self, rows: np.ndarray) -> np.ndarray:
        out = self.session.run(["probabilities"], {"input": rows.astype(np.float32)})
        return out[0]  # type: ignore[no-any-return]

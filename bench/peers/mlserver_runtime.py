"""MLServer's runtime for the benchmark's model (runs inside MLServer's environment).

MLServer 1.7 ships no ONNX runtime, so this is the custom one its docs describe: load the
ONNX file named by the model settings' ``parameters.uri``, run a request's ``input`` tensor
and answer ``probabilities``. Adaptive batching (``max_batch_size``, ``max_batch_time`` in
the model settings) merges concurrent requests along the first axis before ``predict``.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel  # type: ignore[import-not-found]
from mlserver.codecs import NumpyCodec  # type: ignore[import-not-found]
from mlserver.types import InferenceRequest, InferenceResponse  # type: ignore[import-not-found]


class FraudOnnx(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # as the sidecar's model.intra_op_threads
        uri = self.settings.parameters.uri if self.settings.parameters else None
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        rows = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        out = self._session.run(["probabilities"], {"input": rows})[0]
        return InferenceResponse(
            model_name=self.name, outputs=[NumpyCodec.encode_output("probabilities", out)]
        )

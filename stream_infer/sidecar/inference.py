"""The Open Inference Protocol's operations for the served model, for either transport.

One :class:`OpenInference` per sidecar answers HTTP (:mod:`stream_infer.sidecar.protocol_http`)
and gRPC (:mod:`stream_infer.sidecar.grpc_server`) alike: model resolution, metadata, the
model-configuration and statistics extensions, and inference through the shared tensor
batcher (so both transports' requests share batches). Every refusal is a
:class:`~stream_infer.sidecar.protocol.ProtocolError` naming what was wrong.

The model: input ``[n, 15]`` FP32 feature rows (other numeric datatypes converted, see
:mod:`stream_infer.sidecar.datatypes`), ``1 <= n <= batch.max_batch_size`` (a ``[15]`` shape
is one row); output ``[n, 2]`` FP32 class probabilities (column 1: fraud). Request parameters:
``timeout`` (µs, as Triton: shortens ``serve.request_timeout_ms``, never lengthens it),
``priority`` (accepted; there is one priority level); ``sequence_*`` are refused (the model
is stateless); others are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from stream_infer.errors import BatchTimeoutError, QueueFullError
from stream_infer.features.definitions import FEATURE_NAMES, N_FEATURES
from stream_infer.model.serving import Served, ServingModels
from stream_infer.model.session import LoadedModel
from stream_infer.sidecar.datatypes import as_features
from stream_infer.sidecar.protocol import (
    EXTENSIONS,
    PLATFORM,
    InferAnswer,
    InferCall,
    OutputTensor,
    ProtocolError,
)
from stream_infer.sidecar.scoring import TensorRequest

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

SERVER_NAME = "stream-infer"


def server_version() -> str:
    try:
        return package_version("stream-infer")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0"


def _dims(shape: Any) -> list[int]:
    """An ONNX shape as protocol dims (-1 where the model leaves a dimension open)."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def output_dims(model: LoadedModel) -> list[int]:
    """The output's dims after the batch dimension (``[2]``: the two class probabilities)."""
    for out in model.session.get_outputs():
        if out.name == model.output_name:
            return _dims(out.shape)[1:]
    return [2]


class OpenInference:
    """The protocol's operations over a :class:`~stream_infer.sidecar.core.Sidecar`."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    # -- resolution -------------------------------------------------------------------------

    def resolve(self, name: str, version: str | None) -> tuple[ServingModels, Served]:
        """The serving set and the member ``name`` / ``version`` (None or "": the champion)
        addresses.

        Raises:
            ProtocolError: 503 (with Retry-After) while the champion is not loaded, saying
                why; 404 for a model or version not in the serving set.
        """
        s = self.sidecar
        if not s.ready or s.models is None:
            raise ProtocolError(s.not_ready_reason(), 503, retry_after=True)
        version = version or None
        if not s.knows(name, version):
            which = name if version is None else f"{name} version {version}"
            raise ProtocolError(f"unknown model {which}", 404)
        serving = s.models.current
        if version is None:
            return serving, serving.champion
        role = serving.role_of(int(version))
        member = dict(serving.members()).get(role) if role is not None else None
        if member is None:  # left the serving set since knows()
            raise ProtocolError(f"unknown model {name} version {version}", 404)
        return serving, member

    def ready(self, name: str, version: str | None) -> bool:
        """Whether ``name`` / ``version`` can be inferred now (never raises)."""
        try:
            self.resolve(name, version)
        except ProtocolError:
            return False
        return True

    # -- metadata and extensions ------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        """``GET /v2``: the protocol's fields, plus ``ready`` and why not (``reason``)."""
        reason = self.sidecar.not_ready_reason()
        return {
            "name": SERVER_NAME,
            "version": server_version(),
            "extensions": list(EXTENSIONS),
            "ready": not reason,
            "reason": reason,
        }

    def model_metadata(self, name: str, version: str | None) -> dict[str, Any]:
        """Raises ProtocolError (see :meth:`resolve`)."""
        serving, served = self.resolve(name, version)
        m = served.model
        return {
            "name": m.name,
            "versions": [str(s.version) for _role, s in serving.members()],
            "platform": PLATFORM,
            "inputs": [{"name": m.input_name, "datatype": "FP32", "shape": [-1, N_FEATURES]}],
            "outputs": [
                {"name": m.output_name, "datatype": "FP32", "shape": [-1, *output_dims(m)]}
            ],
        }

    def model_config(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's model configuration (``GET /v2/models/{name}/config``): the batching is
        the sidecar's turn batcher (up to ``batch.max_batch_size`` rows, never delayed), the
        feature order is in ``parameters``.

        Raises:
            ProtocolError: see :meth:`resolve`.
        """
        serving, served = self.resolve(name, version)
        m = served.model
        batch = self.sidecar.settings.batch
        on_gpu = m.provider.startswith("CUDA")
        return {
            "name": m.name,
            "platform": PLATFORM,
            "backend": "onnxruntime",
            "version_policy": {
                "specific": {"versions": [s.version for _role, s in serving.members()]}
            },
            "max_batch_size": batch.max_batch_size,
            "input": [
                {
                    "name": m.input_name,
                    "data_type": "TYPE_FP32",
                    "format": "FORMAT_NONE",
                    "dims": [N_FEATURES],
                }
            ],
            "output": [{"name": m.output_name, "data_type": "TYPE_FP32", "dims": output_dims(m)}],
            "dynamic_batching": {
                # Batches are what reached the loop in one turn: no request is held back
                # waiting for company (stream_infer.sidecar.turns).
                "max_queue_delay_microseconds": 0,
                "preferred_batch_size": [batch.max_batch_size],
            },
            "instance_group": [
                {"name": m.name, "kind": "KIND_GPU" if on_gpu else "KIND_CPU", "count": 1}
            ],
            "parameters": {"feature_names": {"string_value": ",".join(FEATURE_NAMES)}},
        }

    def statistics(self, name: str, version: str | None) -> dict[str, Any]:
        """Triton's ``model_stats`` for ``name`` ("" = every model served) and ``version``
        (None or "" = every version in the serving set); see :mod:`stream_infer.sidecar.stats`.

        Raises:
            ProtocolError: see :meth:`resolve` (a named model only).
        """
        if not name:
            if not self.sidecar.ready:
                return {"model_stats": []}
            name = self.sidecar.model.name
        serving, served = self.resolve(name, version)
        versions = [served.version] if version else [s.version for _r, s in serving.members()]
        return {"model_stats": self.sidecar.stats.report(name, versions)}

    # -- inference --------------------------------------------------------------------------

    async def infer(
        self, name: str, version: str | None, decode: Callable[[], InferCall]
    ) -> InferAnswer:
        """Score the call ``decode`` gives with ``name`` / ``version`` through the shared
        tensor batcher. ``decode`` runs once the model is resolved (so an unknown model is a
        404 whatever the body), and its refusals count as failed requests of the model.

        Raises:
            ProtocolError: see :meth:`resolve`; 400 for inputs, outputs or parameters the
                model cannot take (``decode``'s too); 503 (Retry-After) when the queue is
                full; 504 when not scored within the timeout; 404 when the version left the
                serving set.
        """
        arrived = time.monotonic_ns()
        _serving, served = self.resolve(name, version)
        s = self.sidecar
        try:
            call = decode()
            rows = self._rows(served.model, call)
            wanted = self._outputs(served.model, call.outputs)
            timeout_s = self._timeout_s(call.parameters)
            assert s.tensor_batcher is not None
            request = TensorRequest(rows, int(version) if version else None, time.monotonic_ns())
            try:
                result = await s.tensor_batcher.submit(request, timeout_s)
            except QueueFullError as exc:
                raise ProtocolError(str(exc), 503, retry_after=True) from exc
            except BatchTimeoutError as exc:
                raise ProtocolError(str(exc), 504) from exc
            if result.output is None or result.served is None:
                raise ProtocolError(f"model {name} version {version} is no longer served", 404)
        except ProtocolError:
            s.stats.answered(served.model.name, served.version, False, self._since(arrived))
            raise
        done = result.served
        s.stats.answered(done.model.name, done.version, True, self._since(arrived))
        s.metrics.batch_size.labels("v2").observe(s.tensor_batcher.last_batch_size)
        s.metrics.served.labels("v2", str(done.version), result.role).inc()
        return InferAnswer(
            model_name=done.model.name,
            model_version=str(done.version),
            outputs=[OutputTensor(o, "FP32", result.output) for o in wanted],
            id=call.id,
            parameters={"model_semver": done.semver, "model_role": result.role},
        )

    @staticmethod
    def _since(start_ns: int) -> int:
        return time.monotonic_ns() - start_ns

    def _rows(self, model: LoadedModel, call: InferCall) -> npt.NDArray[np.float32]:
        names = [t.name for t in call.inputs]
        if names != [model.input_name]:
            raise ProtocolError(f"expected exactly one input {model.input_name!r}, got {names}")
        tensor = call.inputs[0]
        shape = tensor.shape if len(tensor.shape) != 1 else (1, *tensor.shape)
        if len(shape) != 2 or shape[1] != N_FEATURES or shape[0] < 1:
            raise ProtocolError(
                f"input shape must be [n, {N_FEATURES}] (or [{N_FEATURES}]), got "
                f"{list(tensor.shape)}"
            )
        limit = self.sidecar.settings.batch.max_batch_size
        if shape[0] > limit:
            raise ProtocolError(f"batch of {shape[0]} rows is over max_batch_size {limit}")
        if tensor.values.size != shape[0] * shape[1]:
            raise ProtocolError(
                f"input {tensor.name!r} has {tensor.values.size} elements; shape "
                f"{list(tensor.shape)} needs {shape[0] * shape[1]}"
            )
        return as_features(tensor.name, tensor.values).reshape(shape)

    @staticmethod
    def _outputs(model: LoadedModel, names: list[str] | None) -> list[str]:
        if names is None:
            return [model.output_name]
        unknown = [n for n in names if n != model.output_name]
        if unknown:
            raise ProtocolError(
                f"unknown output {unknown[0]!r}; the model's output is {model.output_name!r}"
            )
        return list(dict.fromkeys(names))

    def _timeout_s(self, parameters: dict[str, Any]) -> float:
        for key in ("sequence_id", "sequence_start", "sequence_end"):
            if parameters.get(key) not in (None, 0, "", False):
                raise ProtocolError(f"parameter {key!r}: the model is stateless (no sequences)")
        default_s = self.sidecar.settings.serve.request_timeout_ms / 1000
        timeout = parameters.get("timeout")
        if timeout is None:
            return default_s
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise ProtocolError("parameter 'timeout' must be a whole number of microseconds")
        return min(default_s, timeout / 1e6) if timeout > 0 else default_s

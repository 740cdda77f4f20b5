"""The Open Inference Protocol over gRPC: KServe/Triton's ``grpc_service.proto``, served with
the stubs generated inside the ``tritonclient[grpc]`` wheel.

It runs on the sidecar's event loop (``grpc.aio``) next to the HTTP app, on
``serve.host:serve.grpc_port``, and holds the same :class:`~stream_infer.sidecar.core.Sidecar`:
the same serving set, the same tensor batcher (one batch may hold HTTP and gRPC requests), the
same statistics. RPCs: ``ServerLive``, ``ServerReady``, ``ModelReady``, ``ServerMetadata``,
``ModelMetadata``, ``ModelConfig``, ``ModelStatistics``, ``ModelInfer`` and the repository's
``RepositoryIndex``, ``RepositoryModelLoad``, ``RepositoryModelUnload`` (guarded by the HTTP
API's bearer token, sent as the ``authorization`` metadata); the others answer UNIMPLEMENTED.

Inputs come as ``raw_input_contents`` (what tritonclient sends) or typed ``contents``; outputs
go back as ``raw_output_contents``. Refusals are status codes: INVALID_ARGUMENT (bad input),
NOT_FOUND (unknown model or version), UNAVAILABLE (not ready, overloaded; ``retry-after``
trailing metadata), DEADLINE_EXCEEDED (not scored in time), UNAUTHENTICATED /
PERMISSION_DENIED (repository token).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import json_format
from pydantic import ValidationError
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from stream_infer.errors import FatalError, StreamInferError
from stream_infer.sidecar.binary import problems_of
from stream_infer.sidecar.datatypes import check_datatype, from_bytes, from_json
from stream_infer.sidecar.inference import OpenInference
from stream_infer.sidecar.protocol import (
    GRPC_CODES,
    InferAnswer,
    InferCall,
    InputTensor,
    ProtocolError,
)
from stream_infer.sidecar.protocol_http import RETRY_AFTER_S
from stream_infer.sidecar.repository import (
    LoadParameters,
    Repository,
    RepositoryError,
    UnloadParameters,
)
from stream_infer.sidecar.repository_api import token_problem

if TYPE_CHECKING:
    from stream_infer.sidecar.core import Sidecar

log = logging.getLogger(__name__)
API = "grpc"
Context = grpc.aio.ServicerContext[Any, Any]
T = TypeVar("T")
#: Where a typed (non-raw) input's elements are, by datatype (FP16/BF16 have none: raw only).
CONTENTS = {
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}


def _parameter(value: Any) -> Any:
    """An ``InferParameter`` / ``ModelRepositoryParameter`` as a plain value."""
    which = value.WhichOneof("parameter_choice")
    return None if which is None else getattr(value, which)


def decode_infer(request: Any) -> InferCall:
    """A ``ModelInferRequest`` as the protocol's call.

    Raises:
        ProtocolError: 400 for data that does not fit its datatype or shape, raw contents
            not one per input, or an output asking for classification.
    """
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs (one per input)"
        )
    inputs = []
    for i, t in enumerate(request.inputs):
        shape = tuple(t.shape)
        if raw:
            values = from_bytes(t.name, t.datatype, raw[i], shape)
        else:
            check_datatype(t.name, t.datatype)
            field = CONTENTS.get(t.datatype)
            if field is None:
                raise ProtocolError(f"input {t.name!r}: {t.datatype} data must be raw contents")
            values = from_json(t.name, t.datatype, list(getattr(t.contents, field)))
        inputs.append(InputTensor(t.name, t.datatype, shape, values))
    for o in request.outputs:
        if "class_count" in o.parameters and _parameter(o.parameters["class_count"]):
            raise ProtocolError(f"output {o.name!r}: the classification extension is not offered")
    parameters = {k: _parameter(v) for k, v in request.parameters.items()}
    outputs = [o.name for o in request.outputs] or None
    return InferCall(inputs, outputs, request.id or None, parameters)


def encode_infer(answer: InferAnswer) -> Any:
    response = service_pb2.ModelInferResponse(
        model_name=answer.model_name, model_version=answer.model_version, id=answer.id or ""
    )
    for key, value in answer.parameters.items():
        response.parameters[key].string_param = str(value)
    for out in answer.outputs:
        tensor = response.outputs.add()
        tensor.name = out.name
        tensor.datatype = out.datatype
        tensor.shape.extend(out.shape)
        response.raw_output_contents.append(out.raw())
    return response


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """The protocol's RPCs over the sidecar's :class:`OpenInference` and repository."""

    def __init__(self, sidecar: Sidecar, oip: OpenInference, repository: Repository) -> None:
        self.sidecar = sidecar
        self.oip = oip
        self.repository = repository

    async def _answer(self, context: Context, call: Callable[[], Awaitable[T]]) -> T:
        """``call``'s result, or the refusal as a status code (the call is aborted)."""
        try:
            result = await call()
        except ProtocolError as exc:
            code = GRPC_CODES.get(exc.status, "UNKNOWN")
            self.sidecar.metrics.requests.labels(API, code).inc()
            if exc.retry_after or exc.status == 503:
                context.set_trailing_metadata((("retry-after", RETRY_AFTER_S),))
            await context.abort(grpc.StatusCode[code], str(exc))
        self.sidecar.metrics.requests.labels(API, "OK").inc()
        return result

    async def ServerLive(self, request: Any, context: Context) -> Any:
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: Context) -> Any:
        return service_pb2.ServerReadyResponse(ready=self.sidecar.serving)

    async def ModelReady(self, request: Any, context: Context) -> Any:
        ready = self.oip.ready(request.name, request.version or None)
        return service_pb2.ModelReadyResponse(ready=ready)

    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        meta = self.oip.server_metadata()
        return service_pb2.ServerMetadataResponse(
            name=meta["name"], version=meta["version"], extensions=meta["extensions"]
        )

    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            meta = self.oip.model_metadata(request.name, request.version or None)
            return json_format.ParseDict(meta, service_pb2.ModelMetadataResponse())

        return await self._answer(context, call)

    async def ModelConfig(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            config = self.oip.model_config(request.name, request.version or None)
            parsed = json_format.ParseDict(config, model_config_pb2.ModelConfig())
            return service_pb2.ModelConfigResponse(config=parsed)

        return await self._answer(context, call)

    async def ModelStatistics(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            stats = self.oip.statistics(request.name, request.version or None)
            return json_format.ParseDict(stats, service_pb2.ModelStatisticsResponse())

        return await self._answer(context, call)

    async def ModelInfer(self, request: Any, context: Context) -> Any:
        async def call() -> Any:
            version = request.model_version or None
            answer = await self.oip.infer(
                request.model_name, version, lambda: decode_infer(request)
            )
            return encode_infer(answer)

        return await self._answer(context, call)

    # -- the model repository (bearer token in the ``authorization`` metadata) ---------------

    def _authorize(self, context: Context) -> None:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() or ()}
        given = metadata.get("authorization")
        problem = token_problem(self.sidecar, given if isinstance(given, str) else None)
        if problem is not None:
            raise ProtocolError(problem[1], problem[0])

    async def _repository(self, context: Context, work: Callable[[], T]) -> T:
        async def call() -> T:
            self._authorize(context)
            try:
                return await asyncio.to_thread(work)
            except RepositoryError as exc:
                raise ProtocolError(str(exc), exc.status) from exc
            except ValidationError as exc:
                raise ProtocolError(f"invalid parameters: {problems_of(exc)}") from exc
            except StreamInferError as exc:
                raise ProtocolError(f"cannot read the registry: {exc}", 503) from exc

        return await self._answer(context, call)

    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        entries = await self._repository(context, lambda: self.repository.index(request.ready))
        response = service_pb2.RepositoryIndexResponse()
        for e in entries:
            response.models.add(
                name=e["name"], version=e["version"], state=e["state"], reason=e["reason"]
            )
        return response

    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        def load() -> object:
            params = {k: _parameter(v) for k, v in request.parameters.items()}
            return self.repository.load(request.model_name, LoadParameters.model_validate(params))

        await self._repository(context, load)
        return service_pb2.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        def unload() -> object:
            params = {k: _parameter(v) for k, v in request.parameters.items()}
            parsed = UnloadParameters.model_validate(params)
            return self.repository.unload(request.model_name, parsed)

        await self._repository(context, unload)
        return service_pb2.RepositoryModelUnloadResponse()


async def start_grpc(
    sidecar: Sidecar, oip: OpenInference, repository: Repository, *, reuse_port: bool = False
) -> Any:
    """Start the gRPC server on the running loop; returns it (``await server.stop(grace)``).
    ``reuse_port``: share the port with other processes (``serve --workers``); otherwise a
    port another process holds fails the start-up.

    Raises:
        FatalError: ``serve.host:serve.grpc_port`` cannot be bound.
    """
    serve = sidecar.settings.serve
    limit = serve.max_body_bytes
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", int(reuse_port))]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(sidecar, oip, repository), server
    )
    address = f"{serve.host}:{serve.grpc_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise FatalError(f"cannot listen for gRPC on {address}: {exc}") from exc
    if bound == 0:
        raise FatalError(f"cannot listen for gRPC on {address}")
    await server.start()
    log.info("Open Inference Protocol over gRPC on %s", address)
    return server

"""The HTTP infer body: JSON, or JSON followed by binary tensor data (Triton's binary tensor
data extension, which ``tritonclient.http`` uses by default).

Request: with an ``Inference-Header-Content-Length: N`` header, the first N bytes are the JSON
request and the rest is the inputs' data, back to back in input order; an input carried there
says how many bytes are its own in ``parameters.binary_data_size`` (and has no ``data``). A
body compressed with ``Content-Encoding: gzip`` or ``deflate`` (tritonclient's
``request_compression_algorithm``) is inflated first, to at most ``serve.max_body_bytes``.

Response: an output is sent binary when its ``parameters.binary_data`` is true, or, where an
output does not say, when the request's ``parameters.binary_data_output`` is true (Triton's
rule; tritonclient asks for every output in binary when it names none). Then the answer is the
JSON header (each binary output's ``parameters.binary_data_size``, no ``data``) followed by the
outputs' bytes, with ``Inference-Header-Content-Length`` set to the header's length.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson
from pydantic import ValidationError

from stream_infer.sidecar.datatypes import from_bytes, from_json
from stream_infer.sidecar.protocol import InferAnswer, InferCall, InputTensor, ProtocolError
from stream_infer.sidecar.schemas import InferRequest

HEADER_LENGTH = "Inference-Header-Content-Length"
#: zlib ``wbits`` per Content-Encoding: gzip framing, and zlib framing (HTTP's "deflate").
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def problems_of(exc: ValidationError) -> str:
    """A validation error as one line: ``where: what; ...``."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())


def inflate(body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """``body`` decoded from its Content-Encoding.

    Raises:
        ProtocolError: 400 for an encoding other than gzip / deflate / identity or a corrupt
            stream; 413 when it inflates past ``max_bytes``.
    """
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    wbits = _WBITS.get(encoding)
    if wbits is None:
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported (gzip, deflate)")
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ProtocolError(f"the {encoding} body is corrupt: {exc}") from exc
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise ProtocolError(f"request body inflates past {max_bytes} bytes", 413)
    return out


def _flag(where: str, parameters: dict[str, Any] | None, key: str) -> bool | None:
    value = (parameters or {}).get(key)
    if value is not None and not isinstance(value, bool):
        raise ProtocolError(f"{where}parameters.{key} must be true or false")
    return value


def decode_request(body: bytes, header_length: str | None) -> tuple[InferRequest, InferCall]:
    """The request, and the call it makes (every input's elements decoded).

    Raises:
        ProtocolError: 400 naming what is wrong: the header length, the JSON, an input's data
            (its datatype, its size against its shape), binary data no input claims, or an
            output parameter (the classification extension is not offered).
    """
    binary = memoryview(b"")
    if header_length is not None:
        digits = header_length.strip()
        if not (digits.isascii() and digits.isdigit()) or int(digits) > len(body):
            raise ProtocolError(
                f"{HEADER_LENGTH} {header_length!r} is not a length within the {len(body)}-byte"
                " body"
            )
        split = int(digits)
        binary, body = memoryview(body)[split:], body[:split]
    try:
        request = InferRequest.model_validate_json(body)
    except ValidationError as exc:
        raise ProtocolError(f"invalid inference request: {problems_of(exc)}") from exc
    inputs: list[InputTensor] = []
    offset = 0
    for t in request.inputs:
        size = (t.parameters or {}).get("binary_data_size")
        if size is None:
            if t.data is None:
                raise ProtocolError(
                    f"input {t.name!r} has no data (give data, or parameters.binary_data_size "
                    f"with {HEADER_LENGTH})"
                )
            values = from_json(t.name, t.datatype, t.data)
        else:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ProtocolError(f"input {t.name!r}: binary_data_size must be a byte count")
            if t.data is not None:
                raise ProtocolError(f"input {t.name!r} has both data and binary_data_size")
            raw = binary[offset : offset + size]
            if len(raw) != size:
                raise ProtocolError(
                    f"input {t.name!r}: binary data ends {size - len(raw)} bytes short"
                )
            offset += size
            values = from_bytes(t.name, t.datatype, bytes(raw), t.shape)
        inputs.append(InputTensor(t.name, t.datatype, tuple(t.shape), values))
    if offset != len(binary):
        raise ProtocolError(f"{len(binary) - offset} bytes of binary data belong to no input")
    _flag("", request.parameters, "binary_data_output")
    for o in request.outputs or []:
        _flag(f"output {o.name!r}: ", o.parameters, "binary_data")
        if (o.parameters or {}).get("class_count") not in (None, 0):
            raise ProtocolError(f"output {o.name!r}: the classification extension is not offered")
    outputs = [o.name for o in request.outputs] if request.outputs else None
    return request, InferCall(inputs, outputs, request.id, dict(request.parameters or {}))


def encode_answer(answer: InferAnswer, request: InferRequest) -> tuple[bytes, dict[str, str]]:
    """The response body and its headers (Content-Type, and the header length when any
    output is binary)."""
    default = bool(_flag("", request.parameters, "binary_data_output"))
    asked = {o.name: _flag("", o.parameters, "binary_data") for o in request.outputs or []}
    outputs: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in answer.outputs:
        wanted = asked.get(out.name)
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": out.shape}
        if default if wanted is None else wanted:
            raw = out.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = out.data.reshape(-1).tolist()
        outputs.append(entry)
    body: dict[str, Any] = {
        "model_name": answer.model_name,
        "model_version": answer.model_version,
    }
    if answer.id is not None:
        body["id"] = answer.id
    body["parameters"] = answer.parameters
    body["outputs"] = outputs
    header = orjson.dumps(body)
    if not blobs:
        return header, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
    return header + b"".join(blobs), headers

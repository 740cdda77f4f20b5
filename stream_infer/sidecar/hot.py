"""The two scoring routes served without FastAPI's request machinery.

``POST /v1/models/{name}/predict`` and ``POST /v2/models/{name}[/versions/{v}]/infer`` are
what callers send thousands of times a second; everything FastAPI does for them (its
middleware, dependency solving, the body parsed into Python objects and validated again,
the answer validated against its response model and re-encoded) cost as much as scoring the
request (profiled with py-spy under wrk; see ``bench.sidecar``). :class:`HotPaths`, called
first by the app (:class:`~stream_infer.sidecar.app.SidecarApp`), answers them itself: it
reads the body (bounded by ``serve.max_body_bytes``, 413 beyond), hands the bytes to the
route's handler (which validates with pydantic straight from JSON and answers orjson bytes)
and sends the answer.
Every other request goes on to FastAPI. The FastAPI routes for these two paths stay
registered with the same handlers, so the OpenAPI document describes them and both ways
answer the same.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = "application/json"


@dataclass(slots=True)
class Answer:
    """A route's answer, for either way of sending it."""

    status: int
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)
    media_type: str = _JSON

    @classmethod
    def json(cls, status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
        return cls(status, orjson.dumps(body), headers or {})

    def response(self) -> Response:
        """As a Starlette response (for the FastAPI routes)."""
        return Response(self.content, self.status, self.headers, self.media_type)

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        out = [
            (b"content-type", self.media_type.encode()),
            (b"content-length", str(len(self.content)).encode()),
        ]
        out.extend((k.lower().encode(), v.encode()) for k, v in self.headers.items())
        return out


#: A hot route: (model name, version or None, body, request headers by lower-case name).
Handler = Callable[[str, str | None, bytes, Mapping[str, str]], Awaitable[Answer]]


def route_of(path: str) -> tuple[str, str, str | None] | None:
    """``("predict" | "infer", name, version)`` for a hot path, else None."""
    parts = path.split("/")
    n = len(parts)
    if n < 5 or parts[0] or parts[2] != "models" or not parts[3]:
        return None
    if n == 5 and parts[1] == "v1" and parts[4] == "predict":
        return "predict", parts[3], None
    if parts[1] != "v2":
        return None
    if n == 5 and parts[4] == "infer":
        return "infer", parts[3], None
    if n == 7 and parts[4] == "versions" and parts[5] and parts[6] == "infer":
        return "infer", parts[3], parts[5]
    return None


class _Disconnected(Exception):
    pass


class _TooLarge(Exception):
    pass


class HotPaths:
    """Answers the hot routes with ``handlers`` (by route kind); see :meth:`handle`."""

    def __init__(self, handlers: Mapping[str, Handler], max_bytes: int) -> None:
        self.handlers = dict(handlers)
        self.max_bytes = max_bytes
        self.too_large = Answer.json(413, {"error": f"request body larger than {max_bytes} bytes"})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer ``scope`` if it is a hot route (True), else leave it alone (False)."""
        if scope["type"] != "http" or scope["method"] != "POST":
            return False
        route = route_of(scope["path"])
        handler = self.handlers.get(route[0]) if route is not None else None
        if route is None or handler is None:
            return False
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            body = await self._body(headers.get("content-length"), receive)
        except _TooLarge:
            await self._send(send, self.too_large)
            return True
        except _Disconnected:
            return True
        try:
            answer = await handler(route[1], route[2], body, headers)
        except Exception:  # a bug: answer 500 in the protocol's shape, and say what it was
            log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            answer = Answer.json(500, {"error": "internal server error"})
        await self._send(send, answer)
        return True

    async def _body(self, declared: str | None, receive: Receive) -> bytes:
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise _TooLarge
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _TooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    @staticmethod
    async def _send(send: Send, answer: Answer) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": answer.raw_headers(),
            }
        )
        await send({"type": "http.response.body", "body": answer.content})

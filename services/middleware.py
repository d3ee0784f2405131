"""Small ASGI middlewares: request id, access log and HTTP metrics."""

from __future__ import annotations

import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.logging import request_id_var
from services.metrics import HTTP_LATENCY, HTTP_REQUESTS

logger = logging.getLogger("access")

REQUEST_ID_HEADER = b"x-request-id"
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


class RequestContextMiddleware:
    """Gives every request an id (kept from ``X-Request-Id`` when the client sent one),
    echoes it back, logs one line per request and counts it."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                route = _route_of(scope)
                HTTP_LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            route = _route_of(scope)
            HTTP_REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            if scope["path"] not in _QUIET_PATHS:
                logger.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={"status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2)},
                )
            request_id_var.reset(token)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == REQUEST_ID_HEADER:
            text = value.decode("latin-1").strip()
            return text[:128] if text else None
    return None


def _route_of(scope: Scope) -> str:
    """The route template (``/v1/documents/{id}``), so label values stay bounded."""
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"

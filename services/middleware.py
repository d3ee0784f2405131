"""Small ASGI middlewares: request id, access log and HTTP metrics."""

from __future__ import annotations

import json
import logging
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.errors import ClientDisconnected, InternalServerError
from services.logging import request_id_var
from services.metrics import HTTP_LATENCY, HTTP_REQUESTS
from services.tracing import server_span, set_status_code

logger = logging.getLogger("access")

REQUEST_ID_HEADER = b"x-request-id"
_QUIET_PATHS = frozenset({"/health", "/ready", "/metrics"})


class RequestContextMiddleware:
    """Gives every request an id (kept from ``X-Request-Id`` when the client sent one),
    echoes it back, logs one line per request and counts it.

    It is also the last stop for errors no handler took: their traceback is logged once, here,
    and the client gets a 500 in the OpenAI shape (nothing is re-raised to the server, which
    would log it a second time). A client that went away (:class:`ClientDisconnected`) is
    counted as status 499 and gets no answer."""

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

        started_response = [False]

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                started_response[0] = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id.encode())]
                route = _route_of(scope)
                HTTP_LATENCY.labels(self.service, scope["method"], route).observe(time.perf_counter() - started)
            await send(message)

        try:
            with server_span(
                f"{scope['method']} {scope['path']}",
                scope.get("headers", []),
                {"http.request.method": scope["method"], "url.path": scope["path"], "request_id": request_id},
            ) as span:
                await self.app(scope, receive, send_with_id)
                set_status_code(span, status)
        except ClientDisconnected:
            status = 499
        except Exception:
            logger.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if not started_response[0]:
                await _send_internal_error(send_with_id)
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


async def _send_internal_error(send: Send) -> None:
    body = json.dumps(InternalServerError("The server had an error while processing your request.").to_dict()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body})

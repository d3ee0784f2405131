"""The internal secret between the gateway and the services behind it.

Inbound (moderation, retrieval, feedback): :class:`InternalTokenMiddleware` answers 401
to any API call without ``Authorization: Bearer <internal token>``; ``/health``,
``/ready`` and ``/metrics`` stay open for probes and Prometheus.

Outbound (the gateway): :class:`InternalAuth` adds the token to requests for the
internal services' origins only, never to other hosts.
"""

from __future__ import annotations

import secrets
from collections.abc import Generator, Iterable
from urllib.parse import urlsplit

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from services.errors import AuthenticationError, error_response

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})


def bearer_token(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None


class InternalTokenMiddleware:
    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope)
        if token is None or not secrets.compare_digest(token, self.token):
            error = AuthenticationError(
                "This service answers only the gateway (internal token missing or wrong).",
                code="invalid_internal_token",
            )
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class InternalAuth(httpx.Auth):
    """httpx auth: the internal token on requests to ``origins`` that carry no Authorization."""

    def __init__(self, token: str, origins: Iterable[str]) -> None:
        self._header = f"Bearer {token}"
        self._origins = frozenset(origin(o) for o in origins)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if "authorization" not in request.headers and origin(str(request.url)) in self._origins:
            request.headers["Authorization"] = self._header
        yield request

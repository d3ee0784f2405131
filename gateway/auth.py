"""Bearer-key authentication for the API routes, as a small ASGI middleware."""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from services.errors import AuthenticationError, error_response

PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/metrics", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, api_keys: list[str]) -> None:
        self.app = app
        self.api_keys = [key.encode() for key in api_keys]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.api_keys or _is_public(scope["path"]) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        key = _bearer_key(scope)
        if key is None:
            error = AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        elif not any(secrets.compare_digest(key, known) for known in self.api_keys):
            error = AuthenticationError("Incorrect API key provided.", code="invalid_api_key")
        else:
            await self.app(scope, receive, send)
            return
        await error_response(error)(scope, receive, send)


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _bearer_key(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
    return None

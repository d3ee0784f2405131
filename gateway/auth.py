"""Who may call the gateway, and how much: one small ASGI middleware.

    /, /static/*, /health, /ready        open
    /metrics                             open, or ``Bearer <metrics_key>`` when set
    /admin/*                             ``Bearer <master_key>`` (404 when no master key is set)
    everything else                      a static or virtual key (401 otherwise)

Every ``/v1`` request gets a :class:`~gateway.limits.Ticket` in ``scope["state"]``.
Generation routes admit it themselves once they know the tokens to reserve; other
``/v1`` routes are admitted here (one request, no tokens). The ticket's
``x-ratelimit-*`` headers go on the answer, 429s included, and the ticket is settled
when the answer is over (streams: when the stream ends or the client leaves).
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.keys.resolver import KeyResolver
from gateway.limits.limiter import RateLimiter
from gateway.limits.ticket import Ticket
from services.errors import AuthenticationError, NotFoundError, OpenAIError, error_response
from services.internal_auth import bearer_token

PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)
GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
TICKET = "ticket"
PRINCIPAL = "principal"


class GatewayAuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        keys: KeyResolver,
        limiter: RateLimiter | None = None,
        master_key: str | None = None,
        metrics_key: str | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.limiter = limiter
        self.master_key = master_key.encode() if master_key else None
        self.metrics_key = metrics_key.encode() if metrics_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or _is_public(path) or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        try:
            if path == "/metrics":
                if self.metrics_key is not None:
                    _require(bearer_token(scope), self.metrics_key, "metrics")
            elif path.startswith("/admin/") or path == "/admin":
                if self.master_key is None:
                    raise NotFoundError("The admin API is disabled (no master key is set).", code="admin_disabled")
                _require(bearer_token(scope), self.master_key, "master")
            else:
                await self._call_api(scope, receive, send)
                return
        except OpenAIError as error:
            await error_response(error)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _call_api(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = await self.keys.authenticate(bearer_token(scope))
        ticket = Ticket(principal, self.limiter)
        state = scope.setdefault("state", {})
        state[PRINCIPAL] = principal
        state[TICKET] = ticket

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *ticket.headers()]
            await send(message)

        try:
            if scope["path"] not in GENERATION_PATHS:
                try:
                    await ticket.admit()
                except OpenAIError as error:
                    await error_response(error)(scope, receive, send_with_limits)
                    return
            await self.app(scope, receive, send_with_limits)
        finally:
            ticket.finish()


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _require(token: bytes | None, expected: bytes, what: str) -> None:
    if token is None or not secrets.compare_digest(token, expected):
        raise AuthenticationError(f"This endpoint needs the {what} key.", code="invalid_api_key")

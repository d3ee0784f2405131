"""The FastAPI app every service starts from."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI
from pydantic import SecretStr
from starlette.middleware import Middleware

from services.errors import install_error_handlers
from services.health import ReadinessCheck
from services.health import router as health_router
from services.internal_auth import InternalTokenMiddleware
from services.middleware import RequestContextMiddleware


def create_service_app(
    service: str,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    version: str = "0.1.0",
    internal_token: SecretStr | None = None,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """An app with OpenAI error JSON, request ids, access logs, metrics and health routes.

    ``internal_token``: the API answers only callers that send it (the gateway).
    ``middleware``: run inside the request-id/access-log middleware, so what they answer
    (a 401, a 429) is logged and carries ``x-request-id`` like any answer."""
    app = FastAPI(title=f"openchatkit {service}", version=version, lifespan=lifespan)
    app.state.service_name = service
    app.state.readiness_checks = dict(readiness_checks or {})
    install_error_handlers(app)
    for item in reversed(middleware):
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    if internal_token is not None:
        app.add_middleware(InternalTokenMiddleware, token=internal_token.get_secret_value())
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router)
    return app


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    Call it once the big, long-lived things are loaded (models, tokenizers: importing
    transformers brings torch and triton, ~560k objects). Python's full collections scan
    every tracked object; in the gateway one took 280 ms, a pause every request in flight
    waits out. Frozen objects are never scanned, so full collections cost what the
    requests' own objects cost (microseconds). Calling it again freezes what came since."""
    gc.freeze()

"""The FastAPI app every service starts from."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI

from services.errors import install_error_handlers
from services.health import ReadinessCheck
from services.health import router as health_router
from services.middleware import RequestContextMiddleware


def create_service_app(
    service: str,
    *,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[Any]] | None = None,
    readiness_checks: Mapping[str, ReadinessCheck] | None = None,
    version: str = "0.1.0",
) -> FastAPI:
    """An app with OpenAI error JSON, request ids, access logs, metrics and health routes."""
    app = FastAPI(title=f"openchatkit {service}", version=version, lifespan=lifespan)
    app.state.service_name = service
    app.state.readiness_checks = dict(readiness_checks or {})
    install_error_handlers(app)
    app.add_middleware(RequestContextMiddleware, service=service)
    app.include_router(health_router)
    return app

"""The gateway app: ``build_app()`` wires settings, the shared HTTP client and services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from gateway.auth import APIKeyMiddleware
from gateway.chat import ChatCompletionService
from gateway.collections_routes import router as collections_router
from gateway.completions import CompletionService
from gateway.config import GatewaySettings
from gateway.document_routes import router as document_router
from gateway.feedback_routes import router as feedback_router
from gateway.hooks import build_hooks, close_hooks
from gateway.models import ModelRegistry
from gateway.moderation_routes import router as moderation_router
from gateway.routes import router
from gateway.upstream import UpstreamClient
from gateway.web_routes import router as web_router
from gateway.web_routes import static_files
from services.app import create_service_app
from services.http import build_aiohttp_session, build_http_client


def build_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = build_http_client(timeout=settings.request_timeout_s)
        registry = ModelRegistry(http, settings.upstreams, settings.model_refresh_s)
        session = build_aiohttp_session(timeout=settings.request_timeout_s)
        upstream = UpstreamClient(session)
        app.state.settings = settings
        app.state.http = http
        app.state.registry = registry
        app.state.chat = ChatCompletionService(settings, registry, upstream, build_hooks(settings, http))
        app.state.completions = CompletionService(registry, upstream, settings)
        refresher = asyncio.create_task(registry.keep_fresh())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await close_hooks(app.state.chat.hooks)
            await http.aclose()
            await session.close()

    async def chat_model_ready() -> bool:
        registry: ModelRegistry = app.state.registry
        await registry.refresh_if_stale(0.0 if not registry.ready else 5.0)
        return registry.ready

    app = create_service_app("gateway", lifespan=lifespan, readiness_checks={"chat_model": chat_model_ready})
    app.include_router(router)
    app.include_router(web_router)
    app.mount("/static", static_files, name="static")
    app.include_router(feedback_router)
    app.include_router(document_router)
    app.include_router(moderation_router)
    app.include_router(collections_router)
    app.add_middleware(APIKeyMiddleware, api_keys=[k.get_secret_value() for k in settings.api_keys])
    return app

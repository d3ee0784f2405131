"""The gateway app: ``build_app()`` wires settings, the shared HTTP client and services."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware import Middleware

from feedback_server.config import sqlite_url
from gateway.adapter_aliases import AdapterAliases
from gateway.auth import GatewayAuthMiddleware
from gateway.chat import ChatCompletionService
from gateway.clients import GatewayClients
from gateway.collections_routes import router as collections_router
from gateway.completions import CompletionService
from gateway.config import GatewaySettings
from gateway.document_routes import router as document_router
from gateway.feedback_routes import router as feedback_router
from gateway.hooks import build_hooks, close_hooks, completion_hooks
from gateway.keys import KeyResolver, KeyStore
from gateway.keys.routes import router as admin_router
from gateway.limits import RateLimiter
from gateway.limits.ticket import drain_settlements
from gateway.moderation_routes import router as moderation_router
from gateway.registry import ModelRegistry
from gateway.replicas import ReplicaRouter
from gateway.routes import router
from gateway.upstream import UpstreamClient
from gateway.web_routes import router as web_router
from gateway.web_routes import static_files
from services.app import create_service_app, freeze_heap
from services.server import worker_app


def build_key_resolver(settings: GatewaySettings) -> KeyResolver:
    static = [k.get_secret_value() for k in settings.api_keys]
    auth_on = bool(static) or settings.master_key is not None
    url = settings.keys.database_url or sqlite_url(settings.data_dir)

    async def open_store() -> KeyStore:
        return await KeyStore.open(url, migrate=settings.keys.migrate_on_start)

    use_store = auth_on if settings.keys.enabled is None else settings.keys.enabled
    return KeyResolver(
        static, open_store if use_store else None, settings.keys.cache_ttl_s, settings.keys.last_used_interval_s
    )


def openapi_with_bodies(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's OpenAPI, with the ``$defs`` of bodies documented by hand (gateway.routes.body_schema)
    moved into ``components.schemas`` where their references point."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    content = operation.get("requestBody", {}).get("content", {})
                    components.update(content.get("application/json", {}).get("schema", {}).pop("$defs", {}))
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def build_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    keys = build_key_resolver(settings)
    limiter = RateLimiter(settings.limits)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        clients = GatewayClients.open(settings)
        http = clients.http
        routing = settings.routing.per_worker(settings.workers)
        registry = ModelRegistry(http, settings.upstreams, settings.model_refresh_s, routing)
        upstream = UpstreamClient(clients.session, ReplicaRouter(routing))
        registry.aliases = AdapterAliases.from_url(settings.limits.redis_url)
        app.state.settings = settings
        app.state.http = http
        app.state.registry = registry
        hooks = build_hooks(settings, http)
        app.state.chat = ChatCompletionService(settings, registry, upstream, hooks)
        app.state.completions = CompletionService(registry, upstream, settings, completion_hooks(hooks))
        background = [asyncio.create_task(registry.keep_fresh()), asyncio.create_task(registry.probe_forever())]
        freeze_heap()
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_hooks(app.state.chat.hooks)
            await drain_settlements()
            await limiter.aclose()
            await registry.aliases.aclose()
            await keys.aclose()
            await clients.aclose()

    async def chat_model_ready() -> bool:
        registry: ModelRegistry = app.state.registry
        await registry.refresh_if_stale(0.0 if not registry.ready else 5.0)
        return registry.ready

    auth = Middleware(
        GatewayAuthMiddleware,
        keys=keys,
        limiter=limiter,
        master_key=settings.master_key.get_secret_value() if settings.master_key else None,
        metrics_key=settings.metrics_key.get_secret_value() if settings.metrics_key else None,
    )
    app = create_service_app(
        "gateway", lifespan=lifespan, readiness_checks={"chat_model": chat_model_ready}, middleware=[auth]
    )
    app.state.keys = keys
    app.state.limiter = limiter
    app.include_router(router)
    app.include_router(web_router)
    app.mount("/static", static_files, name="static")
    app.include_router(feedback_router)
    app.include_router(document_router)
    app.include_router(moderation_router)
    app.include_router(collections_router)
    app.include_router(admin_router)
    app.openapi = openapi_with_bodies(app)  # type: ignore[method-assign]
    return app


def create_app() -> FastAPI:
    """The factory each uvicorn worker process calls (GATEWAY_WORKERS > 1)."""
    return worker_app("gateway", GatewaySettings(), build_app)

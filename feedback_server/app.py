"""The feedback API app: ``build_app()`` wires Redis, the store and the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from feedback_server.config import FeedbackSettings
from feedback_server.metrics import refresh_queue_gauges
from feedback_server.queue import FeedbackQueue, connect
from feedback_server.routes import router
from feedback_server.service import FeedbackService, StoreGate
from feedback_server.store import FeedbackStore
from services.app import create_service_app
from services.retry import retry_with_backoff
from services.server import worker_app

logger = logging.getLogger(__name__)


async def open_store_when_possible(settings: FeedbackSettings, gate: StoreGate) -> None:
    """Taking feedback needs only Redis; the store (for lookups and stats) may come later."""
    gate.store = await retry_with_backoff(
        lambda: FeedbackStore.open(settings.database_url, migrate=settings.migrate_on_start),
        retry_if=lambda exc: isinstance(exc, Exception),
        what="feedback store not available",
        first_delay_s=0.5,
        max_delay_s=30.0,
        log=logger,
    )


def build_app(settings: FeedbackSettings | None = None) -> FastAPI:
    settings = settings or FeedbackSettings()
    gate = StoreGate()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.access_log:
            logging.getLogger("access").setLevel(logging.WARNING)
        client = connect(settings.redis_url, settings.redis_timeout_s)
        queue = FeedbackQueue(client, settings.stream, settings.idempotency_ttl_s, settings.status_ttl_s)
        app.state.settings = settings
        app.state.queue = queue
        app.state.feedback = FeedbackService(
            queue, gate, settings.group, settings.dead_letters, settings.max_text_chars
        )
        opener = asyncio.create_task(open_store_when_possible(settings, gate))
        gauges = asyncio.create_task(refresh_queue_gauges(queue, settings.group, settings.dead_letters, 5.0))
        with contextlib.suppress(asyncio.TimeoutError):  # usually open before the first request
            await asyncio.wait_for(asyncio.shield(opener), timeout=10)
        try:
            yield
        finally:
            for task in (opener, gauges):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if gate.store is not None:
                await gate.store.close()
            await client.aclose()

    async def redis_ready() -> bool:
        return await app.state.queue.ping()

    async def store_ready() -> bool:
        return gate.store is not None and await gate.store.ping()

    app = create_service_app(
        "feedback",
        lifespan=lifespan,
        readiness_checks={"redis": redis_ready, "store": store_ready},
        internal_token=settings.internal_token,
    )
    app.include_router(router)
    return app


def create_app() -> FastAPI:
    """The factory each uvicorn worker process calls (FEEDBACK_WORKERS > 1)."""
    return worker_app("feedback", FeedbackSettings(), build_app)

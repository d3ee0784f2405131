"""The moderation service app: ``build_app()`` loads the backend in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from moderation_server.backends import build_backend
from moderation_server.config import ModerationSettings
from moderation_server.routes import router
from moderation_server.service import ModerationService
from moderation_server.training import ensure_artifact, is_current
from services.app import create_service_app, freeze_heap
from services.http import build_http_client

logger = logging.getLogger(__name__)


def build_app(settings: ModerationSettings | None = None) -> FastAPI:
    settings = settings or ModerationSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        http = build_http_client(timeout=settings.llm_timeout_s)
        if settings.backend == "classifier":
            await asyncio.to_thread(prepare_classifier, settings)
        backend = await build_backend(settings, http)
        app.state.settings = settings
        app.state.moderation = ModerationService(backend, settings)
        await asyncio.to_thread(app.state.moderation.languages.load)
        logger.info("moderation backend ready", extra={"backend": settings.backend, "model": backend.model})
        freeze_heap()
        try:
            yield
        finally:
            await backend.aclose()
            await http.aclose()

    async def backend_ready() -> bool:
        service: ModerationService | None = getattr(app.state, "moderation", None)
        return service is not None and await service.backend.ready()

    app = create_service_app(
        "moderation",
        lifespan=lifespan,
        readiness_checks={"backend": backend_ready},
        internal_token=settings.internal_token,
    )
    app.include_router(router)
    return app


def prepare_classifier(settings: ModerationSettings) -> None:
    """Use the trained artifact; train it first when it is missing (if allowed)."""
    directory = settings.classifier_dir()
    if is_current(directory):
        return
    if not settings.train_if_missing:
        if (directory / "manifest.json").exists():
            logger.warning(
                "the moderation classifier at %s is older than its training data; serving it anyway", directory
            )
            return
        raise RuntimeError(f"no trained moderation classifier at {directory}: run `openchatkit finetune moderation`")
    logger.info("training the moderation classifier (no current artifact at %s)", directory)
    ensure_artifact(directory)

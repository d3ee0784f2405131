"""Run a service app under uvicorn with our logging."""

from __future__ import annotations

from fastapi import FastAPI

from services.logging import configure_logging
from services.settings import ServiceSettings


def serve(app: FastAPI, settings: ServiceSettings, service: str) -> None:
    import uvicorn

    configure_logging(service, settings.log_level, settings.log_json)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )

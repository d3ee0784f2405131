"""Run a service app under uvicorn with our logging."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from fastapi import FastAPI

from services.logging import configure_logging
from services.metrics import MULTIPROCESS_DIR_ENV
from services.settings import ServiceSettings
from services.tracing import configure_tracing

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def run_service(
    service: str, settings: SettingsT, build_app: Callable[[SettingsT], FastAPI], factory: str, workers: int
) -> None:
    """``python -m <service>``: one process serving ``build_app(settings)``, or ``workers``
    uvicorn worker processes, each calling ``factory`` (the import path of a no-argument
    function that returns :func:`worker_app`)."""
    if workers == 1:
        serve(build_app(settings), settings, service)
    else:
        serve(factory, settings, service, workers=workers)


def worker_app(service: str, settings: SettingsT, build_app: Callable[[SettingsT], FastAPI]) -> FastAPI:
    """What a uvicorn worker process (a fresh interpreter) does first: our logging and
    tracing, as :func:`serve` sets them up for one process; then the app."""
    _observe_as(service, settings)
    return build_app(settings)


def _observe_as(service: str, settings: ServiceSettings) -> None:
    """This process's logs and traces, named for ``service``."""
    configure_logging(service, settings.log_level, settings.log_json)
    configure_tracing(service)


def serve(app: FastAPI | str, settings: ServiceSettings, service: str, *, workers: int = 1) -> None:
    """Serve ``app`` on ``settings.host``:``settings.port`` until SIGINT/SIGTERM (10 s to finish
    requests in flight), logging as ``service``.

    ``app`` is the app itself, or the import path of a factory that builds it
    (``"feedback_server.app:create_app"``), which ``workers`` > 1 needs: each uvicorn worker
    process calls the factory (and configures its own logging there). Several workers share
    one metrics directory (:func:`prepare_multiprocess_metrics`), so ``/metrics`` counts
    every worker's requests whichever one answers the scrape.
    """
    import uvicorn

    if workers > 1 and not isinstance(app, str):
        raise ValueError("several workers need the app as the import path of its factory")
    if workers > 1:
        prepare_multiprocess_metrics(service)
    _observe_as(service, settings)
    uvicorn.run(
        app,
        factory=isinstance(app, str),
        workers=workers if workers > 1 else None,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
    )


def prepare_multiprocess_metrics(service: str) -> Path:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at an empty directory before the workers start (they
    inherit it and import prometheus_client in multiprocess mode). A directory the operator set
    is emptied of an earlier run's samples; otherwise a fresh one under the temp dir is made."""
    configured = os.environ.get(MULTIPROCESS_DIR_ENV)
    if configured:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = Path(tempfile.mkdtemp(prefix=f"openchatkit-{service}-metrics-"))
        os.environ[MULTIPROCESS_DIR_ENV] = str(directory)
    return directory

"""``/health``, ``/ready`` and ``/metrics``, the same on every service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.metrics import metrics_endpoint

logger = logging.getLogger(__name__)

# A readiness check answers True when its dependency is usable.
ReadinessCheck = Callable[[], Awaitable[bool]]

router = APIRouter(include_in_schema=False)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    checks: dict[str, ReadinessCheck] = getattr(request.app.state, "readiness_checks", {})
    results = await asyncio.gather(*(_run_check(name, check) for name, check in checks.items()))
    status = dict(zip(checks, results, strict=True))
    ok = all(status.values())
    return JSONResponse({"ready": ok, "checks": status}, status_code=200 if ok else 503)


async def _run_check(name: str, check: ReadinessCheck) -> bool:
    try:
        return bool(await asyncio.wait_for(check(), timeout=5.0))
    except Exception as exc:  # a failing check means "not ready", never a 500
        logger.debug("readiness check %s failed: %s", name, exc)
        return False


router.add_api_route("/metrics", metrics_endpoint, methods=["GET"])

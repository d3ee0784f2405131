"""Prometheus metrics every service exports at ``/metrics``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

HTTP_REQUESTS = Counter(
    "openchatkit_http_requests_total", "HTTP requests handled.", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "openchatkit_http_request_duration_seconds",
    "Time to the response head (streams: to the first byte).",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

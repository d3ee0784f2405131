"""Prometheus metrics every service exports at ``/metrics``.

A service run as several worker processes (``serve(workers=N)``) has
``PROMETHEUS_MULTIPROC_DIR`` set before its workers start: each process writes its samples
there and ``/metrics``, whichever worker answers it, reports the sum over all of them
(prometheus_client's multiprocess mode; gauges declare how they combine with
``multiprocess_mode``)."""

from __future__ import annotations

import atexit
import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    generate_latest,
    multiprocess,
)
from prometheus_client.registry import Collector
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


MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

if os.environ.get(MULTIPROCESS_DIR_ENV):
    # A worker that exits takes its live gauges (in-flight, queue depths) with it.
    atexit.register(multiprocess.mark_process_dead, os.getpid())


class _AllWorkers(Collector):
    """Every worker's samples (from the multiprocess directory), plus -- without samples --
    the families no worker has written yet (a labelled counter nothing has counted), so a
    scrape lists the same metric names as a single process's would. Process metrics
    (``process_*``, ``python_gc_*``) are per process and not summed: listed without samples."""

    def __init__(self, directory: str) -> None:
        self._workers = multiprocess.MultiProcessCollector(None, directory)

    def collect(self) -> Iterable[Metric]:
        seen = set()
        for family in self._workers.collect():
            seen.add(family.name)
            yield family
        for family in REGISTRY.collect():
            if family.name not in seen:
                yield Metric(family.name, family.documentation, family.type, family.unit)


async def metrics_endpoint(_: Request) -> Response:
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if directory:
        registry = CollectorRegistry()
        registry.register(_AllWorkers(directory))
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

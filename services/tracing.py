"""OpenTelemetry tracing, on only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

Each service exports its spans over OTLP (HTTP/protobuf; ``OTEL_EXPORTER_OTLP_*`` as the
SDK reads them) under ``service.name`` = the service. A request gets a server span
(joined to the caller's trace through the W3C ``traceparent`` header) in
:class:`services.middleware.RequestContextMiddleware`; every outbound call gets a client
span and carries ``traceparent`` on (:func:`client_span`), so a chat turn reads as one
trace: gateway -> moderation -> retrieval -> vLLM (run with ``--otlp-traces-endpoint``).
Without the variable every function here is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, MutableMapping
from typing import Any

logger = logging.getLogger(__name__)

_tracer: Any = None


def configure_tracing(service: str) -> bool:
    """Install the OTLP exporter for this process; True when tracing is on."""
    global _tracer
    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") and not os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("openchatkit")
    logger.info("tracing to %s", os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))
    return True


def tracing_enabled() -> bool:
    return _tracer is not None


def shutdown_tracing() -> None:
    """Flush spans still batched (at the end of a lifespan)."""
    if _tracer is None:
        return
    from opentelemetry import trace

    provider = trace.get_tracer_provider()
    shutdown = getattr(provider, "shutdown", None)
    if shutdown is not None:
        shutdown()


@contextlib.contextmanager
def server_span(name: str, headers: list[tuple[bytes, bytes]], attributes: dict[str, Any]) -> Iterator[Any]:
    """A SERVER span for an incoming request, child of the caller's ``traceparent``."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import propagate, trace

    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in (b"traceparent", b"tracestate")}
    with _tracer.start_as_current_span(
        name, context=propagate.extract(carrier), kind=trace.SpanKind.SERVER, attributes=attributes
    ) as span:
        yield span


@contextlib.contextmanager
def client_span(name: str, headers: MutableMapping[str, str], attributes: dict[str, Any]) -> Iterator[Any]:
    """A CLIENT span for an outbound call; ``traceparent`` is added to ``headers``."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import propagate, trace

    with _tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
        propagate.inject(headers)
        yield span


def set_status_code(span: Any, status: int) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))

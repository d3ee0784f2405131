"""One ``httpx.AsyncClient`` per process, and the one place httpx errors become ours."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import httpx

from services.errors import ServiceUnavailableError, UpstreamError, UpstreamTimeoutError


def build_http_client(
    *,
    timeout: float = 600.0,
    connect_timeout: float = 5.0,
    max_connections: int = 512,
    base_url: str = "",
) -> httpx.AsyncClient:
    """The process-wide client, created in a service's lifespan and closed with it."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        trust_env=False,
    )


@contextlib.contextmanager
def map_httpx_errors(upstream: str) -> Iterator[None]:
    """Translate transport failures talking to ``upstream`` into OpenAI errors."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeoutError(f"{upstream} did not answer in time.", code="upstream_timeout") from exc
    except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
        raise ServiceUnavailableError(f"{upstream} is unavailable: {exc}.", code="upstream_unavailable") from exc
    except httpx.TransportError as exc:
        raise UpstreamError(f"{upstream} failed: {exc}.", code="upstream_error") from exc

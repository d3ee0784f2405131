"""Outbound HTTP for every service: one client per process, the request id on every call,
and the one place transport failures become our OpenAI errors.

The gateway's generation hot path uses one ``aiohttp.ClientSession`` instead: measured on
this 2-core machine it spends ~0.56 ms of CPU per upstream call against httpx's ~1.3 ms,
which is most of what the gateway adds to a request. Everything else uses httpx.

Errors are mapped at the transport, as httpx maps httpcore's: a call to a dependency
raises (never an httpx exception)

    httpx.TimeoutException                       -> UpstreamTimeoutError    504 upstream_timeout
    httpx.ConnectError, httpx.RemoteProtocolError -> ServiceUnavailableError 503 upstream_unavailable
    any other httpx.TransportError                -> UpstreamError           502 upstream_error

naming the dependency (``names``: base URL -> "the retrieval service") in the message; the
address and the library's error go to the log only. Calls to origins not in ``names`` (a
retrieval source on the web) keep httpx's own errors for their caller to judge.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator, Mapping

import aiohttp
import httpx

from services.errors import ServiceUnavailableError, UpstreamError, UpstreamTimeoutError
from services.logging import request_id_var
from services.tracing import client_span, set_status_code

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` in lower case (the key of ``names``)."""
    parsed = httpx.URL(str(url))
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}".lower()


def outbound_headers(headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """``headers`` plus this request's id (the id of the request being served)."""
    out = dict(headers or {})
    request_id = request_id_var.get()
    if request_id and REQUEST_ID_HEADER not in out and REQUEST_ID_HEADER.lower() not in out:
        out[REQUEST_ID_HEADER] = request_id
    return out


async def _add_request_id(request: httpx.Request) -> None:
    request_id = request_id_var.get()
    if request_id and REQUEST_ID_HEADER not in request.headers:
        request.headers[REQUEST_ID_HEADER] = request_id


class _MappedStream(httpx.AsyncByteStream):
    """A response body whose read failures are mapped like the request's."""

    def __init__(self, stream: httpx.AsyncByteStream, name: str) -> None:
        self._stream = stream
        self._name = name

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with map_httpx_errors(self._name):
            async for chunk in self._stream:
                yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class ErrorMappingTransport(httpx.AsyncBaseTransport):
    """httpx's transport, raising our errors (see the module docstring)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport,
        names: Mapping[str, str] | None = None,
        default_name: str | None = None,
    ) -> None:
        self._transport = transport
        self._names = {origin_of(url): name for url, name in (names or {}).items()}
        self._default = default_name

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        name = self._names.get(origin_of(request.url), self._default)
        attributes = {"http.request.method": request.method, "url.full": str(request.url.copy_with(query=None))}
        with client_span(f"{request.method} {name or request.url.host}", request.headers, attributes) as span:
            if name is None:
                response = await self._transport.handle_async_request(request)
                set_status_code(span, response.status_code)
                return response
            with map_httpx_errors(name):
                response = await self._transport.handle_async_request(request)
            set_status_code(span, response.status_code)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _MappedStream(response.stream, name)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


def build_http_client(
    *,
    timeout: float = 600.0,
    connect_timeout: float = 5.0,
    max_connections: int = 512,
    base_url: str = "",
    names: Mapping[str, str] | None = None,
    default_name: str | None = None,
    auth: httpx.Auth | None = None,
) -> httpx.AsyncClient:
    """The process-wide client, created in a service's lifespan and closed with it.

    Every request it sends carries ``X-Request-Id`` (the id of the request being served,
    unless the caller set one) and fails only with our errors; ``names`` maps a
    dependency's base URL to how errors name it (``default_name``: any other origin, else
    those keep httpx's errors); ``auth`` (e.g. the internal token) is
    applied to every request."""
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    transport = ErrorMappingTransport(httpx.AsyncHTTPTransport(limits=limits, trust_env=False), names, default_name)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        transport=transport,
        auth=auth,
        event_hooks={"request": [_add_request_id]},
        trust_env=False,
    )


ErrorTypes = tuple[type[BaseException], ...]


@contextlib.contextmanager
def _map_transport_errors(
    upstream: str, timed_out: ErrorTypes, unavailable: ErrorTypes, failed: ErrorTypes
) -> Iterator[None]:
    """A client library's transport errors as ours: 504 ``upstream_timeout``, 503
    ``upstream_unavailable`` (could not connect, or the connection dropped), 502 ``upstream_error``."""
    try:
        yield
    except timed_out as exc:
        raise UpstreamTimeoutError(f"{_capital(upstream)} did not answer in time.", code="upstream_timeout") from exc
    except unavailable as exc:
        logger.warning("%s is unavailable: %r", upstream, exc)
        raise ServiceUnavailableError(f"{_capital(upstream)} is unavailable.", code="upstream_unavailable") from exc
    except failed as exc:
        logger.warning("%s failed: %r", upstream, exc)
        raise UpstreamError(f"{_capital(upstream)} failed.", code="upstream_error") from exc


def map_httpx_errors(upstream: str) -> contextlib.AbstractContextManager[None]:
    """Translate httpx's transport failures talking to ``upstream`` into OpenAI errors."""
    return _map_transport_errors(
        upstream, (httpx.TimeoutException,), (httpx.ConnectError, httpx.RemoteProtocolError), (httpx.TransportError,)
    )


def build_aiohttp_session(
    *, timeout: float = 600.0, connect_timeout: float = 5.0, max_connections: int = 512
) -> aiohttp.ClientSession:
    """The gateway's session for generation calls, created in its lifespan. Its callers set
    the request id with :func:`outbound_headers` and map errors with :func:`map_aiohttp_errors`."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=timeout),
        # Idle connections are dropped before uvicorn's (vLLM's) 5 s keep-alive closes them under us.
        connector=aiohttp.TCPConnector(
            limit=max_connections, limit_per_host=max_connections, ttl_dns_cache=300, keepalive_timeout=4.0
        ),
        auto_decompress=False,
        read_bufsize=2**20,  # one SSE event per line; logprobs make long lines
        trust_env=False,
    )


def map_aiohttp_errors(upstream: str) -> contextlib.AbstractContextManager[None]:
    """The aiohttp twin of :func:`map_httpx_errors` (aiohttp's timeouts are TimeoutErrors)."""
    return _map_transport_errors(
        upstream,
        (TimeoutError,),
        (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError),
        (aiohttp.ClientError,),
    )


def _capital(text: str) -> str:
    """Client messages name the dependency only; addresses and library errors go to the log."""
    return text[:1].upper() + text[1:]

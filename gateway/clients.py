"""Every outbound call the gateway makes goes through the clients built here.

- ``http`` (httpx, from :func:`services.http.build_http_client`): moderation, retrieval,
  feedback, token counting and model listing. It sets ``X-Request-Id`` on every call, adds
  the internal token for the internal services, and raises our OpenAI errors for transport
  failures, naming the dependency ("The retrieval service is unavailable.", 503).
- ``session`` (aiohttp): generation, through :class:`gateway.upstream.UpstreamClient`.
- :func:`relay`: the one proxy helper behind ``/v1/documents``, ``/v1/search``,
  ``/v1/collections``, ``/v1/feedback`` and ``/v1/moderations``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import aiohttp
import httpx
from fastapi import Request
from fastapi.responses import Response

from gateway.config import GatewaySettings
from services.errors import from_upstream_body
from services.http import build_aiohttp_session, build_http_client
from services.internal_auth import InternalAuth

CHAT_MODEL = "the chat model"


def dependency_names(settings: GatewaySettings) -> dict[str, str]:
    """Base URL -> how errors name it. Later entries win where services share an origin."""
    names = {upstream.url: CHAT_MODEL for upstream in settings.upstreams}
    names[settings.feedback.service_url] = "the feedback service"
    names[settings.retrieval.url] = "the retrieval service"
    names[settings.moderation.url] = "the moderation service"
    return names


def internal_origins(settings: GatewaySettings) -> list[str]:
    """The services that get the internal token (never the chat model's upstreams)."""
    return [settings.moderation.url, settings.retrieval.url, settings.feedback.service_url]


def build_gateway_http(settings: GatewaySettings) -> httpx.AsyncClient:
    auth = None
    if settings.internal_token is not None:
        auth = InternalAuth(settings.internal_token.get_secret_value(), internal_origins(settings))
    # Other origins are chat-model replicas found through DNS (``discover: dns``).
    return build_http_client(
        timeout=settings.request_timeout_s, names=dependency_names(settings), default_name=CHAT_MODEL, auth=auth
    )


@dataclass
class GatewayClients:
    http: httpx.AsyncClient
    session: aiohttp.ClientSession

    @classmethod
    def open(cls, settings: GatewaySettings) -> GatewayClients:
        """Created in the lifespan (aiohttp wants a running loop)."""
        return cls(build_gateway_http(settings), build_aiohttp_session(timeout=settings.request_timeout_s))

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.session.close()


async def relay(
    request: Request,
    method: str,
    url: str,
    *,
    content: bytes | AsyncIterator[bytes] | None = None,
    forward_headers: Iterable[str] = (),
    headers: Mapping[str, str] | None = None,
    params: Iterable[str] = (),
    relay_headers: Iterable[str] = (),
    timeout_s: float | None = None,
) -> Response:
    """Send the caller's request on to an internal service and answer with what it said.

    ``forward_headers`` and ``params`` name what is copied from the caller's request;
    ``headers`` are added. A JSON answer under 500 is relayed with its status (and the
    ``relay_headers``); anything else becomes an OpenAI error with the service's status
    (502 when it answered 2xx with something that is not JSON)."""
    sent = {name: request.headers[name] for name in forward_headers if name in request.headers}
    sent.update(headers or {})
    query = {name: request.query_params[name] for name in params if name in request.query_params}
    answer = await request.app.state.http.request(
        method,
        url,
        params=query,
        content=content,
        headers=sent,
        timeout=timeout_s if timeout_s is not None else httpx.USE_CLIENT_DEFAULT,
    )
    if answer.headers.get("content-type", "").startswith("application/json") and answer.status_code < 500:
        kept = {name: answer.headers[name] for name in relay_headers if name in answer.headers}
        return Response(answer.content, status_code=answer.status_code, media_type="application/json", headers=kept)
    raise from_upstream_body(answer.status_code if answer.status_code >= 400 else 502, answer.content)

"""``POST /v1/moderations`` on the gateway, proxied to the moderation service, so OpenAI
clients (``client.moderations.create``) work against the gateway unchanged."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from gateway.clients import relay
from services.errors import NotImplementedFeatureError, PayloadTooLargeError
from services.requests import loads_json

router = APIRouter()


@router.post("/v1/moderations")
async def create_moderation(request: Request) -> Response:
    settings = request.app.state.settings
    body = await request.body()
    if len(body) > settings.max_request_bytes:
        raise PayloadTooLargeError(f"The request body is {len(body)} bytes; the limit is {settings.max_request_bytes}.")
    loads_json(body)  # malformed, too deep or invalid text: 400 here, forwarded as it came otherwise
    if not settings.moderation.enabled:
        raise NotImplementedFeatureError("Moderation is disabled on this gateway.", code="moderation_disabled")
    return await relay(
        request,
        "POST",
        settings.moderation.url.rstrip("/") + "/v1/moderations",
        content=body,
        headers={"content-type": request.headers.get("content-type", "application/json")},
        timeout_s=settings.moderation.timeout_s,
    )

"""``POST /v1/moderations`` on the gateway, proxied to the moderation service, so OpenAI
clients (``client.moderations.create``) work against the gateway unchanged."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.errors import NotImplementedFeatureError, PayloadTooLargeError, from_upstream_body
from services.http import map_httpx_errors
from services.logging import request_id_var
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
    headers = {"content-type": request.headers.get("content-type", "application/json")}
    request_id = request_id_var.get()
    if request_id:
        headers["x-request-id"] = request_id
    url = settings.moderation.url.rstrip("/") + "/v1/moderations"
    with map_httpx_errors("the moderation service"):
        answer = await request.app.state.http.post(
            url, content=body, headers=headers, timeout=settings.moderation.timeout_s
        )
    if answer.headers.get("content-type", "").startswith("application/json"):
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")
    raise from_upstream_body(answer.status_code if answer.status_code >= 400 else 502, answer.content)

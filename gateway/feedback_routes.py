"""``/v1/feedback`` on the gateway: proxied to the feedback service, with the caller's
Idempotency-Key and request id forwarded and its answer relayed as it came."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.errors import PayloadTooLargeError, from_upstream_body
from services.http import map_httpx_errors
from services.logging import request_id_var

router = APIRouter()

FORWARDED_REQUEST_HEADERS = ("content-type", "idempotency-key")
RELAYED_RESPONSE_HEADERS = ("idempotent-replayed",)


async def _proxy(request: Request, method: str, path: str, body: bytes | None = None) -> Response:
    settings = request.app.state.settings
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    request_id = request_id_var.get()
    if request_id:
        headers["x-request-id"] = request_id
    url = settings.feedback.service_url.rstrip("/") + path
    with map_httpx_errors("the feedback service"):
        answer = await request.app.state.http.request(method, url, content=body, headers=headers)
    if answer.headers.get("content-type", "").startswith("application/json"):
        relayed = {name: answer.headers[name] for name in RELAYED_RESPONSE_HEADERS if name in answer.headers}
        return Response(answer.content, status_code=answer.status_code, media_type="application/json", headers=relayed)
    raise from_upstream_body(answer.status_code if answer.status_code >= 400 else 502, answer.content)


@router.post("/v1/feedback")
async def create_feedback(request: Request) -> Response:
    body = await request.body()
    limit = request.app.state.settings.max_request_bytes
    if len(body) > limit:
        raise PayloadTooLargeError(f"The request body is {len(body)} bytes; the limit is {limit}.")
    return await _proxy(request, "POST", "/v1/feedback", body)


@router.get("/v1/feedback/stats")
async def feedback_stats(request: Request) -> Response:
    return await _proxy(request, "GET", "/v1/feedback/stats")


@router.get("/v1/feedback/{feedback_id}")
async def get_feedback(feedback_id: str, request: Request) -> Response:
    return await _proxy(request, "GET", f"/v1/feedback/{quote(feedback_id, safe='')}")

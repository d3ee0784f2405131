"""``/v1/feedback`` on the gateway: proxied to the feedback service, with the caller's
Idempotency-Key and request id forwarded and its answer relayed as it came.

Feedback belongs to the key that got the answer: the gateway recorded ``response id ->
key id`` in Redis when the answer went out (see gateway/limits/limiter.py), so feedback
on an unknown response, or on another key's, is a 404 (the same answer for both: ids
are not confirmed to strangers). The body is validated first (the feedback service's own
model, services/feedback_protocol.py), so a malformed report is a 400 whatever its id.
The key id (never the key) goes to the feedback service in ``X-OpenChatKit-Key-Id``; it
stores it and shows a report only to its poster.
"""

from __future__ import annotations

from urllib.parse import quote

import redis.asyncio as redis
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from gateway.admission import principal_of
from gateway.clients import relay
from services.errors import NotFoundError, PayloadTooLargeError, ServiceUnavailableError, describe_validation_errors
from services.feedback_protocol import FeedbackRequest

router = APIRouter()

FORWARDED_REQUEST_HEADERS = ("content-type", "idempotency-key")
RELAYED_RESPONSE_HEADERS = ("idempotent-replayed",)
KEY_ID_HEADER = "x-openchatkit-key-id"


def _validated(body: bytes) -> FeedbackRequest:
    """The body as the feedback service will read it; a 400 naming what is wrong, before
    the owner check, so a bad rating is a 400 whatever the response id."""
    try:
        return FeedbackRequest.model_validate_json(body)
    except ValidationError as exc:
        raise describe_validation_errors(exc.errors(include_url=False)) from None


async def _check_owner(request: Request, response_id: str) -> None:
    try:
        owned = await request.app.state.limiter.owns(principal_of(request).key_id, response_id)
    except (redis.RedisError, OSError) as exc:
        raise ServiceUnavailableError(
            "Feedback cannot be checked right now; try again shortly.", code="owner_lookup_unavailable"
        ) from exc
    if not owned:
        raise NotFoundError(
            f"No answer with id '{response_id[:128]}' was given to this API key.",
            param="response_id",
            code="response_not_found",
        )


async def _proxy(request: Request, method: str, path: str, body: bytes | None = None) -> Response:
    return await relay(
        request,
        method,
        request.app.state.settings.feedback.service_url.rstrip("/") + path,
        content=body,
        forward_headers=FORWARDED_REQUEST_HEADERS,
        headers={KEY_ID_HEADER: principal_of(request).key_id},
        relay_headers=RELAYED_RESPONSE_HEADERS,
    )


@router.post("/v1/feedback")
async def create_feedback(request: Request) -> Response:
    body = await request.body()
    limit = request.app.state.settings.max_request_bytes
    if len(body) > limit:
        raise PayloadTooLargeError(f"The request body is {len(body)} bytes; the limit is {limit}.")
    await _check_owner(request, _validated(body).response_id)
    return await _proxy(request, "POST", "/v1/feedback", body)


@router.get("/v1/feedback/stats")
async def feedback_stats(request: Request) -> Response:
    return await _proxy(request, "GET", "/v1/feedback/stats")


@router.get("/v1/feedback/{feedback_id}")
async def get_feedback(feedback_id: str, request: Request) -> Response:
    return await _proxy(request, "GET", f"/v1/feedback/{quote(feedback_id, safe='')}")

"""Thin routes: parse, call the service on app.state, answer."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request

from moderation_server.config import ModerationSettings
from moderation_server.protocol import ClassifyRequest, ModerationRequest
from moderation_server.service import ModerationService
from services.requests import cancel_on_disconnect, parse_body

router = APIRouter()


def _service(request: Request) -> ModerationService:
    return request.app.state.moderation  # set by app.build_app's lifespan


def _settings(request: Request) -> ModerationSettings:
    return request.app.state.settings


@router.post("/v1/classify")
async def classify(request: Request) -> dict[str, Any]:
    service = _service(request)
    _, body = await parse_body(request, ClassifyRequest, _settings(request).max_request_bytes)
    # A caller that gives up (the gateway's timeout) takes its unscored texts out of the model's queue.
    results = await cancel_on_disconnect(request, service.classify(service.texts_of(body.input)))
    answer: dict[str, Any] = {"model": service.model, "results": [r.model_dump() for r in results]}
    if isinstance(body.input, str):  # one text: its result at the top level too
        answer.update(results[0].model_dump())
    return answer


@router.post("/v1/moderations")
async def create_moderation(request: Request) -> dict[str, Any]:
    service = _service(request)
    _, body = await parse_body(request, ModerationRequest, _settings(request).max_request_bytes)
    results = await cancel_on_disconnect(request, service.classify(service.texts_of(body.input)))
    return {"id": f"modr-{uuid.uuid4().hex}", "model": service.model, "results": [r.to_openai() for r in results]}

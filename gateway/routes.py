"""Thin HTTP routes: read the body, call the service on app.state, answer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from gateway.admission import admit_chat, admit_completion, metered, principal_of
from gateway.upstream import Generation
from services.errors import NotFoundError
from services.protocol import ChatCompletionRequest, CompletionRequest
from services.requests import parse_body

router = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _respond(result: Generation) -> JSONResponse | StreamingResponse:
    if result.stream is not None:
        return StreamingResponse(result.stream, media_type="text/event-stream", headers=SSE_HEADERS)
    return JSONResponse(result.body)


def _session_of(request: Request) -> str | None:
    """The conversation id for session-affinity routing (``X-Session-Id``), if the client sent one."""
    return request.headers.get(request.app.state.settings.routing.session_header)


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    principal = principal_of(request)
    cards = [card for card in request.app.state.registry.cards() if principal.may_use(card["id"])]
    return JSONResponse({"object": "list", "data": cards})


@router.get("/v1/models/{model:path}")
async def get_model(model: str, request: Request) -> JSONResponse:
    for card in request.app.state.registry.cards():
        if card["id"] == model and principal_of(request).may_use(model):
            return JSONResponse(card)
    raise NotFoundError(f"The model '{model}' does not exist.", param="model", code="model_not_found")


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the route reads itself (parse_body), so clients and fuzzers see it;
    its ``$defs`` are moved to the components by :func:`gateway.app.openapi_with_bodies`."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


@router.post("/v1/chat/completions", response_model=None, openapi_extra=body_schema(ChatCompletionRequest))
async def create_chat_completion(request: Request) -> JSONResponse | StreamingResponse:
    body, parsed = await parse_body(request, ChatCompletionRequest, request.app.state.settings.max_request_bytes)
    base_id = await admit_chat(request, parsed, body)
    answer = await request.app.state.chat.create(body, parsed, base_id, _session_of(request))
    return _respond(metered(request, answer))


@router.post("/v1/completions", response_model=None, openapi_extra=body_schema(CompletionRequest))
async def create_completion(request: Request) -> JSONResponse | StreamingResponse:
    body, parsed = await parse_body(request, CompletionRequest, request.app.state.settings.max_request_bytes)
    base_id = await admit_completion(request, parsed)
    answer = await request.app.state.completions.create(body, parsed, base_id, _session_of(request))
    return _respond(metered(request, answer))

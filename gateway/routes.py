"""Thin HTTP routes: read the body, call the service on app.state, answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

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


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    return JSONResponse({"object": "list", "data": request.app.state.registry.cards()})


@router.get("/v1/models/{model:path}")
async def get_model(model: str, request: Request) -> JSONResponse:
    for card in request.app.state.registry.cards():
        if card["id"] == model:
            return JSONResponse(card)
    raise NotFoundError(f"The model '{model}' does not exist.", param="model", code="model_not_found")


@router.post("/v1/chat/completions", response_model=None)
async def create_chat_completion(request: Request) -> JSONResponse | StreamingResponse:
    body, parsed = await parse_body(request, ChatCompletionRequest, request.app.state.settings.max_request_bytes)
    return _respond(await request.app.state.chat.create(body, parsed))


@router.post("/v1/completions", response_model=None)
async def create_completion(request: Request) -> JSONResponse | StreamingResponse:
    body, parsed = await parse_body(request, CompletionRequest, request.app.state.settings.max_request_bytes)
    return _respond(await request.app.state.completions.create(body, parsed))

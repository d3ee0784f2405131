"""Talking to a vLLM OpenAI server: one JSON call, or a stream of SSE events."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.models import ModelRoute, upstream_headers
from services.errors import OpenAIError, UpstreamError, from_upstream_body, sse_error
from services.http import map_httpx_errors

logger = logging.getLogger(__name__)

DONE = object()  # the `data: [DONE]` sentinel


@dataclass
class Generation:
    """A finished answer (``body``) or a stream of SSE bytes (``stream``)."""

    id: str
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None


class UpstreamClient:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def generate(
        self, route: ModelRoute, path: str, body: dict[str, Any], *, stream: bool, id_prefix: str
    ) -> Generation:
        """Generate with a fresh, unique response id (vLLM names its answer
        ``<prefix>-<X-Request-Id>``; we set the id ourselves all the same)."""
        base_id = uuid.uuid4().hex
        response_id = f"{id_prefix}-{base_id}"
        if stream:
            events = await self.open_stream(route, path, body, base_id)
            return Generation(response_id, stream=relay_stream(events, response_id))
        answer = await self.post(route, path, body, base_id)
        answer["id"] = response_id
        return Generation(response_id, body=answer)

    def _request(self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str) -> httpx.Request:
        headers = {"X-Request-Id": request_id, **upstream_headers(route.upstream)}
        return self._http.build_request("POST", route.upstream.url.rstrip("/") + path, json=body, headers=headers)

    async def post(self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        with map_httpx_errors("the chat model"):
            response = await self._http.send(self._request(route, path, body, request_id))
        if response.status_code != 200:
            raise from_upstream_body(response.status_code, response.content)
        try:
            return dict(response.json())
        except ValueError as exc:
            raise UpstreamError("The chat model answered with invalid JSON.") from exc

    async def open_stream(
        self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any] | object]:
        """Send the request and check its status now, so an upstream error becomes a
        proper HTTP error; then return the events (dicts, and DONE at the end)."""
        with map_httpx_errors("the chat model"):
            response = await self._http.send(self._request(route, path, body, request_id), stream=True)
        if response.status_code != 200:
            content = await response.aread()
            await response.aclose()
            raise from_upstream_body(response.status_code, content)
        return _events(response)


async def _events(response: httpx.Response) -> AsyncIterator[dict[str, Any] | object]:
    try:
        with map_httpx_errors("the chat model"):
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    yield DONE
                    return
                try:
                    yield json.loads(data)
                except ValueError as exc:
                    raise UpstreamError("The chat model sent a malformed stream event.") from exc
    finally:
        await response.aclose()


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


async def relay_stream(events: AsyncIterator[dict[str, Any] | object], response_id: str) -> AsyncIterator[bytes]:
    """Re-frame upstream events with our id; an upstream failure mid-stream ends it with an error event."""
    async with aclosing(events):  # a client that hangs up cancels the upstream request too
        try:
            async for event in events:
                if event is DONE:
                    break
                assert isinstance(event, dict)
                if "error" not in event:
                    event["id"] = response_id
                yield sse_event(event)
            yield SSE_DONE
        except OpenAIError as exc:
            logger.warning("stream failed: %s", exc.message)
            yield sse_error(exc)

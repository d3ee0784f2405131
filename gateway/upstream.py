"""Talking to a vLLM OpenAI server: one JSON call, or a stream of SSE events."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import aiohttp

from gateway.models import ModelRoute, upstream_headers
from services.errors import OpenAIError, UpstreamError, from_upstream_body, sse_error
from services.http import map_aiohttp_errors

logger = logging.getLogger(__name__)

DONE = object()  # the `data: [DONE]` sentinel


@dataclass
class Generation:
    """A finished answer (``body``) or a stream of SSE bytes (``stream``)."""

    id: str
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None


class UpstreamClient:
    """Generation calls, on the gateway's aiohttp session (see services/http.py for why)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

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

    async def _send(
        self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str
    ) -> aiohttp.ClientResponse:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id, **upstream_headers(route.upstream)}
        return await self._session.post(
            route.upstream.url.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers
        )

    async def post(self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str) -> dict[str, Any]:
        with map_aiohttp_errors("the chat model"):
            response = await self._send(route, path, body, request_id)
            async with response:
                content = await response.read()
        if response.status != 200:
            raise from_upstream_body(response.status, content)
        try:
            return dict(json.loads(content))
        except ValueError as exc:
            raise UpstreamError("The chat model answered with invalid JSON.") from exc

    async def open_stream(
        self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str
    ) -> AsyncIterator[dict[str, Any] | object]:
        """Send the request and check its status now, so an upstream error becomes a
        proper HTTP error; then return the events (dicts, and DONE at the end)."""
        with map_aiohttp_errors("the chat model"):
            response = await self._send(route, path, body, request_id)
            if response.status != 200:
                async with response:
                    content = await response.read()
                raise from_upstream_body(response.status, content)
        return _events(response)


async def _events(response: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any] | object]:
    finished = False
    try:
        with map_aiohttp_errors("the chat model"):
            async for raw in response.content:
                if not raw.startswith(b"data:"):
                    continue
                data = raw[5:].strip()
                if data == b"[DONE]":
                    finished = True
                    yield DONE
                    return
                try:
                    yield json.loads(data)
                except ValueError as exc:
                    raise UpstreamError("The chat model sent a malformed stream event.") from exc
    finally:
        if finished:
            response.release()
        else:
            response.close()  # dropping the connection makes vLLM abort the request


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

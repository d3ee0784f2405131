"""Talking to a vLLM OpenAI server: one JSON call, or a stream of SSE events."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from gateway.registry import ModelRoute, upstream_headers
from gateway.replicas import RETRIES, Replica, ReplicaRouter
from services.errors import OpenAIError, UpstreamError, from_upstream_body, sse_error
from services.http import REQUEST_ID_HEADER, map_aiohttp_errors
from services.logging import request_id_var
from services.tracing import client_span, set_status_code

logger = logging.getLogger(__name__)

DONE = object()  # the `data: [DONE]` sentinel
_T = TypeVar("_T")


@dataclass
class Generation:
    """A finished answer (``body``) or a stream of SSE bytes (``stream``)."""

    id: str
    body: dict[str, Any] | None = None
    stream: AsyncIterator[bytes] | None = None
    usage_of: Callable[[], dict[str, Any] | None] | None = None
    """Streams: the usage the upstream reported (None until its usage chunk has passed)."""


class _ReplicaFailed(Exception):
    """A replica failed before any byte of the answer was sent: another one may try."""

    def __init__(self, error: OpenAIError) -> None:
        super().__init__(error.message)
        self.error = error


def _fails_replica(error: OpenAIError) -> bool:
    """Connect errors, timeouts and 5xx count against the replica; a 4xx is the caller's."""
    return error.status_code >= 500


class UpstreamClient:
    """Generation calls on the gateway's aiohttp session (see services/http.py for why),
    routed to a replica by :class:`ReplicaRouter` and retried on another replica (tenacity)
    while nothing has been sent to the client."""

    def __init__(self, session: aiohttp.ClientSession, router: ReplicaRouter) -> None:
        self._session = session
        self.router = router

    async def generate(
        self,
        route: ModelRoute,
        path: str,
        body: dict[str, Any],
        *,
        stream: bool,
        response_id: str,
        request_id: str,
        session: str | None = None,
        relay: StreamRelay | None = None,
    ) -> Generation:
        """The one generation call of the gateway: POST ``body`` to ``path``
        (``/chat/completions`` or ``/completions``) on a replica of ``route``.

        ``response_id`` is the id the client sees (vLLM would name its answer
        ``<prefix>-<X-Request-Id>``; we set it ourselves all the same); ``request_id`` goes
        upstream as ``X-Request-Id`` (after the client's request id), ``session`` picks the
        replica under session affinity. Not streamed: ``Generation.body`` is the upstream's
        JSON answer. Streamed: ``Generation.stream`` is the SSE bytes of ``relay`` (default:
        events passed on as they are); streams always ask the upstream for usage
        (``Generation.usage_of``), and the client sees the usage chunk only if it asked for it.
        Raises :class:`OpenAIError` (the upstream's own 4xx, or 502/503/504 once no replica
        answered) before anything is sent to the client."""
        if not stream:
            answer = await self.post(route, path, body, request_id, session)
            answer["id"] = response_id
            return Generation(response_id, body=answer)
        relay = relay or StreamRelay(response_id)
        options = body.get("stream_options") or {}
        send_usage = bool(options.get("include_usage"))
        if not send_usage:
            body = {**body, "stream_options": {**options, "include_usage": True}}
        events = await self.open_stream(route, path, body, request_id, session)
        return Generation(response_id, stream=relay.relay(events, send_usage), usage_of=lambda: relay.usage)

    async def _send(self, replica: Replica, path: str, body: dict[str, Any], request_id: str) -> aiohttp.ClientResponse:
        # vLLM names its request after X-Request-Id: ours, made unique, so its logs carry it
        headers = {"Content-Type": "application/json", **upstream_headers(replica.config)}
        headers[REQUEST_ID_HEADER] = f"{outer}-{request_id}" if (outer := request_id_var.get()) else request_id
        with client_span(f"POST {path}", headers, {"replica": replica.key, "url.path": path}) as span:
            response = await self._session.post(replica.key + path, data=json.dumps(body).encode(), headers=headers)
            set_status_code(span, response.status)
            return response

    async def _with_replica(
        self, route: ModelRoute, session: str | None, attempt: Callable[[Replica], Awaitable[_T]]
    ) -> _T:
        """Run ``attempt`` on a replica; on a replica failure, again on another one (up to
        ``max_attempts``, while one is in service). The slot is released unless ``attempt``
        returns a stream, which releases it when it ends."""
        tried: list[Replica] = []

        def another_replica(state: RetryCallState) -> bool:
            failed = state.outcome is not None and isinstance(state.outcome.exception(), _ReplicaFailed)
            return failed and self.router.has_candidate(route.replicas, tried)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.router.settings.max_attempts), retry=another_replica, reraise=True
        )
        try:
            async for attempt_state in retrying:
                with attempt_state:
                    if tried:
                        RETRIES.labels(tried[-1].key).inc()
                    replica = await self.router.acquire(route.model, route.replicas, session, exclude=tried)
                    tried.append(replica)
                    return await self._attempt_on(replica, attempt)
        except _ReplicaFailed as failed:
            raise failed.error from failed.error.__cause__
        raise AssertionError("tenacity ended without an outcome")  # pragma: no cover

    async def _attempt_on(self, replica: Replica, attempt: Callable[[Replica], Awaitable[_T]]) -> _T:
        keep_slot = False
        try:
            result = await attempt(replica)
            keep_slot = isinstance(result, _Events)
            return result
        except OpenAIError as exc:
            if not _fails_replica(exc):
                raise
            replica.record_failure(exc.message)
            raise _ReplicaFailed(exc) from exc
        finally:
            if not keep_slot:
                self.router.release(replica)

    async def post(
        self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str, session: str | None = None
    ) -> dict[str, Any]:
        async def attempt(replica: Replica) -> dict[str, Any]:
            with map_aiohttp_errors("the chat model"):
                response = await self._send(replica, path, body, request_id)
                async with response:
                    content = await response.read()
            if response.status != 200:
                raise from_upstream_body(response.status, content)
            try:
                answer = dict(json.loads(content))
            except ValueError as exc:
                raise UpstreamError("The chat model answered with invalid JSON.") from exc
            replica.record_success()
            return answer

        return await self._with_replica(route, session, attempt)

    async def open_stream(
        self, route: ModelRoute, path: str, body: dict[str, Any], request_id: str, session: str | None = None
    ) -> AsyncIterator[dict[str, Any] | object]:
        """Send the request and check its status now, so an upstream error becomes a
        proper HTTP error (and may be retried elsewhere); then return the events (dicts,
        and DONE at the end). The replica's slot is held until the events end."""

        async def attempt(replica: Replica) -> _Events:
            with map_aiohttp_errors("the chat model"):
                response = await self._send(replica, path, body, request_id)
                if response.status != 200:
                    async with response:
                        content = await response.read()
                    raise from_upstream_body(response.status, content)
            return _Events(response, replica, self.router)

        return await self._with_replica(route, session, attempt)


class _Events:
    """A stream's events; the replica's slot is given back once, when they end, fail or are
    closed, or when the stream is dropped without ever being read (the client left first)."""

    def __init__(self, response: aiohttp.ClientResponse, replica: Replica, router: ReplicaRouter) -> None:
        self._response = response
        self._replica = replica
        self._router = router
        self._iterator = _events(response, replica)
        self._held = True

    def _release(self) -> None:
        if self._held:
            self._held = False
            self._router.release(self._replica)

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> dict[str, Any] | object:
        try:
            return await self._iterator.__anext__()
        except BaseException:
            self._release()
            raise

    async def aclose(self) -> None:
        try:
            await self._iterator.aclose()  # type: ignore[attr-defined]
        finally:
            if not self._response.closed and self._held:
                self._response.close()
            self._release()

    def __del__(self) -> None:
        if self._held:
            self._response.close()
            self._release()


async def _events(response: aiohttp.ClientResponse, replica: Replica) -> AsyncIterator[dict[str, Any] | object]:
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
    except OpenAIError as exc:
        if _fails_replica(exc):
            replica.record_failure(f"stream broke: {exc.message}")
        raise
    finally:
        if finished:
            response.release()
            replica.record_success()
        else:
            response.close()  # dropping the connection makes vLLM abort the request


def sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


class StreamRelay:
    """Relays one upstream stream to the client as SSE bytes: the one relay every stream goes
    through (chat and completions alike).

    Each event gets our response id; the upstream's usage is kept in ``usage``, and a
    usage-only chunk is passed on only when the client asked for usage. Every other event
    goes through :meth:`transform`, the per-event transformer: it returns the chunks to send
    and may end the stream by setting ``ended``. An upstream error event is passed on and
    ends the stream; a failure mid-stream ends it with an error event. :meth:`finish` runs
    once, when the relay ends for any reason. This base class passes events on unchanged;
    :class:`gateway.turn_service.TurnRelay` lets the chat hooks review the text."""

    def __init__(self, response_id: str) -> None:
        self.response_id = response_id
        self.usage: dict[str, Any] | None = None
        self.ended = False

    async def transform(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The chunks to send for one upstream event (its id is ours already)."""
        return [event]

    async def finish(self, completed: bool) -> None:
        """The relay is over; ``completed`` is False when the client went away first."""
        return None

    async def relay(self, events: AsyncIterator[dict[str, Any] | object], send_usage: bool) -> AsyncIterator[bytes]:
        completed = False
        try:
            async with aclosing(events):  # type: ignore[type-var]  # an async generator; a client that hangs up cancels the upstream request too
                async for event in events:
                    if event is DONE:
                        break
                    assert isinstance(event, dict)
                    if "error" in event:
                        yield sse_event(event)
                        break
                    event["id"] = self.response_id
                    if event.get("usage"):
                        self.usage = event["usage"]
                        if not send_usage:
                            if not event.get("choices"):
                                continue
                            event.pop("usage")
                    for chunk in await self.transform(event):
                        yield sse_event(chunk)
                    if self.ended:
                        break
            yield SSE_DONE
            completed = True
        except OpenAIError as exc:
            logger.warning("stream failed: %s", exc.message)
            completed = True
            yield sse_error(exc)
        finally:
            await self.finish(completed)

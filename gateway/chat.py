"""``/v1/chat/completions``: route, run the hooks, fit the history, generate, relay."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import aclosing
from typing import Any

from gateway.config import GatewaySettings
from gateway.models import ModelRegistry, ModelRoute
from gateway.pipeline import ChatHook, ChatTurn, StreamVerdict, refusal_body, refusal_chunks
from gateway.truncation import drop_what_cannot_fit, fit_history
from gateway.upstream import DONE, SSE_DONE, Generation, UpstreamClient, sse_event
from services.errors import BadRequestError, OpenAIError, sse_error
from services.protocol import ChatCompletionRequest

logger = logging.getLogger(__name__)

# Our request extensions; the upstream never sees them.
EXTENSION_FIELDS = ("retrieval",)


def merge_stop(requested: list[str], added: list[str]) -> list[str]:
    return requested + [s for s in added if s not in requested]


class ChatCompletionService:
    def __init__(
        self,
        settings: GatewaySettings,
        registry: ModelRegistry,
        upstream: UpstreamClient,
        hooks: Sequence[ChatHook] = (),
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._upstream = upstream
        self.hooks = list(hooks)

    async def create(self, body: dict[str, Any], request: ChatCompletionRequest) -> Generation:
        route = await self._registry.resolve(request.model)
        forward = {k: v for k, v in body.items() if k not in EXTENSION_FIELDS}
        stop = merge_stop(request.stop_list(), route.upstream.stop)
        if stop:
            forward["stop"] = stop
        base_id = uuid.uuid4().hex
        # vLLM names its answer chatcmpl-<X-Request-Id>; we set the id ourselves all the same.
        turn = ChatTurn(
            id=f"chatcmpl-{base_id}", model=request.model, request=request, forward=forward, stream=bool(request.stream)
        )
        # Cheap checks first: a conversation that cannot fit is a 400 before moderation or retrieval run.
        turn.dropped_messages = await self._fit_context(route, request, forward)
        for hook in self.hooks:
            await hook.before_generation(turn)
            if turn.refusal is not None:
                return await self._refuse(turn)
        turn.dropped_messages += await self._fit_context(route, request, forward)  # with what hooks added
        if turn.dropped_messages:
            # Told to the client (the web page shows a notice): {"truncation": {"dropped_messages": n}}.
            turn.extensions["truncation"] = {"dropped_messages": turn.dropped_messages}
        client_wants_usage = bool((request.stream_options or {}).get("include_usage"))
        if turn.stream and not client_wants_usage:
            # Token counts are recorded for every turn; the usage chunk is kept from clients that did not ask.
            forward["stream_options"] = {**(request.stream_options or {}), "include_usage": True}
        if turn.stream:
            events = await self._upstream.open_stream(route, "/chat/completions", forward, base_id)
            return Generation(turn.id, stream=self._relay(turn, events, client_wants_usage))
        body_out = await self._upstream.post(route, "/chat/completions", forward, base_id)
        body_out["id"] = turn.id
        choices = body_out.get("choices") or []
        turn.answers = [str((c.get("message") or {}).get("content") or "") for c in choices]
        turn.finish_reasons = [c.get("finish_reason") for c in choices]
        turn.usage = body_out.get("usage")
        for hook in self.hooks:
            await hook.after_answer(turn, body_out)
        body_out.update(turn.extensions)
        await self._finish(turn)
        return Generation(turn.id, body=body_out)

    async def _refuse(self, turn: ChatTurn) -> Generation:
        assert turn.refusal is not None
        turn.answers, turn.finish_reasons = [turn.refusal], ["content_filter"]
        await self._finish(turn)
        if turn.stream:
            chunks = [sse_event(c) for c in refusal_chunks(turn, turn.refusal)] + [SSE_DONE]
            return Generation(turn.id, stream=_iterate(chunks))
        return Generation(turn.id, body=refusal_body(turn, turn.refusal))

    async def _finish(self, turn: ChatTurn) -> None:
        turn.finished = time.monotonic()
        for hook in self.hooks:
            try:
                await hook.after_response(turn)
            except Exception:  # a recording failure must not fail the answer
                logger.exception("after_response hook %s failed", type(hook).__name__)

    async def _fit_context(self, route: ModelRoute, request: ChatCompletionRequest, forward: dict[str, Any]) -> int:
        """Drop the oldest turns when messages + answer exceed the context; return how many."""
        context = route.max_model_len
        if context is None:
            return 0
        reserved = request.requested_max_tokens() or route.upstream.default_max_tokens or 0
        if reserved >= context:
            raise BadRequestError(
                f"max_tokens is {reserved}, but the model's context is {context} tokens.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        budget = context - reserved
        messages = forward["messages"]
        if _upper_bound_tokens(messages, self._settings.template_overhead_tokens) <= budget:
            return 0  # cannot overflow: skip the count
        messages, dropped_uncounted = drop_what_cannot_fit(messages, budget, route.counter.max_chars_per_token)
        forward["messages"] = messages

        async def count(candidate: list[dict[str, Any]]) -> int:
            return await route.counter.count_chat(route.model, candidate)

        fitted = await fit_history(messages, count, budget)
        if fitted.dropped_messages:
            logger.info(
                "history truncated to fit the context",
                extra={"dropped_messages": fitted.dropped_messages, "prompt_tokens": fitted.prompt_tokens},
            )
            forward["messages"] = fitted.messages
        return dropped_uncounted + fitted.dropped_messages

    async def _relay(
        self, turn: ChatTurn, events: AsyncIterator[dict[str, Any] | object], send_usage: bool
    ) -> AsyncIterator[bytes]:
        """Re-frame upstream chunks with our id, let hooks review text before it is sent,
        and put the response extensions on the first and the finishing chunks."""
        relay = _StreamState(turn, self.hooks, send_usage)
        ended = False
        try:
            async with aclosing(events):  # a client that hangs up cancels the upstream request
                async for event in events:
                    if event is DONE:
                        break
                    assert isinstance(event, dict)
                    if "error" in event:
                        yield sse_event(event)
                        break
                    out = await relay.process(event)
                    for chunk in out:
                        yield sse_event(chunk)
                    if relay.blocked:
                        break
            yield SSE_DONE
            ended = True
        except OpenAIError as exc:
            logger.warning("stream failed: %s", exc.message)
            ended = True
            yield sse_error(exc)
        finally:
            turn.aborted = not ended
            turn.answers = [relay.released.get(i, "") for i in range(max(relay.released, default=-1) + 1)]
            await self._finish(turn)


class _StreamState:
    """Per-stream bookkeeping: text released to the client and text held back by a hook."""

    def __init__(self, turn: ChatTurn, hooks: list[ChatHook], send_usage: bool) -> None:
        self.turn = turn
        self.hooks = hooks
        self.send_usage = send_usage
        self.released: dict[int, str] = {}
        self.pending: dict[int, str] = {}
        self.held_fields: dict[int, _TokenFields] = {}
        self.first = True
        self.blocked = False

    async def process(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        event["id"] = self.turn.id
        choices = event.get("choices") or []
        if event.get("usage"):
            self.turn.usage = event["usage"]
            if not self.send_usage:
                if not choices:
                    return []
                event.pop("usage")
        out: list[dict[str, Any]] = []
        for choice in choices:
            index = int(choice.get("index", 0))
            delta = choice.get("delta") or {}
            finish = choice.get("finish_reason")
            piece = delta.get("content") or ""
            held = self.held_fields.setdefault(index, _TokenFields())
            held.take_from(choice)  # sent with the text they belong to
            if not piece and finish is None:
                continue
            self.pending[index] = self.pending.get(index, "") + piece
            verdict = await self._review(index, final=finish is not None)
            if verdict is StreamVerdict.BLOCK:
                out.append(self._filtered_chunk(event, index))
                self.blocked = True
                return out
            if verdict is StreamVerdict.HOLD:
                delta.pop("content", None)
                continue
            delta["content"] = self.pending.pop(index, "")
            held.give_to(choice)
            self.released[index] = self.released.get(index, "") + delta["content"]
            if finish is not None:
                self._mark_finished(index, finish)
        finishing = any(c.get("finish_reason") is not None for c in choices)
        if not (self.first or finishing or event.get("usage") or any(c.get("delta") for c in choices)):
            return out  # everything in it is held back
        if self.first or finishing:
            event.update(self.turn.extensions)
            self.first = False
        out.append(event)
        return out

    async def _review(self, index: int, final: bool) -> StreamVerdict:
        released, pending = self.released.get(index, ""), self.pending.get(index, "")
        outcome = StreamVerdict.RELEASE
        for hook in self.hooks:
            verdict = await hook.review_stream_text(self.turn, index, released, pending, final)
            if verdict is StreamVerdict.BLOCK:
                return verdict
            if verdict is StreamVerdict.HOLD and not final:
                outcome = StreamVerdict.HOLD
        return outcome

    def _mark_finished(self, index: int, reason: str) -> None:
        while len(self.turn.finish_reasons) <= index:
            self.turn.finish_reasons.append(None)
        self.turn.finish_reasons[index] = reason

    def _filtered_chunk(self, event: dict[str, Any], index: int) -> dict[str, Any]:
        self.pending.pop(index, None)
        self._mark_finished(index, "content_filter")
        return {
            "id": self.turn.id,
            "object": "chat.completion.chunk",
            "created": event.get("created", int(time.time())),
            "model": event.get("model", self.turn.model),
            "choices": [{"index": index, "delta": {}, "finish_reason": "content_filter"}],
            **self.turn.extensions,
        }


class _TokenFields:
    """Per-token fields of the chunks held back with their text (``logprobs.content`` entries,
    vLLM's ``token_ids``), put back in order on the chunk that releases the text."""

    def __init__(self) -> None:
        self.logprobs: list[Any] | None = None
        self.token_ids: list[Any] | None = None

    def take_from(self, choice: dict[str, Any]) -> None:
        logprobs = choice.pop("logprobs", None)
        if isinstance(logprobs, dict) and logprobs.get("content") is not None:
            self.logprobs = (self.logprobs or []) + list(logprobs["content"])
        token_ids = choice.pop("token_ids", None)
        if token_ids is not None:
            self.token_ids = (self.token_ids or []) + list(token_ids)

    def give_to(self, choice: dict[str, Any]) -> None:
        if self.logprobs is not None:
            choice["logprobs"] = {"content": self.logprobs}
            self.logprobs = None
        if self.token_ids is not None:
            choice["token_ids"] = self.token_ids
            self.token_ids = None


def _upper_bound_tokens(messages: list[dict[str, Any]], template_overhead: int) -> int:
    """Byte-level tokenizers never make more tokens than UTF-8 bytes; add room for the template."""
    total = template_overhead
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        total += len(str(content or "").encode()) + 8
    return total


async def _iterate(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item

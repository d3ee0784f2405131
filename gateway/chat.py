"""``/v1/chat/completions``: route, run the hooks, fit the history, generate, relay."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from gateway.config import GatewaySettings
from gateway.pipeline import ChatHook, ChatTurn
from gateway.registry import ModelRegistry, ModelRoute
from gateway.truncation import drop_what_cannot_fit, fit_history
from gateway.turn_service import TurnService
from gateway.upstream import Generation, UpstreamClient
from services.errors import BadRequestError
from services.protocol import ChatCompletionRequest

logger = logging.getLogger(__name__)

# Our request extensions; the upstream never sees them.
EXTENSION_FIELDS = ("retrieval",)


def merge_stop(requested: list[str], added: list[str]) -> list[str]:
    return requested + [s for s in added if s not in requested]


class ChatCompletionService(TurnService):
    def __init__(
        self,
        settings: GatewaySettings,
        registry: ModelRegistry,
        upstream: UpstreamClient,
        hooks: Sequence[ChatHook] = (),
    ) -> None:
        super().__init__(upstream, hooks)
        self._settings = settings
        self._registry = registry

    async def create(
        self,
        body: dict[str, Any],
        request: ChatCompletionRequest,
        base_id: str | None = None,
        session: str | None = None,
    ) -> Generation:
        """Answer one ``/v1/chat/completions`` request.

        ``body`` is the request JSON as the client sent it (our extensions such as
        ``retrieval`` are taken out before it goes upstream; the model's stop strings are
        merged in), ``request`` the same parsed. ``base_id`` makes the response id
        ``chatcmpl-<base_id>`` (the admission ticket's id; default: a fresh uuid4 hex) and
        goes upstream as ``X-Request-Id``. ``session`` is the conversation's id for
        session-affinity routing (the ``X-Session-Id`` header; default under the ``session``
        policy: the first user message, its first 2,000 characters). An alias split between
        adapter versions (A/B) keeps one conversation (the ``user`` field, else ``session``,
        else the first user message) on one arm.

        The oldest turns are dropped when the messages plus ``max_tokens`` (else the model's
        default) exceed the model's context in tokens, counted with its tokenizer; then the
        hooks run (moderation, retrieval, turn capture) and the model answers.

        Returns a :class:`Generation`: ``body`` is an OpenAI ``chat.completion``, or
        ``stream`` its SSE chunks ending with ``data: [DONE]``; both carry our extensions
        (``moderation``, ``citations``, ``truncation: {"dropped_messages": n}``). A refused
        request is an answer, not an error: the refusal text with finish_reason
        ``content_filter``. Raises :class:`BadRequestError` (400, ``context_length_exceeded``)
        when ``max_tokens`` alone fills the context or the latest turn cannot fit;
        :class:`NotFoundError` (404) for an unknown model (503 ``model_unavailable`` while no
        chat model is reachable yet); the upstream's own errors, or 502/503/504 when no
        replica answers."""
        conversation = body.get("user") if isinstance(body.get("user"), str) else None
        conversation = conversation or session or _first_user_text(forward_messages(body))
        route = await self._registry.resolve(request.model, sticky=conversation)  # A/B arms stick to it
        if session is None and self._settings.routing.policy == "session":
            session = _first_user_text(forward_messages(body))
        forward = {k: v for k, v in body.items() if k not in EXTENSION_FIELDS} | {"model": route.model}
        stop = merge_stop(request.stop_list(), route.upstream.stop)
        if stop:
            forward["stop"] = stop
        base_id = base_id or uuid.uuid4().hex
        turn = ChatTurn(
            id=f"chatcmpl-{base_id}", model=request.model, request=request, forward=forward, stream=bool(request.stream)
        )
        # Cheap checks first: a conversation that cannot fit is a 400 before moderation or retrieval run.
        turn.dropped_messages = await self._fit_context(route, request, forward)
        if await self._refused(turn):
            return await self._refuse(turn)
        turn.dropped_messages += await self._fit_context(route, request, forward)  # with what hooks added
        if turn.dropped_messages:
            # Told to the client (the web page shows a notice): {"truncation": {"dropped_messages": n}}.
            turn.extensions["truncation"] = {"dropped_messages": turn.dropped_messages}
        return await self._generate(turn, route, "/chat/completions", base_id, session)

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


def _upper_bound_tokens(messages: list[dict[str, Any]], template_overhead: int) -> int:
    """Byte-level tokenizers never make more tokens than UTF-8 bytes; add room for the template."""
    total = template_overhead
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        total += len(str(content or "").encode()) + 8
    return total


def forward_messages(body: dict[str, Any]) -> list[Any]:
    messages = body.get("messages")
    return messages if isinstance(messages, list) else []


def _first_user_text(messages: list[Any]) -> str | None:
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            return str(message.get("content"))[:2000]
    return None

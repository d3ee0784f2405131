"""``/v1/chat/completions``: route, fit the history, generate, relay."""

from __future__ import annotations

import logging
from typing import Any

from gateway.config import GatewaySettings
from gateway.models import ModelRegistry, ModelRoute
from gateway.truncation import fit_history
from gateway.upstream import Generation, UpstreamClient
from services.errors import BadRequestError
from services.protocol import ChatCompletionRequest

logger = logging.getLogger(__name__)

# Our request extensions; the upstream never sees them.
EXTENSION_FIELDS = ("retrieval",)


def merge_stop(requested: list[str], added: list[str]) -> list[str]:
    return requested + [s for s in added if s not in requested]


class ChatCompletionService:
    def __init__(self, settings: GatewaySettings, registry: ModelRegistry, upstream: UpstreamClient) -> None:
        self._settings = settings
        self._registry = registry
        self._upstream = upstream

    async def create(self, body: dict[str, Any], request: ChatCompletionRequest) -> Generation:
        route = await self._registry.resolve(request.model)
        forward = {k: v for k, v in body.items() if k not in EXTENSION_FIELDS}
        stop = merge_stop(request.stop_list(), route.upstream.stop)
        if stop:
            forward["stop"] = stop
        await self._fit_context(route, request, forward)
        return await self._upstream.generate(
            route, "/chat/completions", forward, stream=bool(request.stream), id_prefix="chatcmpl"
        )

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

        async def count(candidate: list[dict[str, Any]]) -> int:
            return await route.counter.count_chat(route.model, candidate)

        fitted = await fit_history(messages, count, budget)
        if fitted.dropped_messages:
            logger.info(
                "history truncated to fit the context",
                extra={"dropped_messages": fitted.dropped_messages, "prompt_tokens": fitted.prompt_tokens},
            )
            forward["messages"] = fitted.messages
        return fitted.dropped_messages


def _upper_bound_tokens(messages: list[dict[str, Any]], template_overhead: int) -> int:
    """Byte-level tokenizers never make more tokens than UTF-8 bytes; add room for the template."""
    total = template_overhead
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(str(p.get("text") or "") for p in content if isinstance(p, dict))
        total += len(str(content or "").encode()) + 8
    return total


"""``/v1/completions``: raw prompts, routed and relayed like chat, through the same hooks
as chat except retrieval: moderation (each text prompt, and the answer) and turn capture
for feedback (each prompt recorded as a user message, ``endpoint: "completions"``).

While moderation is on, prompts must be text: token-id prompts cannot be classified, so
they are a 400 ``unsupported_prompt_type``. A ``caution`` verdict puts the safety prompt
before each prompt as a paragraph of its own (there is no system message to add it to).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from gateway.chat import merge_stop
from gateway.config import GatewaySettings
from gateway.moderation import ModerationHook
from gateway.pipeline import ChatHook, ChatTurn
from gateway.registry import ModelRegistry, ModelRoute
from gateway.turn_service import TurnService
from gateway.upstream import Generation, UpstreamClient
from services.errors import BadRequestError
from services.protocol import CompletionRequest


class CompletionService(TurnService):
    def __init__(
        self,
        registry: ModelRegistry,
        upstream: UpstreamClient,
        settings: GatewaySettings,
        hooks: Sequence[ChatHook] = (),
    ) -> None:
        super().__init__(upstream, hooks)
        self._registry = registry
        self._settings = settings

    async def create(
        self, body: dict[str, Any], request: CompletionRequest, base_id: str | None = None, session: str | None = None
    ) -> Generation:
        """Answer one ``/v1/completions`` request.

        ``body`` is the request JSON as the client sent it (forwarded upstream with the
        model's stop strings merged in), ``request`` the same parsed; ``base_id`` makes the
        response id ``cmpl-<base_id>`` (the admission ticket's id; default: a fresh uuid4 hex)
        and goes upstream as ``X-Request-Id``; ``session`` is the conversation's id for
        session-affinity routing (the ``X-Session-Id`` header).

        Returns a :class:`Generation`: ``body`` is an OpenAI ``text_completion`` (plus
        ``moderation`` when moderation is on), or ``stream`` its SSE chunks ending with
        ``data: [DONE]``. A refused prompt is an answer, not an error: the refusal text with
        finish_reason ``content_filter``. Raises :class:`BadRequestError` (400) for too many
        prompts or choices, a prompt longer than the context (``context_length_exceeded``) or
        token-id prompts while moderation is on; :class:`NotFoundError` (404) for an unknown
        model (503 ``model_unavailable`` while no chat model is reachable yet); the
        upstream's own errors, or 502/503/504 when no replica answers."""
        self._check_size(request)
        sticky = body.get("user") if isinstance(body.get("user"), str) else json.dumps(body.get("prompt"))[:2000]
        route = await self._registry.resolve(request.model, sticky=sticky)  # A/B arms stick to it
        forward = dict(body) | {"model": route.model}
        stop = merge_stop(request.stop_list(), route.upstream.stop)
        if stop:
            forward["stop"] = stop
        base_id = base_id or uuid.uuid4().hex
        turn = ChatTurn(
            id=f"cmpl-{base_id}",
            model=request.model,
            request=request,
            forward=forward,
            stream=bool(request.stream),
            endpoint="completions",
        )
        if any(isinstance(hook, ModerationHook) for hook in self.hooks) and not _text_prompts(request.prompt):
            raise BadRequestError(
                "Moderation is on, so 'prompt' must be a string or a list of strings (token ids cannot be moderated).",
                param="prompt",
                code="unsupported_prompt_type",
            )
        await self._check_context(route, request, turn.prompts())
        if await self._refused(turn):
            return await self._refuse(turn)
        return await self._generate(turn, route, "/completions", base_id, session)

    def _check_size(self, request: CompletionRequest) -> None:
        """400 for more prompts, or more generations (``n`` x prompts), than one request may ask."""
        prompt = request.prompt
        prompts = len(prompt) if isinstance(prompt, list) and prompt and not isinstance(prompt[0], int) else 1
        if prompts > self._settings.max_prompts_per_request:
            raise BadRequestError(
                f"'prompt' holds {prompts} prompts; at most {self._settings.max_prompts_per_request} are allowed.",
                param="prompt",
                code="too_many_prompts",
            )
        choices = prompts * (request.n or 1)
        if choices > self._settings.max_choices_per_request:
            raise BadRequestError(
                f"{prompts} prompts x n={request.n} ask for {choices} completions; "
                f"at most {self._settings.max_choices_per_request} are allowed per request.",
                param="n",
                code="too_many_choices",
            )

    async def _check_context(self, route: ModelRoute, request: CompletionRequest, prompts: list[str]) -> None:
        """Cheap checks first: a text prompt that cannot fit the context with ``max_tokens`` is
        a 400 ``context_length_exceeded`` before moderation runs (never a refusal). Exact
        counts only for prompts that might not fit (more UTF-8 bytes than the room left)."""
        context = route.max_model_len
        if context is None:
            return
        reserved = request.max_tokens or route.upstream.default_max_tokens or 0
        count_text = getattr(route.counter, "count_text", None)
        for text in prompts:
            room = context - reserved
            if len(text.encode()) <= room:
                continue  # a token covers at least one byte
            tokens = len(text) // route.counter.max_chars_per_token  # a lower bound
            if tokens <= room and count_text is not None:
                tokens = await count_text(route.model, text)
            if tokens > room:
                raise BadRequestError(
                    f"This model's maximum context length is {context} tokens. However, you requested "
                    f"{tokens + reserved} tokens ({tokens} in the prompt, {reserved} for the completion). "
                    "Please reduce the prompt or the completion length.",
                    param="prompt",
                    code="context_length_exceeded",
                )


def _text_prompts(prompt: object) -> bool:
    return isinstance(prompt, str) or (isinstance(prompt, list) and all(isinstance(p, str) for p in prompt))

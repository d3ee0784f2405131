"""``/v1/completions``: raw prompts, routed and relayed like chat."""

from __future__ import annotations

from typing import Any

from gateway.chat import merge_stop
from gateway.config import GatewaySettings
from gateway.models import ModelRegistry
from gateway.upstream import Generation, UpstreamClient
from services.errors import BadRequestError
from services.protocol import CompletionRequest


class CompletionService:
    def __init__(self, registry: ModelRegistry, upstream: UpstreamClient, settings: GatewaySettings) -> None:
        self._registry = registry
        self._upstream = upstream
        self._settings = settings

    async def create(self, body: dict[str, Any], request: CompletionRequest) -> Generation:
        self._check_size(request)
        route = await self._registry.resolve(request.model)
        forward = dict(body)
        stop = merge_stop(request.stop_list(), route.upstream.stop)
        if stop:
            forward["stop"] = stop
        return await self._upstream.generate(
            route, "/completions", forward, stream=bool(request.stream), id_prefix="cmpl"
        )

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

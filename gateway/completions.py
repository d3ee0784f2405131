"""``/v1/completions``: raw prompts, routed and relayed like chat."""

from __future__ import annotations

from typing import Any

from gateway.chat import merge_stop
from gateway.models import ModelRegistry
from gateway.upstream import Generation, UpstreamClient
from services.protocol import CompletionRequest


class CompletionService:
    def __init__(self, registry: ModelRegistry, upstream: UpstreamClient) -> None:
        self._registry = registry
        self._upstream = upstream

    async def create(self, body: dict[str, Any], request: CompletionRequest) -> Generation:
        route = await self._registry.resolve(request.model)
        forward = dict(body)
        stop = merge_stop(request.stop_list(), route.upstream.stop)
        if stop:
            forward["stop"] = stop
        return await self._upstream.generate(
            route, "/completions", forward, stream=bool(request.stream), id_prefix="cmpl"
        )

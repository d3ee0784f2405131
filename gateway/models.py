"""Which upstream serves which model, discovered from the upstreams' own /v1/models."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.config import UpstreamConfig
from gateway.token_count import LocalTokenCounter, RemoteTokenCounter, TokenCounter
from services.errors import NotFoundError, ServiceUnavailableError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRoute:
    model: str
    upstream: UpstreamConfig
    card: dict[str, Any]
    counter: TokenCounter

    @property
    def max_model_len(self) -> int | None:
        value = self.card.get("max_model_len")
        return int(value) if value else None


def upstream_headers(upstream: UpstreamConfig) -> dict[str, str]:
    if upstream.api_key is None:
        return {}
    return {"Authorization": f"Bearer {upstream.api_key.get_secret_value()}"}


class ModelRegistry:
    """Routes by ``model``. LoRA adapters a vLLM server lists are routed like base models."""

    def __init__(self, http: httpx.AsyncClient, upstreams: list[UpstreamConfig], refresh_s: float) -> None:
        self._http = http
        self._upstreams = upstreams
        self._refresh_s = refresh_s
        self._routes: dict[str, ModelRoute] = {}
        self._counters = [self._make_counter(u) for u in upstreams]
        self._healthy: dict[int, bool] = {}
        self._last_refresh = 0.0
        self._lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return any(self._healthy.values()) and bool(self._routes)

    def cards(self) -> list[dict[str, Any]]:
        """OpenAI model cards as the upstreams list them, minus where their files live."""
        return [_public_card(route.card) for route in self._routes.values()]

    def _make_counter(self, upstream: UpstreamConfig) -> TokenCounter:
        if upstream.tokenizer:
            return LocalTokenCounter(upstream.tokenizer, upstream.chat_template)
        return RemoteTokenCounter(self._http, upstream.root_url, upstream_headers(upstream))

    async def refresh(self) -> None:
        async with self._lock:
            results = await asyncio.gather(*(self._list_models(u) for u in self._upstreams), return_exceptions=True)
            routes: dict[str, ModelRoute] = {}
            for index, (upstream, result) in enumerate(zip(self._upstreams, results, strict=True)):
                if isinstance(result, BaseException):
                    if self._healthy.get(index, True):
                        logger.warning("upstream %s is not answering: %s", upstream.url, result)
                    self._healthy[index] = False
                    # Keep its last known models: requests get a clear 503, not a 404.
                    routes.update({m: r for m, r in self._routes.items() if r.upstream is upstream})
                    continue
                if not self._healthy.get(index, False):
                    logger.info("upstream %s serves %s", upstream.url, [c["id"] for c in result])
                self._healthy[index] = True
                counter = self._counters[index]
                for card in result:
                    routes.setdefault(card["id"], ModelRoute(card["id"], upstream, card, counter))
            self._routes = routes
            self._last_refresh = time.monotonic()

    async def _list_models(self, upstream: UpstreamConfig) -> list[dict[str, Any]]:
        response = await self._http.get(
            upstream.url.rstrip("/") + "/models", headers=upstream_headers(upstream), timeout=5.0
        )
        response.raise_for_status()
        return list(response.json()["data"])

    async def resolve(self, model: str) -> ModelRoute:
        route = self._routes.get(model)
        if route is None and time.monotonic() - self._last_refresh > 1.0:
            await self.refresh()  # a model (or adapter) may have appeared since the last look
            route = self._routes.get(model)
        if route is None and not any(self._healthy.values()):
            raise ServiceUnavailableError(
                "No chat model is reachable yet; try again shortly.", code="model_unavailable"
            )
        if route is None:
            known = ", ".join(sorted(self._routes)) or "none"
            raise NotFoundError(
                f"The model '{model}' does not exist. Available models: {known}.", param="model", code="model_not_found"
            )
        return route

    async def refresh_if_stale(self, max_age_s: float) -> None:
        if time.monotonic() - self._last_refresh > max_age_s:
            await self.refresh()

    async def keep_fresh(self) -> None:
        """Background task: poll quickly until ready, then every ``refresh_s``."""
        while True:
            try:
                await self.refresh()
            except Exception:
                logger.exception("model refresh failed")
            await asyncio.sleep(self._refresh_s if self.ready else 1.0)


def _public_card(card: dict[str, Any]) -> dict[str, Any]:
    """vLLM sets ``root`` to the directory it loaded (under a user's cache): clients see the model id."""
    root = card.get("root")
    if isinstance(root, str) and (root.startswith(("/", "~", ".")) or "\\" in root):
        return {**card, "root": card["id"]}
    return card

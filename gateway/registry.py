"""Which replicas serve which model, discovered from the upstreams' own /v1/models, and
the background work that keeps that fresh: model refresh, probes of ejected replicas
and scraping vLLM's queue length (see gateway/replicas.py)."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from gateway.adapter_aliases import AdapterAliases
from gateway.config import RoutingSettings, UpstreamConfig
from gateway.replicas import Replica
from gateway.token_count import LocalTokenCounter, RemoteTokenCounter, TokenCounter
from services.app import freeze_heap
from services.errors import NotFoundError, ServiceUnavailableError

logger = logging.getLogger(__name__)

_WAITING = re.compile(rb"^vllm:num_requests_waiting(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


@dataclass(frozen=True)
class ModelRoute:
    model: str
    replicas: tuple[Replica, ...]
    card: dict[str, Any]
    counter: TokenCounter

    @property
    def upstream(self) -> UpstreamConfig:
        """Settings the replicas share (stop strings, default max_tokens): the first one's."""
        return self.replicas[0].config

    @property
    def max_model_len(self) -> int | None:
        value = self.card.get("max_model_len")
        return int(value) if value else None


def upstream_headers(upstream: UpstreamConfig) -> dict[str, str]:
    if upstream.api_key is None:
        return {}
    return {"Authorization": f"Bearer {upstream.api_key.get_secret_value()}"}


async def _resolve(upstream: UpstreamConfig) -> list[UpstreamConfig]:
    """A headless Service's addresses, one upstream each (``discover: dns``)."""
    if upstream.discover != "dns":
        return [upstream]
    parts = urlsplit(upstream.url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    addresses = sorted({info[4][0] for info in infos})
    out = []
    for address in addresses:
        address = str(address)
        host = f"[{address}]" if ":" in address else address
        url = urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, parts.fragment))
        out.append(upstream.model_copy(update={"url": url, "discover": "none"}))
    return out


class ModelRegistry:
    """Routes by ``model`` to every replica that lists it. LoRA adapters a vLLM server lists
    are routed like base models."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        upstreams: list[UpstreamConfig],
        refresh_s: float,
        routing: RoutingSettings | None = None,
    ) -> None:
        self._http = http
        self._upstreams = upstreams
        self._refresh_s = refresh_s
        self._routing = routing or RoutingSettings()
        self._replicas: dict[str, Replica] = {}
        self._resolved: dict[int, list[UpstreamConfig]] = {}
        self._counters: dict[str, TokenCounter] = {}
        self._routes: dict[str, ModelRoute] = {}
        self._last_refresh = 0.0
        self._lock = asyncio.Lock()
        self.aliases: AdapterAliases | None = None  # adapter alias -> version (`openchatkit adapters promote`)

    @property
    def ready(self) -> bool:
        return bool(self._routes) and any(r.breaker.in_service and r.listed for r in self._replicas.values())

    @property
    def replicas(self) -> list[Replica]:
        return list(self._replicas.values())

    def cards(self) -> list[dict[str, Any]]:
        """OpenAI model cards as the upstreams list them, minus where their files live."""
        return [_public_card(route.card) for route in self._routes.values()]

    def _counter_for(self, upstream: UpstreamConfig) -> TokenCounter:
        key = upstream.tokenizer or upstream.root_url
        if key not in self._counters:
            if upstream.tokenizer:
                self._counters[key] = LocalTokenCounter(upstream.tokenizer, upstream.chat_template)
                freeze_heap()  # the tokenizer brought transformers and torch
            else:
                self._counters[key] = RemoteTokenCounter(self._http, upstream.root_url, upstream_headers(upstream))
        return self._counters[key]

    async def _current_replicas(self) -> list[Replica]:
        resolved = await asyncio.gather(*(_resolve(u) for u in self._upstreams), return_exceptions=True)
        configs: list[UpstreamConfig] = []
        for index, (upstream, result) in enumerate(zip(self._upstreams, resolved, strict=True)):
            if isinstance(result, BaseException):
                logger.warning("cannot resolve %s: %s", upstream.url, result)
                result = self._resolved.get(index, [])  # keep the addresses it had
            self._resolved[index] = result
            configs.extend(result)
        replicas = []
        for config in configs:
            key = config.url.rstrip("/")
            if key not in self._replicas:
                self._replicas[key] = Replica(config, self._routing)
            replicas.append(self._replicas[key])
        return list(dict.fromkeys(replicas))

    async def refresh(self) -> None:
        async with self._lock:
            replicas = await self._current_replicas()
            results = await asyncio.gather(*(self._list_models(r) for r in replicas), return_exceptions=True)
            serving: dict[str, list[Replica]] = {}
            cards: dict[str, dict[str, Any]] = {}
            for replica, result in zip(replicas, results, strict=True):
                if isinstance(result, BaseException):
                    # Not an ejection: a slow model list on a busy server is no failed request.
                    if replica.listed:
                        logger.warning("replica %s did not list its models: %s", replica.key, result)
                    replica.listed = False
                    # Keep its last known models: requests get a clear 503, not a 404.
                    for model, route in self._routes.items():
                        if replica in route.replicas:
                            serving.setdefault(model, []).append(replica)
                            cards.setdefault(model, route.card)
                    continue
                replica.listed = True
                if not replica.breaker.in_service and time.monotonic() >= replica.breaker.open_until:
                    replica.record_success()  # its back-off is over and it answers: counts as the probe
                for card in result:
                    serving.setdefault(card["id"], []).append(replica)
                    cards.setdefault(card["id"], card)
            self._routes = {
                model: ModelRoute(model, tuple(found), cards[model], self._counter_for(found[0].config))
                for model, found in serving.items()
            }
            self._last_refresh = time.monotonic()

    async def _list_models(self, replica: Replica) -> list[dict[str, Any]]:
        response = await self._http.get(
            replica.key + "/models", headers=upstream_headers(replica.config), timeout=self._routing.probe_timeout_s
        )
        response.raise_for_status()
        return list(response.json()["data"])

    async def resolve(self, model: str, sticky: str | None = None) -> ModelRoute:
        """The route of ``model``; an adapter alias resolves to the version it points at (``route.model``),
        or under an A/B split to one arm (the same arm for the same ``sticky`` conversation)."""
        requested, model = model, await self.aliases.resolve(model, sticky) if self.aliases is not None else model
        route = self._routes.get(model)
        # An alias may have just been moved to a version loaded a moment ago: look again at once.
        if route is None and (model != requested or time.monotonic() - self._last_refresh > 1.0):
            await self.refresh()  # a model (or adapter) may have appeared since the last look
            route = self._routes.get(model)
        if route is None and not self.ready:
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

    async def probe_forever(self) -> None:
        """Background task: half-open probes of ejected replicas, and vLLM's queue lengths."""
        last_scrape = 0.0
        while True:
            await asyncio.sleep(self._routing.probe_interval_s)
            now = time.monotonic()
            due = [r for r in self._replicas.values() if r.breaker.probe_due(now)]
            scrape = self._routing.scrape_interval_s > 0 and now - last_scrape >= self._routing.scrape_interval_s
            try:
                await asyncio.gather(*(self._probe(r) for r in due))
                if scrape and self._routing.policy == "least_busy" and len(self._replicas) > 1:
                    last_scrape = now
                    await asyncio.gather(*(self._scrape(r) for r in self._replicas.values() if r.breaker.in_service))
            except Exception:
                logger.exception("replica probe failed")

    async def _probe(self, replica: Replica) -> None:
        try:
            await self._list_models(replica)
        except Exception as exc:
            replica.record_failure(f"probe failed: {exc}")
            return
        replica.record_success()

    async def _scrape(self, replica: Replica) -> None:
        try:
            response = await self._http.get(
                replica.config.root_url + "/metrics",
                headers=upstream_headers(replica.config),
                timeout=self._routing.probe_timeout_s,
            )
        except Exception:
            return  # a failed scrape is not a failed replica: requests and probes judge that
        found = _WAITING.findall(response.content) if response.status_code == 200 else []
        replica.waiting = sum(float(v) for v in found)


def _public_card(card: dict[str, Any]) -> dict[str, Any]:
    """vLLM sets ``root`` to the directory it loaded (under a user's cache): clients see the model id."""
    root = card.get("root")
    if isinstance(root, str) and (root.startswith(("/", "~", ".")) or "\\" in root):
        return {**card, "root": card["id"]}
    return card

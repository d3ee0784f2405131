"""A bounded load test through the gateway: ``clients`` concurrent streaming clients for
``seconds``, each sending one request after another, then it stops by itself.

Reports errors by status (429s from backpressure counted apart), TTFT p50/p99, generated
tokens/s, the gateway's RSS before and after, and how requests split across replicas
(read from each answer's ``system_fingerprint``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from openchatkit.bench.gateway import PROMPTS
from openchatkit.bench.results import summarize


def rss_mib(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def _client(
    http: httpx.AsyncClient, url: str, key: str, model: str, max_tokens: int, until: float, n: int, out: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    turn = 0
    while time.monotonic() < until:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": PROMPTS[(n + turn) % len(PROMPTS)]}],
            "max_tokens": max_tokens,
            "ignore_eos": True,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        turn += 1
        started = time.perf_counter()
        try:
            async with http.stream("POST", url + "/chat/completions", json=body, headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    out["status"][str(response.status_code)] += 1
                    if response.status_code == 429:
                        await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                    continue
                first = None
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if first is None and event.get("choices"):
                        first = time.perf_counter()
                    if event.get("error"):
                        out["status"]["stream_error"] += 1
                    if event.get("usage"):
                        out["tokens"] += event["usage"].get("completion_tokens") or 0
                    fingerprint = event.get("system_fingerprint")
                    if fingerprint and event.get("usage"):
                        out["replicas"]["vllm" if fingerprint.startswith("vllm") else fingerprint] += 1
                out["status"]["200"] += 1
                if first is not None:
                    out["ttft"].append((first - started) * 1000)
        except httpx.HTTPError as exc:
            out["status"][type(exc).__name__] += 1


async def load(
    gateway_url: str,
    key: str,
    model: str,
    clients: int = 100,
    seconds: float = 60.0,
    max_tokens: int = 16,
    gateway_pid: int | None = None,
) -> dict[str, Any]:
    """Run the load and return its summary (see the module docstring)."""
    out: dict[str, Any] = {"status": Counter(), "ttft": [], "tokens": 0, "replicas": Counter()}
    rss_before = rss_mib(gateway_pid)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits, trust_env=False) as http:
        started = time.monotonic()
        until = started + seconds
        await asyncio.gather(
            *(_client(http, gateway_url, key, model, max_tokens, until, n, out) for n in range(clients))
        )
        wall = time.monotonic() - started
    errors = {k: v for k, v in out["status"].items() if k not in ("200", "429")}
    return {
        "clients": clients,
        "seconds": seconds,
        "wall_s": wall,
        "max_tokens": max_tokens,
        "requests": dict(out["status"]),
        "errors": sum(errors.values()),
        "rejected_429": out["status"].get("429", 0),
        "ttft_ms": summarize(out["ttft"]),
        "tokens_per_s": out["tokens"] / wall,
        "gateway_rss_mib": {"before": rss_before, "after": rss_mib(gateway_pid)},
        "replica_split": dict(out["replicas"]),
    }

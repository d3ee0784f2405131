"""The load side of ``openchatkit bench serving``: the fixed prompt set, streamed chat
requests to an OpenAI API (vLLM or the gateway) from a closed loop of N users, and the
figures every serving mode is reported with."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from openchatkit.bench.results import summarize

PROMPTS_FILE = Path(__file__).parent / "data" / "serving_prompts.jsonl"


def load_prompts(count: int, path: Path = PROMPTS_FILE) -> list[list[dict[str, str]]]:
    """``count`` chat conversations from the shipped set (3 short questions, then one long
    pasted document with a question, repeating), cycled when ``count`` exceeds it."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [rows[i % len(rows)]["messages"] for i in range(count)]


@dataclass
class RequestTiming:
    ttft_s: float
    latency_s: float
    prompt_tokens: int
    completion_tokens: int

    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first."""
        if self.completion_tokens < 2:
            return None
        return (self.latency_s - self.ttft_s) / (self.completion_tokens - 1)


def describe(timings: list[RequestTiming], wall_s: float, errors: int = 0) -> dict[str, Any]:
    """tokens/s and requests/s over the wall time; TTFT, TPOT and latency percentiles in ms."""
    completion = sum(t.completion_tokens for t in timings)
    tpots = [t.tpot_s for t in timings if t.tpot_s is not None]
    return {
        "requests": len(timings),
        "errors": errors,
        "wall_s": wall_s,
        "prompt_tokens": sum(t.prompt_tokens for t in timings),
        "completion_tokens": completion,
        "tokens_per_s": completion / wall_s if wall_s else 0.0,
        "requests_per_s": len(timings) / wall_s if wall_s else 0.0,
        "ttft_ms": summarize([t.ttft_s for t in timings], 1000),
        "tpot_ms": summarize(tpots, 1000),
        "latency_ms": summarize([t.latency_s for t in timings], 1000),
    }


@dataclass
class Endpoint:
    name: str
    base_url: str  # .../v1
    api_key: str | None
    model: str


async def stream_chat(
    http: httpx.AsyncClient, endpoint: Endpoint, messages: list[dict[str, str]], max_tokens: int
) -> RequestTiming:
    """One streamed chat completion, greedy, exactly ``max_tokens`` long (``ignore_eos``)."""
    body = {
        "model": endpoint.model,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "repetition_penalty": 1.0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    started = time.perf_counter()
    async with http.stream("POST", endpoint.base_url + "/chat/completions", json=body, headers=headers) as response:
        if response.status_code != 200:
            await response.aread()
            raise httpx.HTTPStatusError(response.text[:300], request=response.request, response=response)
        first, usage = await read_chat_stream(response.aiter_lines())
    ended = time.perf_counter()
    return RequestTiming(
        ttft_s=(first or ended) - started,
        latency_s=ended - started,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
    )


async def read_chat_stream(lines: AsyncIterator[str]) -> tuple[float | None, dict[str, Any]]:
    """Read a streamed chat completion (its SSE lines) to its end: when its first content
    arrived (``time.perf_counter()`` seconds; None if none did) and the usage it reported ({} if none)."""
    first: float | None = None
    usage: dict[str, Any] = {}
    async for line in lines:
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if first is None and any((c.get("delta") or {}).get("content") for c in event.get("choices", [])):
            first = time.perf_counter()
        if event.get("usage"):
            usage = event["usage"]
    return first, usage


async def closed_loop(
    http: httpx.AsyncClient,
    endpoint: Endpoint,
    prompts: list[list[dict[str, str]]],
    concurrency: int,
    max_tokens: int,
) -> tuple[list[RequestTiming], float, int]:
    """``concurrency`` users, each sending its next prompt when its answer ends, until every
    prompt is answered: the timings, the wall time and the error count."""
    queue = iter(prompts)
    timings: list[RequestTiming] = []
    errors = 0

    async def user() -> None:
        nonlocal errors
        for messages in queue:
            try:
                timings.append(await stream_chat(http, endpoint, messages, max_tokens))
            except httpx.HTTPError:
                errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(concurrency)))
    return timings, time.perf_counter() - started, errors


def http_client() -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    return httpx.AsyncClient(timeout=1800, limits=limits, trust_env=False)

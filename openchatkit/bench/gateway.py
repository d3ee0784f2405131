"""Gateway overhead: the same prompts sent straight to vLLM and through the gateway.

Runs alternate (direct, gateway, direct, gateway, ...) so drift on a noisy machine hits
both sides alike; ``ignore_eos`` makes every answer the same length.

The client is aiohttp: against an instant upstream at 16 concurrent requests, an httpx
client was itself the bottleneck (direct p50 10.9 ms, p95 72 ms, against aiohttp's 1.5 ms
and 2.7 ms on the same upstream), which hid the gateway's cost in the client's queueing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from openchatkit.bench.results import figure, median_ci, save_figure, summarize
from openchatkit.bench.serving_load import read_chat_stream

PROMPTS = [
    "What is the capital of France?",
    "Give me three tips for learning to cook.",
    "Explain what a hash table is.",
    "Write a haiku about autumn.",
    "How do I reverse a list in Python?",
    "What causes the seasons on Earth?",
    "Suggest a name for a coffee shop.",
    "Summarize the plot of Romeo and Juliet.",
    "What is the boiling point of water at sea level?",
    "Describe a rainbow to a child.",
    "List two benefits of exercise.",
    "Translate 'good morning' into Spanish.",
    "Why is the sky blue?",
    "What is machine learning?",
    "Recommend a book for a long flight.",
    "How many legs does a spider have?",
]


@dataclass
class Target:
    name: str
    base_url: str  # .../v1
    api_key: str | None


@dataclass
class RunStats:
    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    tokens: int = 0
    wall: float = 0.0
    errors: int = 0


def client_session() -> aiohttp.ClientSession:
    """The benchmark's HTTP client: no connection limit, no proxies from the environment,
    10 minutes per request."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=600), trust_env=False
    )


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[str]:
    async for line in response.content:
        yield line.decode().rstrip("\r\n")


async def one_request(
    http: aiohttp.ClientSession, target: Target, model: str, prompt: str, max_tokens: int, stream: bool, stats: RunStats
) -> None:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
    started = time.perf_counter()
    try:
        async with http.post(target.base_url + "/chat/completions", json=body, headers=headers) as response:
            response.raise_for_status()
            if not stream:
                stats.tokens += (await response.json())["usage"]["completion_tokens"]
            else:
                first, usage = await read_chat_stream(_lines(response))
                stats.tokens += int(usage.get("completion_tokens", 0))
                if first is not None:
                    stats.ttfts.append(first - started)
    except (TimeoutError, aiohttp.ClientError):
        stats.errors += 1
        return
    stats.latencies.append(time.perf_counter() - started)


async def run_batch(
    http: aiohttp.ClientSession,
    target: Target,
    model: str,
    requests: int,
    concurrency: int,
    max_tokens: int,
    stream: bool,
) -> RunStats:
    stats = RunStats()
    queue = [PROMPTS[i % len(PROMPTS)] for i in range(requests)]
    semaphore = asyncio.Semaphore(concurrency)

    async def worker(prompt: str) -> None:
        async with semaphore:
            await one_request(http, target, model, prompt, max_tokens, stream, stats)

    started = time.perf_counter()
    await asyncio.gather(*(worker(p) for p in queue))
    stats.wall = time.perf_counter() - started
    return stats


async def paired_overhead(
    http: aiohttp.ClientSession, direct: Target, gateway: Target, model: str, pairs: int, stream: bool
) -> dict[str, Any]:
    """One-token requests, direct and through the gateway back to back: the median of the
    paired differences is the gateway's added latency, with vLLM's own noise mostly cancelled."""
    differences: list[float] = []
    direct_s: list[float] = []
    gateway_s: list[float] = []
    for i in range(pairs):
        order = (direct, gateway) if i % 2 == 0 else (gateway, direct)
        timings: dict[str, float] = {}
        for target in order:
            stats = RunStats()
            await one_request(http, target, model, PROMPTS[i % len(PROMPTS)], 1, stream, stats)
            if stats.latencies:
                timings[target.name] = stats.latencies[0]
        if len(timings) == 2:
            direct_s.append(timings[direct.name])
            gateway_s.append(timings[gateway.name])
            differences.append(timings[gateway.name] - timings[direct.name])
    ms = lambda values: {k: (v * 1000 if k != "n" else v) for k, v in summarize(values).items()}  # noqa: E731
    return {
        "stream": stream,
        "pairs": len(differences),
        "added_ms": ms(differences),
        "added_p50_ci95_ms": median_ci(differences, scale=1000),
        "direct_ms": ms(direct_s),
        "gateway_ms": ms(gateway_s),
    }


def describe(stats: list[RunStats]) -> dict[str, Any]:
    latencies = [x for s in stats for x in s.latencies]
    ttfts = [x for s in stats for x in s.ttfts]
    tokens = sum(s.tokens for s in stats)
    wall = sum(s.wall for s in stats)
    return {
        "latency_ms": {k: (v * 1000 if k != "n" else v) for k, v in summarize(latencies).items()},
        "ttft_ms": {k: (v * 1000 if k != "n" else v) for k, v in summarize(ttfts).items()} if ttfts else None,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "completion_tokens": tokens,
        "errors": sum(s.errors for s in stats),
    }


async def bench_gateway(
    direct: Target,
    gateway: Target,
    model: str,
    concurrencies: list[int],
    requests_per_round: int,
    rounds: int,
    max_tokens: int,
    on_progress: Any = None,
    overhead_pairs: int = 200,
) -> dict[str, Any]:
    configs: list[dict[str, Any]] = []
    async with client_session() as http:
        # Warm both paths (connections, vLLM prefix cache) before measuring.
        for target in (direct, gateway):
            await run_batch(http, target, model, 4, 4, max_tokens, False)
        for stream in (False, True):
            for concurrency in concurrencies:
                requests = max(requests_per_round, concurrency * 2)
                runs: dict[str, list[RunStats]] = {direct.name: [], gateway.name: []}
                for round_no in range(rounds):
                    order = (direct, gateway) if round_no % 2 == 0 else (gateway, direct)
                    for target in order:
                        runs[target.name].append(
                            await run_batch(http, target, model, requests, concurrency, max_tokens, stream)
                        )
                        if on_progress:
                            on_progress()
                d, g = describe(runs[direct.name]), describe(runs[gateway.name])
                config = {
                    "stream": stream,
                    "concurrency": concurrency,
                    "requests": requests * rounds,
                    "direct": d,
                    "gateway": g,
                    "ratio": ratios(d, g),
                }
                configs.append(config)
        overhead = [
            await paired_overhead(http, direct, gateway, model, overhead_pairs, stream) for stream in (False, True)
        ]
    return {"model": model, "max_tokens": max_tokens, "rounds": rounds, "configs": configs, "overhead": overhead}


def ratios(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {
        "latency_p50": gateway["latency_ms"]["p50"] / direct["latency_ms"]["p50"],
        "latency_p95": gateway["latency_ms"]["p95"] / direct["latency_ms"]["p95"],
        "throughput": gateway["tokens_per_s"] / direct["tokens_per_s"] if direct["tokens_per_s"] else None,
        "added_p50_ms": gateway["latency_ms"]["p50"] - direct["latency_ms"]["p50"],
    }
    if direct["ttft_ms"] and gateway["ttft_ms"]:
        out["ttft_p50"] = gateway["ttft_ms"]["p50"] / direct["ttft_ms"]["p50"]
        out["added_ttft_p50_ms"] = gateway["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"]
    return out


def plot(result: dict[str, Any], path: str) -> None:
    labels = [f"{'stream' if c['stream'] else 'json'}\nc={c['concurrency']}" for c in result["configs"]]
    fig, (left, right) = figure(2, 11, 4)
    xs = range(len(labels))
    width = 0.38
    for offset, side, color in ((-width / 2, "direct", "#888"), (width / 2, "gateway", "#2a7")):
        left.bar(
            [x + offset for x in xs],
            [c[side]["latency_ms"]["p50"] for c in result["configs"]],
            width,
            label=side,
            color=color,
        )
        right.bar(
            [x + offset for x in xs],
            [c[side]["tokens_per_s"] for c in result["configs"]],
            width,
            label=side,
            color=color,
        )
    left.set_title("p50 latency (ms)")
    right.set_title("throughput (completion tokens/s)")
    for axis in (left, right):
        axis.set_xticks(list(xs), labels)
        axis.legend()
    fig.suptitle(f"gateway vs direct vLLM ({result['model']}, {result['max_tokens']} tokens)")
    save_figure(fig, path)

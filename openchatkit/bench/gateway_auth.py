"""What virtual keys and rate limits add to a request: the same gateway called with its
plain static key (no limits) and with a virtual key that has rpm, tpm and concurrency
limits (key cache lookup, prompt count for the token reservation, one Redis round trip to
admit, one after the answer to settle).

Pairs of one-token requests, plain and limited back to back in alternating order, so the
machine's drift cancels; at concurrency c, c workers each run their pairs at once. The
median of the paired differences is the added latency, with a bootstrap 95 % interval
(``added_p50_ci95_ms``)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from openchatkit.bench.gateway import PROMPTS, RunStats, Target, client_session, one_request
from openchatkit.bench.results import median_ci, summarize


async def _pairs(
    http: aiohttp.ClientSession, plain: Target, limited: Target, model: str, count: int, stream: bool, offset: int
) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for i in range(count):
        order = (plain, limited) if (i + offset) % 2 == 0 else (limited, plain)
        timings: dict[str, float] = {}
        for target in order:
            stats = RunStats()
            await one_request(http, target, model, PROMPTS[(i + offset) % len(PROMPTS)], 1, stream, stats)
            if stats.latencies:
                timings[target.name] = stats.latencies[0]
        if len(timings) == 2:
            out.append((timings[plain.name], timings[limited.name]))
    return out


async def auth_overhead(
    plain: Target, limited: Target, model: str, concurrencies: list[int], pairs: int, stream: bool = False
) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with client_session() as http:
        await _pairs(http, plain, limited, model, 8, stream, 0)  # warm connections and caches
        for concurrency in concurrencies:
            per_worker = max(1, pairs // concurrency)
            batches = await asyncio.gather(
                *(_pairs(http, plain, limited, model, per_worker, stream, w) for w in range(concurrency))
            )
            timed = [pair for batch in batches for pair in batch]
            added = [b - a for a, b in timed]
            ms = lambda values: {k: (v * 1000 if k != "n" else v) for k, v in summarize(values).items()}  # noqa: E731
            results.append({
                "concurrency": concurrency,
                "stream": stream,
                "pairs": len(timed),
                "added_ms": ms(added),
                "added_p50_ci95_ms": median_ci(added, scale=1000),
                "plain_ms": ms([a for a, _ in timed]),
                "limited_ms": ms([b for _, b in timed]),
            })  # fmt: skip
    return results

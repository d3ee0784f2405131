"""Limiter metrics. Labels carry key ids, never keys."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RATE_LIMITED = Counter(
    "openchatkit_gateway_rate_limited_total",
    "Requests refused with 429, by key id and limit (requests, tokens, concurrency, budget).",
    ["key_id", "limit"],
)
KEY_REQUESTS = Counter("openchatkit_gateway_key_requests_total", "Admitted API requests by key id.", ["key_id"])
KEY_TOKENS = Counter(
    "openchatkit_gateway_key_tokens_total",
    "Tokens used by key id (in: prompt, out: completion).",
    ["key_id", "direction"],
)
LIMITER_SECONDS = Histogram(
    "openchatkit_gateway_limiter_seconds",
    "Time of one limiter round trip to Redis (admit: before the request, settle: after it).",
    ["op"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
)
LIMITER_UNAVAILABLE = Counter(
    "openchatkit_gateway_limiter_unavailable_total",
    "Limiter calls that failed because Redis did not answer, by failure mode (fail_open: served anyway).",
    ["mode", "op"],
)

"""One ``/v1`` request's dealings with the limiter: admission (429 when over a limit),
the ``x-ratelimit-*`` headers of its answer, and the settlement once it is over."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from gateway.keys.records import Principal
from gateway.limits.headers import duration, refill_ms
from gateway.limits.limiter import Decision, RateLimiter
from gateway.limits.metrics import KEY_REQUESTS, KEY_TOKENS, RATE_LIMITED
from gateway.upstream import Generation
from services.errors import RateLimitError

logger = logging.getLogger(__name__)

_settling: set[asyncio.Task[None]] = set()


class Ticket:
    def __init__(self, principal: Principal, limiter: RateLimiter | None) -> None:
        self.principal = principal
        self.limiter = limiter
        self.decision: Decision | None = None
        self.admitted = False
        self.reserved = 0
        self.prompt_tokens = 0
        self.slot: str | None = None
        self.usage: dict[str, Any] | None = None
        self.usage_source: Generation | None = None
        self.streamed_chunks = 0
        self.streaming = False
        self._finished = False

    async def admit(self, tokens: int = 0, prompt_tokens: int = 0, response_id: str | None = None) -> None:
        """Take the request (and ``tokens``) from the key's limits; RateLimitError when over."""
        if self.admitted:
            return
        slot = uuid.uuid4().hex if self.principal.max_parallel else None
        if self.limiter is not None:
            self.decision = await self.limiter.admit(self.principal, tokens, slot or "", response_id)
        if self.decision is not None and self.decision.refused:
            RATE_LIMITED.labels(self.principal.key_id, self.decision.refused).inc()
            raise self._refusal(self.decision, tokens)
        self.admitted = True
        self.reserved, self.prompt_tokens = tokens, prompt_tokens
        self.slot = slot if self.decision is not None else None
        KEY_REQUESTS.labels(self.principal.key_id).inc()

    def _refusal(self, decision: Decision, tokens: int) -> RateLimitError:
        p = self.principal
        kind, wait = decision.refused, decision.retry_ms
        if kind == "requests":
            message, error_type = f"Rate limit reached: {p.rpm} requests per minute.", "requests"
        elif kind == "tokens" and wait < 0:
            message, error_type = (
                f"Request too large: it needs up to {tokens} tokens, the limit is {p.tpm} tokens per minute. "
                "Lower max_tokens or shorten the messages.",
                "tokens",
            )
        elif kind == "tokens":
            message, error_type = (
                f"Rate limit reached: {p.tpm} tokens per minute; this request needs up to {tokens}.",
                "tokens",
            )
        elif kind == "concurrency":
            message, error_type = f"Too many requests in flight: the limit is {p.max_parallel} at once.", "requests"
        else:
            message = f"Token budget used up: {p.budget_tokens} tokens per {p.budget_period}."
            headers = _retry_headers(wait)
            return RateLimitError(message, code="insufficient_quota", error_type="insufficient_quota", headers=headers)
        return RateLimitError(
            message + f" Key {p.key_id}.",
            code="rate_limit_exceeded",
            error_type=error_type,
            headers=_retry_headers(wait) if wait >= 0 else None,
        )

    def headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers for the limits this key has."""
        d, p = self.decision, self.principal
        if d is None:
            return []
        out: list[tuple[bytes, bytes]] = []
        if p.rpm:
            out += [
                (b"x-ratelimit-limit-requests", str(p.rpm).encode()),
                (b"x-ratelimit-remaining-requests", str(max(0, math.floor(d.requests_left))).encode()),
                (b"x-ratelimit-reset-requests", duration(refill_ms(d.requests_left, p.rpm)).encode()),
            ]
        if p.tpm:
            out += [
                (b"x-ratelimit-limit-tokens", str(p.tpm).encode()),
                (b"x-ratelimit-remaining-tokens", str(max(0, math.floor(d.tokens_left))).encode()),
                (b"x-ratelimit-reset-tokens", duration(refill_ms(d.tokens_left, p.tpm)).encode()),
            ]
        return out

    async def count_stream(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """Pass a stream through, counting events (the usage estimate if it is cut short)."""
        self.streaming = True
        async with aclosing(stream):  # type: ignore[type-var]  # an async generator; closing this closes the relay (and the upstream request)
            async for chunk in stream:
                self.streamed_chunks += 1
                yield chunk

    def used_tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens: from the upstream's usage, else estimated from what was
        streamed (one token per event), else nothing (a failed request costs nothing)."""
        usage = self.usage or (
            self.usage_source.usage_of() if self.usage_source and self.usage_source.usage_of else None
        )
        usage = usage or {}
        if usage.get("total_tokens") is not None or usage.get("completion_tokens") is not None:
            return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if self.streaming and self.streamed_chunks > 0:
            return self.prompt_tokens, max(0, self.streamed_chunks - 1)
        return 0, 0

    def finish(self) -> None:
        """The answer is out (or the client left): settle in the background."""
        if self._finished or not self.admitted:
            return
        self._finished = True
        prompt, completion = self.used_tokens()
        if prompt:
            KEY_TOKENS.labels(self.principal.key_id, "in").inc(prompt)
        if completion:
            KEY_TOKENS.labels(self.principal.key_id, "out").inc(completion)
        if self.limiter is None or self.decision is None:
            return
        p = self.principal
        if not (p.tpm or self.slot or (p.budget_tokens and p.budget_period)):
            return  # requests-per-minute only: the admission took all there was to take
        task = asyncio.get_running_loop().create_task(
            self.limiter.settle(self.principal, self.reserved, prompt + completion, self.slot)
        )
        _settling.add(task)
        task.add_done_callback(_settling.discard)


def _retry_headers(wait_ms: int) -> dict[str, str]:
    return {"retry-after": str(max(1, math.ceil(wait_ms / 1000))), "retry-after-ms": str(max(1, wait_ms))}


async def drain_settlements(timeout_s: float = 5.0) -> None:
    """Wait (briefly) for settlements still running, at shutdown."""
    if _settling:
        await asyncio.wait(list(_settling), timeout=timeout_s)

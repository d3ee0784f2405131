"""The limiter's Lua scripts against a real Redis: atomic admission under a burst,
token reservations corrected by usage, budgets, and the header durations."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as redis

from gateway.config import LimitSettings
from gateway.keys.records import Principal
from gateway.limits.headers import duration
from gateway.limits.limiter import RateLimiter
from gateway.limits.scripts import SETTLE
from gateway.limits.ticket import Ticket, drain_settlements
from services.errors import RateLimitError
from services.redis_scripts import PipelinedScript
from tests.support.feedback import SHARED_REDIS_URL


@pytest.fixture()
async def limiter() -> RateLimiter:
    prefix = f"test:rl:{uuid.uuid4().hex[:8]}"
    limiter = RateLimiter(LimitSettings(redis_url=SHARED_REDIS_URL, prefix=prefix))
    try:
        await limiter.ping()
    except redis.RedisError as exc:
        pytest.skip(f"NO REDIS at {SHARED_REDIS_URL}: {exc}")
    yield limiter
    keys = [k async for k in limiter.redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await limiter.redis.delete(*keys)
    await limiter.aclose()


def principal(**limits: object) -> Principal:
    return Principal(key_id="key_" + uuid.uuid4().hex[:16], **limits)  # type: ignore[arg-type]


def test_durations_look_like_openai_s() -> None:
    assert [duration(ms) for ms in (0, 17.2, 999, 1000, 1500, 59_999, 60_000, 360_000, 3_723_000)] == [
        "0ms", "18ms", "999ms", "1s", "1.5s", "59.999s", "1m0s", "6m0s", "1h2m3s",
    ]  # fmt: skip


async def test_a_burst_never_gets_more_slots_than_the_limit(limiter: RateLimiter) -> None:
    p = principal(max_parallel=5)
    results = await asyncio.gather(*(limiter.admit(p, 0, uuid.uuid4().hex, None) for _ in range(60)))
    admitted = [r for r in results if r is not None and not r.refused]
    assert len(admitted) == 5
    assert {r.refused for r in results if r is not None and r.refused} == {"concurrency"}


async def test_requests_bucket_and_retry_time(limiter: RateLimiter) -> None:
    p = principal(rpm=3)
    decisions = [await limiter.admit(p, 0, "", None) for _ in range(4)]
    assert [d.refused for d in decisions if d] == ["", "", "", "requests"]
    assert 15_000 < decisions[-1].retry_ms <= 20_000  # one request comes back every 20 s


async def test_reservation_is_corrected_by_usage_and_budget_counts_actual_use(limiter: RateLimiter) -> None:
    p = principal(tpm=1000, budget_tokens=150, budget_period="day")
    first = Ticket(p, limiter)
    await first.admit(tokens=600, prompt_tokens=100)
    assert first.decision is not None and first.decision.tokens_left == pytest.approx(400, abs=5)
    first.usage = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    first.finish()
    await drain_settlements()
    second = Ticket(p, limiter)
    await second.admit(tokens=500, prompt_tokens=100)  # fits only because 480 came back
    assert second.decision is not None and second.decision.budget_used == 120
    second.usage = {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140}
    second.finish()
    await drain_settlements()
    with pytest.raises(RateLimitError) as over:
        await Ticket(p, limiter).admit(tokens=10)
    assert over.value.error_type == "insufficient_quota" and over.value.code == "insufficient_quota"
    assert int(over.value.headers["retry-after"]) <= 86400  # type: ignore[index]


async def test_too_large_for_the_limit_and_token_refusal(limiter: RateLimiter) -> None:
    p = principal(tpm=100)
    with pytest.raises(RateLimitError) as huge:
        await Ticket(p, limiter).admit(tokens=101)
    assert huge.value.error_type == "tokens" and huge.value.headers is None  # retrying cannot help
    await Ticket(p, limiter).admit(tokens=80)
    with pytest.raises(RateLimitError) as later:
        await Ticket(p, limiter).admit(tokens=50)
    assert later.value.error_type == "tokens" and later.value.code == "rate_limit_exceeded"
    assert 1 <= int(later.value.headers["retry-after"]) <= 19  # type: ignore[index]


async def test_a_failed_request_refunds_everything_and_frees_its_slot(limiter: RateLimiter) -> None:
    p = principal(tpm=1000, max_parallel=1)
    failed = Ticket(p, limiter)
    await failed.admit(tokens=900, prompt_tokens=50)
    with pytest.raises(RateLimitError):
        await Ticket(p, limiter).admit(tokens=10)  # the slot is taken
    failed.finish()  # no usage, nothing streamed: it cost nothing
    await drain_settlements()
    after = Ticket(p, limiter)
    await after.admit(tokens=900)
    assert after.decision is not None and after.decision.tokens_left > 0


async def test_settlements_of_a_burst_share_one_round_trip(
    limiter: RateLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settlements made in one event-loop tick share one pipeline; every slot and unused token
    still comes back (also when Redis has forgotten the settle script: it is loaded and resent)."""
    pipelines = 0
    make_pipeline = limiter.redis.pipeline

    def counting_pipeline(*args: object, **kwargs: object) -> object:
        nonlocal pipelines
        pipelines += 1
        return make_pipeline(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(limiter.redis, "pipeline", counting_pipeline)
    limiter._settle = PipelinedScript(limiter.redis, SETTLE + f"\n-- unknown to Redis {uuid.uuid4().hex}")
    p = principal(tpm=100_000, max_parallel=40, budget_tokens=10**9, budget_period="day")
    tickets = [Ticket(p, limiter) for _ in range(40)]
    await asyncio.gather(*(t.admit(tokens=1000, prompt_tokens=10) for t in tickets))
    assert pipelines == 0  # admissions go one by one
    assert sorted(t.decision.in_flight for t in tickets if t.decision) == list(range(1, 41))
    with pytest.raises(RateLimitError):
        await Ticket(p, limiter).admit(tokens=1)  # every slot is taken
    for t in tickets:
        t.usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        t.finish()
    await drain_settlements()
    assert pipelines == 2  # the settlements, sent again after loading the script
    after = Ticket(p, limiter)
    await after.admit(tokens=1000)
    assert after.decision is not None and after.decision.in_flight == 1  # all 40 slots came back
    assert after.decision.budget_used == 40 * 15
    # 39,000 unused tokens came back (the bucket also refills 1,667 a second, never past 100,000)
    assert after.decision.tokens_left >= 100_000 - 40 * 15 - 1000 - 1


async def test_redis_away_fail_open_and_fail_closed() -> None:
    from tests.support.processes import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    p = principal(rpm=1)
    open_limiter = RateLimiter(LimitSettings(redis_url=nowhere, failure_mode="fail_open"))
    assert await open_limiter.admit(p, 0, "", "chatcmpl-x") is None  # served without limits
    closed = RateLimiter(LimitSettings(redis_url=nowhere, failure_mode="fail_closed"))
    with pytest.raises(Exception) as refused:
        await closed.admit(p, 0, "", None)
    assert getattr(refused.value, "status_code", None) == 503
    await open_limiter.aclose()
    await closed.aclose()

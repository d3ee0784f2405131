"""Per-key limits through real gateway processes (the openai SDK as the client): rpm with
429 + retry-after that the SDK's retry honours, tokens counted from streamed usage, a
disconnect refunding its reservation, concurrency bursts, one combined limit for two
gateways sharing one Redis, and Redis killed mid-test (fail_open / fail_closed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import Gateway, start_gateway
from tests.support.feedback import SHARED_REDIS_URL, PrivateRedis, wait_until
from tests.support.keys import bearer, create_key, keys_env
from tests.support.processes import free_port

HI = [{"role": "user", "content": "Hi"}]


def sdk(gateway: Gateway, key: str, retries: int = 0) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=retries, timeout=300)


def remaining_tokens(gateway: Gateway, key: str) -> int:
    answer = httpx.get(gateway.url + "/v1/models", headers=bearer(key), timeout=30)
    return int(answer.headers["x-ratelimit-remaining-tokens"])


@pytest.mark.vllm
def test_rpm_one_429_with_headers_then_the_sdk_retry_waits_and_succeeds(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = gateway_factory(env=keys_env(tmp_path, SHARED_REDIS_URL))
    model = gateway.client().models.list().data[0].id
    key = create_key(gateway.url, rpm=4)["key"]
    statuses, last = [], None
    for _ in range(5):
        last = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": model, "messages": HI, "max_tokens": 1},
            headers=bearer(key),
            timeout=300,
        )
        statuses.append(last.status_code)
    assert statuses == [200, 200, 200, 200, 429]
    assert last is not None
    error = last.json()["error"]
    assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
    assert last.headers["x-ratelimit-limit-requests"] == "4" and last.headers["x-ratelimit-remaining-requests"] == "0"
    retry_after = int(last.headers["retry-after"])
    assert 1 <= retry_after <= 15 and int(last.headers["retry-after-ms"]) <= retry_after * 1000
    assert last.headers["x-ratelimit-reset-requests"].endswith("s") and last.headers["x-request-id"]

    with pytest.raises(openai.RateLimitError):
        sdk(gateway, key).chat.completions.create(model=model, messages=HI, max_tokens=1)
    started = time.monotonic()
    raw = sdk(gateway, key, retries=1).chat.completions.with_raw_response.create(model=model, messages=HI, max_tokens=1)
    assert raw.http_response.status_code == 200 and raw.parse().choices
    assert time.monotonic() - started >= 5  # it waited for the bucket, as retry-after-ms said
    assert raw.headers["x-ratelimit-limit-requests"] == "4" and raw.headers["x-request-id"]


@pytest.mark.vllm
def test_tpm_counts_streamed_usage_and_refuses_when_over(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = gateway_factory(env=keys_env(tmp_path, SHARED_REDIS_URL))
    model = gateway.client().models.list().data[0].id
    key = create_key(gateway.url, tpm=600)["key"]
    client = sdk(gateway, key)
    with client.chat.completions.with_streaming_response.create(
        model=model, messages=[{"role": "user", "content": "Say hello."}], max_tokens=300, stream=True,
        stream_options={"include_usage": True},
    ) as response:  # fmt: skip
        assert response.headers["x-ratelimit-limit-tokens"] == "600"
        reserved_left = int(response.headers["x-ratelimit-remaining-tokens"])
        chunks = list(response.parse())
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens > 0
    assert reserved_left <= 600 - 300  # prompt + max_tokens were reserved up front
    # After the stream, the key is charged its real usage, not the reservation.
    left = remaining_tokens(gateway, key)
    refill = 600 / 60 * 30  # at most 30 s of refill could have passed on a slow machine
    assert 600 - usage.total_tokens - 5 <= left <= 600 - usage.total_tokens + refill
    # Without include_usage the gateway still counts the stream (it asks vLLM for usage itself).
    chunks = list(client.chat.completions.create(
        model=model, messages=HI, max_tokens=250, stream=True, extra_body={"ignore_eos": True}
    ))  # fmt: skip
    assert all(c.usage is None for c in chunks)
    left_after = remaining_tokens(gateway, key)
    assert left_after < left - 200 + refill  # the 250 streamed tokens were charged
    # The next request fits the limit but not what is left: refused, with the time to wait.
    with pytest.raises(openai.RateLimitError) as over:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Say hello."}],
            max_tokens=600 - usage.prompt_tokens - 2,
        )  # fmt: skip
    body = over.value.body
    assert isinstance(body, dict) and body["type"] == "tokens" and body["code"] == "rate_limit_exceeded"
    assert 1 <= int(over.value.response.headers["retry-after"]) <= 60


@pytest.mark.vllm
def test_tpm_counts_streamed_completions_usage(gateway_factory: Callable[..., Gateway], tmp_path: Path) -> None:
    gateway = gateway_factory(env=keys_env(tmp_path, SHARED_REDIS_URL))
    model = gateway.client().models.list().data[0].id
    key = create_key(gateway.url, tpm=1000)["key"]
    client = sdk(gateway, key)
    before = remaining_tokens(gateway, key)
    # No include_usage: the gateway asks vLLM for usage itself and keeps the usage chunk from the client.
    chunks = list(client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=250, stream=True, extra_body={"ignore_eos": True}
    ))  # fmt: skip
    assert all(c.usage is None for c in chunks) and "".join(c.choices[0].text for c in chunks if c.choices)
    refill = 1000 / 60 * 30  # at most 30 s of refill could have passed on a slow machine
    assert remaining_tokens(gateway, key) < before - 200 + refill  # the 250 streamed tokens were charged
    with_usage = list(client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=4, stream=True, stream_options={"include_usage": True}
    ))  # fmt: skip
    assert with_usage[-1].usage is not None and with_usage[-1].usage.completion_tokens == 4


@pytest.mark.vllm
def test_a_client_that_leaves_mid_stream_gets_the_unused_reservation_back(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = gateway_factory(env=keys_env(tmp_path, SHARED_REDIS_URL))
    model = gateway.client().models.list().data[0].id
    key = create_key(gateway.url, tpm=1000, max_parallel=1)["key"]
    body = {"model": model, "messages": HI, "max_tokens": 900, "stream": True, "ignore_eos": True}
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, headers=bearer(key), timeout=300
    ) as response:
        assert response.status_code == 200
        reserved_left = int(response.headers["x-ratelimit-remaining-tokens"])
        lines = response.iter_lines()
        for _ in range(6):
            next(lines)
    assert reserved_left < 100  # 900 + the prompt were taken
    # The slot is freed and all but what was streamed comes back (not just the minute's refill).
    wait_until(lambda: remaining_tokens(gateway, key) > 850, 60, "the unused reservation to be refunded")
    answer = sdk(gateway, key).chat.completions.create(model=model, messages=HI, max_tokens=2)
    assert answer.choices


@pytest.mark.vllm
async def test_two_gateways_sharing_redis_enforce_one_limit(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    env = keys_env(tmp_path, SHARED_REDIS_URL)
    first, second = gateway_factory(env=env), gateway_factory(env=env)
    model = first.client().models.list().data[0].id
    rpm_key = create_key(first.url, rpm=4)["key"]
    async with httpx.AsyncClient(timeout=60) as http:
        answers = [await http.get(g.url + "/v1/models", headers=bearer(rpm_key)) for g in (first, second) * 3]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429, 429]

    parallel_key = create_key(first.url, max_parallel=2)["key"]
    clients = [
        openai.AsyncOpenAI(base_url=g.url + "/v1", api_key=parallel_key, max_retries=0, timeout=300)
        for g in (first, second)
    ]

    async def one(i: int) -> str:
        try:
            await clients[i % 2].chat.completions.create(
                model=model, messages=HI, max_tokens=48, extra_body={"ignore_eos": True}
            )
            return "ok"
        except openai.RateLimitError as exc:
            assert exc.body["type"] == "requests"  # type: ignore[index]
            return "429"

    outcomes = await asyncio.gather(*(one(i) for i in range(10)))
    assert 1 <= outcomes.count("ok") <= 2, outcomes  # never more than the limit in flight, across both
    assert outcomes.count("429") >= 8
    for client in clients:
        await client.close()


def test_redis_killed_mid_test_fail_open_and_fail_closed(log_dir: Path, tmp_path: Path) -> None:
    redis_server = PrivateRedis(tmp_path / "redis").start()
    upstream = [{"url": f"http://127.0.0.1:{free_port()}/v1"}]
    env = keys_env(tmp_path, redis_server.url, GATEWAY_LIMITS__LOG_INTERVAL_S="3600")
    open_gw = start_gateway(log_dir, upstream, env, wait_ready=False)
    closed_gw = start_gateway(
        log_dir, upstream, {**env, "GATEWAY_LIMITS__FAILURE_MODE": "fail_closed"}, wait_ready=False
    )
    try:
        key = create_key(open_gw.url, rpm=1000)["key"]
        for gateway in (open_gw, closed_gw):
            ok = httpx.get(gateway.url + "/v1/models", headers=bearer(key), timeout=30)
            assert ok.status_code == 200 and ok.headers["x-ratelimit-limit-requests"] == "1000"
        redis_server.kill()
        for _ in range(3):
            served = httpx.get(open_gw.url + "/v1/models", headers=bearer(key), timeout=30)
            assert served.status_code == 200 and "x-ratelimit-limit-requests" not in served.headers
            refused = httpx.get(closed_gw.url + "/v1/models", headers=bearer(key), timeout=30)
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "rate_limiter_unavailable"
        metrics = httpx.get(open_gw.url + "/metrics").text
        assert 'openchatkit_gateway_limiter_unavailable_total{mode="fail_open",op="admit"} 3.0' in metrics
        log = open_gw.process.log_path.read_text()
        assert log.count("rate limiter: Redis unavailable") == 1  # once per interval, not per request
        redis_server.start()  # back on the same port: limits resume
        wait_until(
            lambda: (
                "x-ratelimit-limit-requests"
                in httpx.get(closed_gw.url + "/v1/models", headers=bearer(key), timeout=30).headers
            ),
            30,
            "the limiter to reconnect",
        )
    finally:
        open_gw.process.stop()
        closed_gw.process.stop()
        redis_server.stop()

"""One client must not take the gateway down or see its internals: hostile and careless input
against real processes (gateway, vLLM with SmolLM2, the moderation service, Redis)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from tests.conftest import ChatStack, Gateway, start_gateway
from tests.support.feedback import SHARED_REDIS_URL, unique
from tests.support.moderation import ModerationService
from tests.support.processes import free_port

pytestmark = pytest.mark.vllm
GatewayFactory = Callable[..., Gateway]
JSON = {"content-type": "application/json"}


def post_raw(gateway: Gateway, path: str, body: bytes, client: httpx.Client | None = None) -> httpx.Response:
    headers = {**gateway.headers, **JSON}
    if client is not None:
        return client.post(gateway.url + path, content=body, headers=headers)
    return httpx.post(gateway.url + path, content=body, headers=headers, timeout=120)


def assert_openai_error(answer: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("invalid_request_error" if status < 500 else error["type"])
    if code is not None:
        assert error["code"] == code, error
    return error


# --- availability: over-long input is a cheap 400 before moderation or retrieval run


@pytest.mark.parametrize("size", [200_000, 3_900_000])
def test_text_that_cannot_fit_is_400_before_moderation(gateway_factory: GatewayFactory, size: int) -> None:
    """Moderation points at a port nobody listens on and fails closed: any call to it would be a 503."""
    gateway = gateway_factory(
        {
            "GATEWAY_MODERATION__ENABLED": "true",
            "GATEWAY_MODERATION__URL": f"http://127.0.0.1:{free_port()}",
            "GATEWAY_MODERATION__FAIL_MODE": "closed",
        }
    )
    body = {"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "word " * (size // 5)}]}
    answer = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers, timeout=120)
    assert_openai_error(answer, 400, "context_length_exceeded")


def test_a_huge_old_turn_is_dropped_and_the_latest_answered(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    answer = client.chat.completions.create(
        model=chat_stack.chat.model,
        messages=[
            {"role": "user", "content": "x " * 500_000},
            {"role": "assistant", "content": "That is a lot of x."},
            {"role": "user", "content": "Say hello."},
        ],
        max_tokens=8,
        temperature=0,
    )
    assert answer.choices[0].message.content


# --- invalid text and JSON: 400 at validation, never a 500, never a broken connection

SURROGATE_BODIES = {
    "/v1/chat/completions": [
        b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "hi \\ud800"}]}',
        b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "a \\udfff"},'
        b' {"role": "assistant", "content": "b"}, {"role": "user", "content": "fine"}]}',
    ],
    "/v1/completions": [b'{"model": "smollm2-135m-instruct", "prompt": "\\ud800 Step 1:"}'],
    "/v1/moderations": [b'{"input": "\\ud800"}', b'{"input": [{"type": "text", "text": "\\udbff"}]}'],
}


@pytest.mark.parametrize("path,body", [(p, b) for p, bodies in SURROGATE_BODIES.items() for b in bodies])
def test_lone_surrogates_are_400(chat_stack: ChatStack, path: str, body: bytes) -> None:
    error = assert_openai_error(post_raw(chat_stack.gateway, path, body), 400, "invalid_json")
    assert "surrogate" in error["message"]


def test_a_lone_surrogate_does_not_fail_other_users(chat_stack: ChatStack) -> None:
    import asyncio

    gateway = chat_stack.gateway
    bad = b'{"model": "smollm2-135m-instruct", "messages": [{"role": "user", "content": "\\ud800"}]}'

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=300, headers=gateway.headers) as client:
            good = {"model": chat_stack.chat.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
            calls = [client.post(gateway.url + "/v1/chat/completions", content=bad, headers=JSON)]
            calls += [client.post(gateway.url + "/v1/chat/completions", json=good) for _ in range(3)]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(run()) == [400, 200, 200, 200]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions", "/v1/moderations"])
def test_deeply_nested_json_is_400_and_the_connection_survives(chat_stack: ChatStack, path: str) -> None:
    deep = b'{"model": "smollm2-135m-instruct", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with httpx.Client(timeout=120) as client:
        assert_openai_error(post_raw(chat_stack.gateway, path, deep, client), 400, "invalid_json")
        models = client.get(chat_stack.gateway.url + "/v1/models", headers=chat_stack.gateway.headers)
        assert models.status_code == 200
    assert "Traceback" not in chat_stack.gateway.process.log_tail(300)


# --- bounded work per request on /v1/completions


def test_completions_bound_prompts_and_choices(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=chat_stack.chat.model, prompt=["Hi"] * 33, max_tokens=1)
    assert caught.value.code == "too_many_prompts"
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=chat_stack.chat.model, prompt=["Hi"] * 8, n=9, max_tokens=1)
    assert caught.value.code == "too_many_choices"
    ok = client.completions.create(model=chat_stack.chat.model, prompt=["Hi", "Yo"], n=2, max_tokens=1)
    assert len(ok.choices) == 4


# --- clean errors: the right status and type, nothing internal


def test_options_on_an_api_route_is_a_client_error(chat_stack: ChatStack) -> None:
    answer = httpx.request("OPTIONS", chat_stack.gateway.url + "/v1/chat/completions", timeout=60)
    assert_openai_error(answer, 405)


@pytest.mark.parametrize(
    "extra,messages",
    [
        ({"seed": 1e30}, [{"role": "user", "content": "Hi"}]),
        ({}, [{"role": "user", "content": None}]),
        ({}, [{"role": "user", "content": [{"type": "mystery", "text": "Hi"}]}]),
        ({"logprobs": True, "top_logprobs": 10**6}, [{"role": "user", "content": "Hi"}]),
    ],
)
def test_invalid_fields_are_openai_400s(chat_stack: ChatStack, extra: dict[str, Any], messages: list[Any]) -> None:
    body = {"model": chat_stack.chat.model, "messages": messages, "max_tokens": 2, **extra}
    answer = httpx.post(
        chat_stack.gateway.url + "/v1/chat/completions", json=body, headers=chat_stack.gateway.headers, timeout=120
    )
    error = assert_openai_error(answer, 400)
    assert error["code"] is None or not error["code"].isdigit(), error
    assert "pydantic" not in error["message"] and "input_value" not in error["message"], error
    assert len(error["message"]) < 400, error


def test_model_cards_do_not_show_server_paths(chat_stack: ChatStack) -> None:
    cards = httpx.get(chat_stack.gateway.url + "/v1/models", headers=chat_stack.gateway.headers, timeout=60).json()
    text = json.dumps(cards)
    assert str(Path.home()) not in text and "/.cache/" not in text, text
    assert all(card["root"] == card["id"] for card in cards["data"])


def test_a_dead_upstream_is_named_without_its_address(log_dir: Path) -> None:
    port = free_port()
    gateway = start_gateway(log_dir, [{"url": f"http://127.0.0.1:{port}/v1"}], wait_ready=False)
    try:
        answer = httpx.post(
            gateway.url + "/v1/chat/completions",
            json={"model": "anything", "messages": [{"role": "user", "content": "Hi"}]},
            headers=gateway.headers,
            timeout=60,
        )
    finally:
        gateway.process.stop()
    assert answer.status_code == 503, answer.text
    message = answer.json()["error"]["message"]
    assert str(port) not in message and "127.0.0.1" not in message and "Errno" not in message, message


# --- streamed per-token fields survive moderation's hold-back


def _stream(client: openai.OpenAI, model: str, **kwargs: Any) -> dict[str, Any]:
    """Text, logprob tokens and usage per choice, from a streamed answer."""
    texts: dict[int, str] = {}
    tokens: dict[int, list[str]] = {}
    usage = None
    for chunk in client.chat.completions.create(model=model, stream=True, **kwargs):
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.logprobs is not None and choice.logprobs.content:
                tokens.setdefault(choice.index, []).extend(t.token for t in choice.logprobs.content)
    return {"texts": texts, "tokens": tokens, "usage": usage}


def test_streamed_logprobs_are_kept_when_moderation_holds_text_back(
    chat_stack: ChatStack, gateway_factory: GatewayFactory, moderation: ModerationService
) -> None:
    gateway = gateway_factory({"GATEWAY_MODERATION__ENABLED": "true", "GATEWAY_MODERATION__URL": moderation.url})
    direct = openai.OpenAI(base_url=chat_stack.chat.v1, api_key="unused", max_retries=0)
    request: dict[str, Any] = {
        "messages": [{"role": "user", "content": "Describe a sunny day at the beach in three sentences."}],
        "max_tokens": 40,
        "temperature": 0.8,
        "seed": 7,  # n=2 needs sampling; a seed makes vLLM's answer repeatable
        "logprobs": True,
        "top_logprobs": 2,
        "n": 2,
        "stream_options": {"include_usage": True},
    }
    expected = _stream(direct, chat_stack.chat.model, **request)
    got = _stream(gateway.client(), chat_stack.chat.model, **request)
    assert got["texts"] == expected["texts"]
    for index, text in expected["texts"].items():
        assert got["tokens"][index] == expected["tokens"][index], f"choice {index}"
        assert len(got["tokens"][index]) >= len(text.split()), "every token's entry is there"
    assert got["usage"] == expected["usage"]


# --- an aborted stream is recorded as aborted


def test_an_aborted_stream_is_recorded_as_aborted(chat_stack: ChatStack, gateway_factory: GatewayFactory) -> None:
    stream_name = unique("test:aborted")
    gateway = gateway_factory(
        {"GATEWAY_FEEDBACK__REDIS_URL": SHARED_REDIS_URL, "GATEWAY_FEEDBACK__STREAM": stream_name}
    )
    store = redis.Redis.from_url(SHARED_REDIS_URL)
    try:
        stream = gateway.client().chat.completions.create(
            model=chat_stack.chat.model,
            messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
            max_tokens=400,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        for i, _ in enumerate(stream):
            if i == 2:
                break
        stream.close()
        finished = gateway.client().chat.completions.create(
            model=chat_stack.chat.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4
        )
        turns: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + 120
        while len(turns) < 2 and time.monotonic() < deadline:
            for _, fields in store.xrange(stream_name):
                data = json.loads(fields[b"data"])
                turns[data["response_id"]] = data
            time.sleep(0.2)
        assert finished.id in turns and turns[finished.id]["aborted"] is False
        aborted = [t for t in turns.values() if t["response_id"] != finished.id]
        assert len(aborted) == 1 and aborted[0]["aborted"] is True, turns
    finally:
        store.delete(stream_name)

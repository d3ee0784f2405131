"""The chat path end to end: openai SDK -> gateway -> vLLM (CPU, SmolLM2)."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import pytest

from tests.conftest import ChatStack

pytestmark = pytest.mark.vllm


def test_ready_was_false_until_the_model_was_up(chat_stack: ChatStack) -> None:
    assert chat_stack.ready_while_model_loading == 503
    ready = httpx.get(chat_stack.gateway.url + "/ready")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_models_lists_the_served_model(chat_stack: ChatStack) -> None:
    models = chat_stack.gateway.client().models.list()
    ids = [m.id for m in models.data]
    assert chat_stack.chat.model in ids
    card = chat_stack.gateway.client().models.retrieve(chat_stack.chat.model)
    assert card.id == chat_stack.chat.model


def test_non_stream_answer(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    answer = client.chat.completions.create(
        model=chat_stack.chat.model,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=32,
    )
    assert answer.choices[0].message.content.strip()
    assert answer.id.startswith("chatcmpl-")
    assert answer.usage is not None and answer.usage.completion_tokens <= 32


def test_stream_answer(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    chunks = list(
        client.chat.completions.create(
            model=chat_stack.chat.model,
            messages=[{"role": "user", "content": "Count from one to five."}],
            max_tokens=24,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    assert len(chunks) > 2
    assert len({c.id for c in chunks}) == 1, "every chunk of one answer carries the same id"
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_every_answer_has_a_unique_id(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    ids = {
        client.chat.completions.create(
            model=chat_stack.chat.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        ).id
        for _ in range(3)
    }
    assert len(ids) == 3


def test_max_tokens_is_honoured(chat_stack: ChatStack) -> None:
    answer = chat_stack.gateway.client().chat.completions.create(
        model=chat_stack.chat.model,
        messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        max_tokens=5,
    )
    assert answer.usage.completion_tokens == 5
    assert answer.choices[0].finish_reason == "length"


def test_stop_is_honoured(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    prompt = [{"role": "user", "content": "List the numbers 1, 2, 3, 4, 5, 6 separated by commas."}]
    free = client.chat.completions.create(model=chat_stack.chat.model, messages=prompt, max_tokens=40, temperature=0)
    text = free.choices[0].message.content
    assert "," in text, f"the model should list with commas: {text!r}"
    stopped = client.chat.completions.create(
        model=chat_stack.chat.model, messages=prompt, max_tokens=40, temperature=0, stop=[","]
    )
    assert stopped.choices[0].finish_reason == "stop"
    assert "," not in stopped.choices[0].message.content
    assert stopped.choices[0].message.content == text.split(",")[0]


def test_n_is_honoured(chat_stack: ChatStack) -> None:
    answer = chat_stack.gateway.client().chat.completions.create(
        model=chat_stack.chat.model,
        messages=[{"role": "user", "content": "Name a fruit."}],
        max_tokens=8,
        n=3,
        temperature=1.0,
    )
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert all(c.message.content for c in answer.choices)


async def test_eight_concurrent_requests_all_succeed(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.async_client()

    async def ask(i: int) -> str:
        answer = await client.chat.completions.create(
            model=chat_stack.chat.model,
            messages=[{"role": "user", "content": f"Say a word about the number {i}."}],
            max_tokens=12,
        )
        return answer.choices[0].message.content

    answers = await asyncio.gather(*(ask(i) for i in range(8)))
    assert len(answers) == 8 and all(a.strip() for a in answers)
    await client.close()


def test_long_history_is_truncated_not_refused(chat_stack: ChatStack) -> None:
    history = [{"role": "system", "content": "You are a concise assistant."}]
    history += [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "word " * 120} for i in range(49)
    ]
    history.append({"role": "user", "content": "What is 2 + 2?"})
    raw = httpx.post(
        chat_stack.gateway.url + "/v1/chat/completions",
        headers=chat_stack.gateway.headers,
        json={"model": chat_stack.chat.model, "messages": history, "max_tokens": 16},
        timeout=120,
    )
    assert raw.status_code == 200, raw.text
    body = raw.json()
    assert body["choices"][0]["message"]["content"]
    # The prompt the model saw fits its 2048-token window with room for the answer.
    assert body["usage"]["prompt_tokens"] <= 2048 - 16
    assert body["usage"]["prompt_tokens"] > 1000, "only as much as needed was dropped"
    # The answer says how many messages were left out (whole turns: a question and its answer).
    dropped = body["truncation"]["dropped_messages"]
    assert 2 <= dropped < 49 and dropped % 2 == 0


def test_latest_turn_too_long_is_a_clear_400(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=chat_stack.chat.model, messages=[{"role": "user", "content": "word " * 4000}], max_tokens=16
        )
    assert err.value.status_code == 400
    assert err.value.code == "context_length_exceeded"
    assert "tokens" in err.value.message


def test_unknown_model_is_404(chat_stack: ChatStack) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        chat_stack.gateway.client().chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "hi"}]
        )
    assert err.value.code == "model_not_found"
    body = err.value.body
    assert isinstance(body, dict) and {"message", "type", "param", "code"} <= set(body)


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        (b"{oops", None),
        (b"[1, 2]", None),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": [{"role": "wizard", "content": "hi"}]}', "messages.0.role"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 9}', "temperature"),
        (b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}', "max_tokens"),
    ],
)
def test_malformed_bodies_are_openai_400s(chat_stack: ChatStack, payload: bytes, param: str | None) -> None:
    response = httpx.post(
        chat_stack.gateway.url + "/v1/chat/completions",
        headers={**chat_stack.gateway.headers, "Content-Type": "application/json"},
        content=payload,
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert error["param"] == param


def test_max_tokens_beyond_the_context_is_400(chat_stack: ChatStack) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        chat_stack.gateway.client().chat.completions.create(
            model=chat_stack.chat.model, messages=[{"role": "user", "content": "hi"}], max_tokens=5000
        )
    assert err.value.param == "max_tokens"


def test_api_key_is_required(chat_stack: ChatStack) -> None:
    bad = openai.OpenAI(base_url=chat_stack.gateway.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    missing = httpx.get(chat_stack.gateway.url + "/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"


def test_completions_endpoint(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    answer = client.completions.create(model=chat_stack.chat.model, prompt="The sky is", max_tokens=6)
    assert answer.choices[0].text.strip()
    assert answer.id.startswith("cmpl-")
    chunks = list(client.completions.create(model=chat_stack.chat.model, prompt="One, two,", max_tokens=6, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices).strip()


def test_upstream_validation_errors_keep_their_status(chat_stack: ChatStack) -> None:
    """vLLM's own 400s come back as they were, in OpenAI shape."""
    response = httpx.post(
        chat_stack.gateway.url + "/v1/completions",
        headers=chat_stack.gateway.headers,
        json={"model": chat_stack.chat.model, "prompt": "hi", "max_tokens": 4, "top_k": -7},
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"]


def test_health_ready_metrics(chat_stack: ChatStack) -> None:
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(chat_stack.gateway.url + path).status_code == 200
    metrics = httpx.get(chat_stack.gateway.url + "/metrics").text
    assert 'openchatkit_http_requests_total{method="POST",route="/v1/chat/completions",service="gateway"' in metrics


def test_stream_usage_only_when_asked(chat_stack: ChatStack) -> None:
    client = chat_stack.gateway.client()
    messages = [{"role": "user", "content": "Say hi."}]
    plain = list(
        client.chat.completions.create(model=chat_stack.chat.model, messages=messages, max_tokens=4, stream=True)
    )
    assert all(c.usage is None for c in plain)
    asked = list(
        client.chat.completions.create(
            model=chat_stack.chat.model,
            messages=messages,
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert asked[-1].usage is not None and asked[-1].usage.completion_tokens == 4


def _vllm_metric(chat_url: str, name: str) -> float:
    total = 0.0
    for line in httpx.get(chat_url + "/metrics").text.splitlines():
        if line.startswith(name):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_client_that_hangs_up_stops_generation(chat_stack: ChatStack) -> None:
    """Closing the stream early aborts the request in vLLM instead of generating on."""
    generated = "vllm:generation_tokens_total"
    before = _vllm_metric(chat_stack.chat.url, generated)
    stream = chat_stack.gateway.client().chat.completions.create(
        model=chat_stack.chat.model,
        messages=[{"role": "user", "content": "Write a very long story about the sea."}],
        max_tokens=1500,
        stream=True,
        extra_body={"ignore_eos": True},
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    deadline = time.monotonic() + 120
    while _vllm_metric(chat_stack.chat.url, "vllm:num_requests_running") > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _vllm_metric(chat_stack.chat.url, "vllm:num_requests_running") == 0
    time.sleep(2)
    tokens = _vllm_metric(chat_stack.chat.url, generated) - before
    assert tokens < 500, f"{tokens} tokens were generated for a client that left after 4 chunks"

"""The OpenChatKit `<human>`/`<bot>` path on vLLM's CPU backend: a tiny GPT-NeoX served
through our launcher with the OpenChatKit profile settings and template."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.profiles import OPENCHATKIT_SAMPLING, OPENCHATKIT_STOP, ModelProfile
from tests.conftest import Gateway, start_gateway
from tests.support.processes import ServiceProcess, free_port
from tests.support.tiny_models import build_tiny_gpt_neox

pytestmark = pytest.mark.vllm

CONVERSATION = [
    {"role": "system", "content": "Be nice."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "Tell me a joke"},
]
EXPECTED_PROMPT = "Be nice.\n\n<human>: Hello there\n<bot>: Hi!\n<human>: Tell me a joke\n<bot>:"


@dataclass
class TinyServer:
    url: str
    model: str
    model_dir: Path
    profile: ModelProfile


@pytest.fixture(scope="module")
def tiny_openchatkit(tmp_path_factory: pytest.TempPathFactory, log_dir: Path) -> Iterator[TinyServer]:
    model_dir = build_tiny_gpt_neox(tmp_path_factory.mktemp("tiny-gpt-neox"))
    profile = ModelProfile(
        name="tiny-openchatkit",
        source=str(model_dir),
        device="cpu",
        dtype="float32",
        max_model_len=512,
        chat_template="openchatkit.jinja",
        stop=OPENCHATKIT_STOP,
        sampling_defaults=OPENCHATKIT_SAMPLING,
    )
    port = free_port()
    settings = ChatServerSettings(port=port, kv_cache_space_gib=1)
    launch = build_vllm_launch(profile, settings, str(model_dir))
    process = ServiceProcess("vllm-tiny-neox", launch.argv, launch.env, log_dir).start()
    try:
        url = f"http://127.0.0.1:{port}"
        process.wait_http(url + "/health", timeout=900)
        yield TinyServer(url, profile.name, model_dir, profile)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def tiny_gateway(tiny_openchatkit: TinyServer, log_dir: Path) -> Iterator[Gateway]:
    profile = tiny_openchatkit.profile
    upstream = {
        "url": tiny_openchatkit.url + "/v1",
        "stop": profile.stop,
        "default_max_tokens": profile.sampling_defaults["max_tokens"],
        "tokenizer": str(tiny_openchatkit.model_dir),
        "chat_template": str(profile.chat_template_path()),
    }
    gateway = start_gateway(log_dir, [upstream])
    yield gateway
    gateway.process.stop()


def test_rendered_prompt_is_exactly_the_openchatkit_format(tiny_openchatkit: TinyServer) -> None:
    tokens = httpx.post(
        tiny_openchatkit.url + "/tokenize",
        json={"model": tiny_openchatkit.model, "messages": CONVERSATION, "add_generation_prompt": True},
    ).json()["tokens"]
    text = httpx.post(
        tiny_openchatkit.url + "/detokenize", json={"model": tiny_openchatkit.model, "tokens": tokens}
    ).json()["prompt"]
    assert text == EXPECTED_PROMPT


def test_without_the_stop_string_the_model_runs_into_the_next_turn(tiny_openchatkit: TinyServer) -> None:
    """The control: straight to vLLM with no stop, the answer spills into `<human>:`."""
    answer = httpx.post(
        tiny_openchatkit.url + "/v1/chat/completions",
        json={"model": tiny_openchatkit.model, "messages": CONVERSATION, "max_tokens": 12, "temperature": 0},
    ).json()
    content = answer["choices"][0]["message"]["content"]
    assert content.startswith(" Sure thing\n<human>:")
    assert answer["choices"][0]["finish_reason"] == "length"


def test_openchatkit_default_max_tokens_applies_when_unset(tiny_openchatkit: TinyServer) -> None:
    answer = httpx.post(
        tiny_openchatkit.url + "/v1/chat/completions",
        json={"model": tiny_openchatkit.model, "messages": CONVERSATION, "temperature": 0},
        timeout=120,
    ).json()
    assert answer["usage"]["completion_tokens"] == OPENCHATKIT_SAMPLING["max_tokens"]


def test_gateway_stops_generation_at_human(tiny_openchatkit: TinyServer, tiny_gateway: Gateway) -> None:
    client = tiny_gateway.client()
    answer = client.chat.completions.create(
        model=tiny_openchatkit.model, messages=CONVERSATION, max_tokens=40, temperature=0
    )
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content.strip() == "Sure thing"
    assert "<human>" not in answer.choices[0].message.content


def test_gateway_stream_stops_at_human(tiny_openchatkit: TinyServer, tiny_gateway: Gateway) -> None:
    chunks = list(
        tiny_gateway.client().chat.completions.create(
            model=tiny_openchatkit.model, messages=CONVERSATION, max_tokens=40, temperature=0, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == "Sure thing"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_gateway_truncates_with_the_openchatkit_template(tiny_openchatkit: TinyServer, tiny_gateway: Gateway) -> None:
    """512-token window: a long history is cut to fit, counted with the OpenChatKit template."""
    history = [{"role": "system", "content": "Be nice."}]
    history += [
        {"role": "user" if i % 2 == 0 else "assistant", "content": "the quick brown fox " * 10} for i in range(30)
    ]
    history.append({"role": "user", "content": "Tell me a joke"})
    response = httpx.post(
        tiny_gateway.url + "/v1/chat/completions",
        headers=tiny_gateway.headers,
        json={"model": tiny_openchatkit.model, "messages": history, "max_tokens": 8, "temperature": 0},
    )
    assert response.status_code == 200, response.text
    assert 0 < response.json()["usage"]["prompt_tokens"] <= 512 - 8

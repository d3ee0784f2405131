"""The loop's last step: a LoRA adapter trained here is served by vLLM next to its base
model and routed by name through the gateway; new versions are hot-loaded into the running
vLLM (no restart) and served under a gateway alias that promotion and rollback move."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from openchatkit.cli import app
from tests.conftest import Gateway, start_gateway
from tests.support.feedback import SHARED_REDIS_URL
from tests.training.conftest import STARTUP_ADAPTER, LoraServer

pytestmark = pytest.mark.vllm

ADAPTER = STARTUP_ADAPTER


@pytest.fixture(scope="module")
def lora_gateway(lora_vllm: LoraServer, log_dir: Path) -> Iterator[Gateway]:
    upstreams = [{"url": lora_vllm.v1, "tokenizer": str(lora_vllm.model_dir)}]
    # The aliases' Redis is named on both sides: never one an earlier `openchatkit run` recorded in the data dir.
    gateway = start_gateway(log_dir, upstreams, {"GATEWAY_LIMITS__REDIS_URL": SHARED_REDIS_URL})
    gateway.chat_url = lora_vllm.url  # type: ignore[attr-defined]
    yield gateway
    gateway.process.stop()


@pytest.fixture()
def adapter_dir(lora_vllm: LoraServer) -> Path:
    return lora_vllm.adapter_dir


def test_adapter_is_listed_next_to_its_base_model_and_served_by_name(lora_gateway: Gateway) -> None:
    client = lora_gateway.client()
    cards = {m.id: m for m in client.models.list().data}
    assert {"smollm2-135m-instruct", ADAPTER} <= set(cards)
    assert cards[ADAPTER].model_extra.get("parent") == "smollm2-135m-instruct"
    answer = client.chat.completions.create(
        model=ADAPTER, messages=[{"role": "user", "content": "Who are you?"}], max_tokens=12
    )
    assert answer.model == ADAPTER and answer.choices[0].message.content.strip()


def adapters(*args: str) -> str:
    result = CliRunner().invoke(app, ["adapters", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_versions_hot_load_and_the_alias_moves(lora_gateway: Gateway, adapter_dir: Path, tmp_path: Path) -> None:
    chat_url = lora_gateway.chat_url  # type: ignore[attr-defined]
    alias = f"support{uuid.uuid4().hex[:8]}"  # the Redis is shared: a name of its own
    where = ["--chat-url", chat_url, "--redis-url", SHARED_REDIS_URL, "--adapters-dir", str(tmp_path)]
    first = adapters("load", alias, str(adapter_dir), *where).strip().splitlines()[-1]
    second = adapters("load", alias, str(adapter_dir), *where, "--promote").strip().splitlines()[-1]
    assert (first, second) == (f"{alias}-v1", f"{alias}-v2")
    assert (tmp_path / first / "adapter_config.json").is_file(), "each version has its own directory"
    client = lora_gateway.client()

    def served_by(model: str) -> str:
        answer = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Who are you?"}], max_tokens=4
        )
        return answer.model

    def soon_served_by(model: str, expected: str) -> bool:
        """Gateways read the aliases at most once a second: the move shows within that."""
        deadline = time.monotonic() + 5
        while served_by(model) != expected:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)
        return True

    assert soon_served_by(alias, second)
    adapters("promote", alias, first, "--chat-url", chat_url, "--redis-url", SHARED_REDIS_URL)
    assert soon_served_by(alias, first)
    adapters("rollback", alias, "--redis-url", SHARED_REDIS_URL)
    assert soon_served_by(alias, second), "rollback moves the alias back"
    listing = json.loads(adapters("list", "--chat-url", chat_url, "--redis-url", SHARED_REDIS_URL))
    assert {first, second} <= set(listing["served"][chat_url]) and listing["aliases"][alias] == second
    refused = CliRunner().invoke(
        app, ["adapters", "unload", second, "--chat-url", chat_url, "--redis-url", SHARED_REDIS_URL]
    )
    assert refused.exit_code == 1 and "promote another version" in " ".join(refused.output.split())
    adapters("unload", first, "--chat-url", chat_url, "--redis-url", SHARED_REDIS_URL)
    assert first not in {m.id for m in client.models.list().data} or served_by(alias) == second


def test_the_gateway_never_exposes_adapter_loading(lora_gateway: Gateway) -> None:
    for path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
        response = httpx.post(
            lora_gateway.url + path,
            json={"lora_name": "x", "lora_path": "/tmp"},
            headers={"Authorization": f"Bearer {lora_gateway.api_key}"},
        )
        assert response.status_code in (404, 405), response.text

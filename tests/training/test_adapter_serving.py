"""The loop's last step: a LoRA adapter trained here is served by vLLM next to its base
model and routed by name through the gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.profiles import get_profile
from tests.conftest import Gateway, start_gateway
from tests.support.processes import ServiceProcess, free_port
from training.chat import ChatFinetuneConfig, finetune_chat

pytestmark = pytest.mark.vllm

ADAPTER = "support-bot"


@pytest.fixture(scope="module")
def adapter_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("adapter")
    data = work / "ock.jsonl"
    data.write_text(json.dumps({"text": "<human>: Who are you?\n<bot>: I am the support bot.\n"}) + "\n")
    finetune_chat(
        ChatFinetuneConfig(
            base_model=str(smollm2_dir),
            data=str(data),
            output_dir=work / "out",
            max_steps=2,
            batch_size=1,
            max_length=32,
            lora_rank=8,
        )
    )
    return work / "out"


@pytest.fixture(scope="module")
def lora_gateway(smollm2_dir: Path, adapter_dir: Path, log_dir: Path) -> Iterator[Gateway]:
    profile = get_profile("smollm2-135m-instruct")
    port = free_port()
    settings = ChatServerSettings(
        port=port, kv_cache_space_gib=1, lora_modules={ADAPTER: str(adapter_dir)}, max_lora_rank=8
    )
    launch = build_vllm_launch(profile, settings, str(smollm2_dir))
    vllm = ServiceProcess("vllm-lora", launch.argv, launch.env, log_dir).start()
    gateway = None
    try:
        vllm.wait_http(f"http://127.0.0.1:{port}/health", timeout=900)
        gateway = start_gateway(log_dir, [{"url": f"http://127.0.0.1:{port}/v1", "tokenizer": str(smollm2_dir)}])
        yield gateway
    finally:
        if gateway is not None:
            gateway.process.stop()
        vllm.stop()


def test_adapter_is_listed_next_to_its_base_model_and_served_by_name(lora_gateway: Gateway) -> None:
    client = lora_gateway.client()
    cards = {m.id: m for m in client.models.list().data}
    assert {"smollm2-135m-instruct", ADAPTER} <= set(cards)
    assert cards[ADAPTER].model_extra.get("parent") == "smollm2-135m-instruct"
    answer = client.chat.completions.create(
        model=ADAPTER, messages=[{"role": "user", "content": "Who are you?"}], max_tokens=12
    )
    assert answer.model == ADAPTER and answer.choices[0].message.content.strip()

"""One vLLM CPU server with LoRA enabled (runtime loading on), shared by the adapter tests
and the learning-loop test (stopped when tests/training is done): it starts with a small
adapter trained here (``--lora-modules``) and takes new versions at run time."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.profiles import get_profile
from tests.conftest import CHAT_PROFILE
from tests.support.processes import ServiceProcess, free_port
from training.chat import finetune_chat
from training.config import load_config

STARTUP_ADAPTER = "support-bot"


@dataclass
class LoraServer:
    url: str  # root, e.g. http://127.0.0.1:PORT
    model: str
    model_dir: Path
    adapter_dir: Path
    process: ServiceProcess

    @property
    def v1(self) -> str:
        return self.url + "/v1"


@pytest.fixture(scope="package")
def startup_adapter_dir(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("adapter")
    data = work / "ock.jsonl"
    data.write_text(json.dumps({"text": "<human>: Who are you?\n<bot>: I am the support bot.\n"}) + "\n")
    config = load_config(
        "smollm2-135m-lora-cpu",
        {
            "base_model": str(smollm2_dir),
            "data": str(data),
            "output_dir": str(work / "out"),
            "max_steps": 2,
            "batch_size": 1,
            "max_length": 32,
            "validation_fraction": 0.0,
        },
    )
    config.save_steps = None
    finetune_chat(config)
    return work / "out"


@pytest.fixture(scope="package")
def lora_vllm(smollm2_dir: Path, startup_adapter_dir: Path, log_dir: Path) -> Iterator[LoraServer]:
    port = free_port()
    settings = ChatServerSettings(
        port=port,
        kv_cache_space_gib=1,
        lora_modules={STARTUP_ADAPTER: str(startup_adapter_dir)},
        enable_lora=True,
        max_lora_rank=8,
    )
    launch = build_vllm_launch(get_profile(CHAT_PROFILE), settings, str(smollm2_dir))
    vllm = ServiceProcess("vllm-lora", launch.argv, launch.env, log_dir).start()
    try:
        vllm.wait_http(f"http://127.0.0.1:{port}/health", timeout=900)
        yield LoraServer(f"http://127.0.0.1:{port}", CHAT_PROFILE, smollm2_dir, startup_adapter_dir, vllm)
    finally:
        vllm.stop()

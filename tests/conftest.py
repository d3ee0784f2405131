"""Session-wide real components: one vLLM CPU server with SmolLM2, shared by every test
that needs a chat model, and a factory for gateways in front of it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from chat_server.config import ChatServerSettings
from chat_server.prepare import prepare_model
from chat_server.profiles import get_profile
from tests.support import xdist_groups
from tests.support.processes import ServiceProcess, free_port

API_KEY = "sk-test"
CHAT_PROFILE = "smollm2-135m-instruct"


# `make test` runs two pytest-xdist workers; tests/support/xdist_groups.py says which tests
# share one (every vLLM server starts once).
def pytest_configure(config: pytest.Config) -> None:
    xdist_groups.prepare_controller(config)
    xdist_groups.share_cores(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    xdist_groups.finish_controller(config)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    xdist_groups.record_groups(config, items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    return xdist_groups.make_scheduler(config, log)


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("service-logs")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2 prepared from its PyPI package (a no-op when already prepared)."""
    return Path(prepare_model(get_profile(CHAT_PROFILE), ChatServerSettings().cache_dir))


@dataclass
class ChatModelServer:
    url: str  # root, e.g. http://127.0.0.1:PORT
    model: str
    model_dir: Path
    process: ServiceProcess

    @property
    def v1(self) -> str:
        return self.url + "/v1"


@dataclass
class Gateway:
    url: str
    api_key: str
    process: ServiceProcess

    def client(self, **kwargs: object) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=self.api_key, max_retries=0, **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=self.api_key, max_retries=0, **kwargs)  # type: ignore[arg-type]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def start_gateway(
    log_dir: Path, upstreams: list[dict[str, object]], env: dict[str, str] | None = None, wait_ready: bool = True
) -> Gateway:
    port = free_port()
    process = ServiceProcess.module(
        "gateway",
        "gateway",
        {
            "GATEWAY_PORT": str(port),
            "GATEWAY_API_KEYS": json.dumps([API_KEY]),
            "GATEWAY_UPSTREAMS": json.dumps(upstreams),
            "GATEWAY_MODEL_REFRESH_S": "2",
            # Speed is for benchmarks: dependencies get time enough for a machine busy with other work.
            "GATEWAY_MODERATION__TIMEOUT_S": "300",
            "GATEWAY_RETRIEVAL__TIMEOUT_S": "300",
            **(env or {}),
        },
        log_dir,
    ).start()
    gateway = Gateway(f"http://127.0.0.1:{port}", API_KEY, process)
    process.wait_http(gateway.url + "/health", timeout=60)
    if wait_ready:
        process.wait_http(gateway.url + "/ready", timeout=120)
    return gateway


@dataclass
class ChatStack:
    chat: ChatModelServer
    gateway: Gateway
    ready_while_model_loading: int
    """The gateway's /ready status, read while vLLM was still starting."""


@pytest.fixture(scope="session")
def chat_stack(smollm2_dir: Path, log_dir: Path) -> Iterator[ChatStack]:
    """vLLM (CPU, SmolLM2) and a gateway in front of it, started together so the
    gateway's readiness can be seen before the model is up."""
    port = free_port()
    vllm = ServiceProcess.module(
        "vllm",
        "chat_server",
        {
            "CHAT_PORT": str(port),
            "CHAT_PROFILE": CHAT_PROFILE,
            "CHAT_KV_CACHE_SPACE_GIB": "2",
            # request ids in its log: tests follow a client's X-Request-Id into vLLM
            "CHAT_EXTRA_ARGS": '["--enable-log-requests"]',
        },
        log_dir,
    ).start()
    chat = ChatModelServer(f"http://127.0.0.1:{port}", CHAT_PROFILE, smollm2_dir, vllm)
    profile = get_profile(CHAT_PROFILE)
    upstream = {
        "url": chat.v1,
        "tokenizer": str(smollm2_dir),
        "default_max_tokens": profile.sampling_defaults["max_tokens"],
    }
    gateway = None
    try:
        gateway = start_gateway(log_dir, [upstream], wait_ready=False)
        ready_before = httpx.get(gateway.url + "/ready", timeout=120).status_code
        vllm.wait_http(chat.url + "/health", timeout=float(os.environ.get("OPENCHATKIT_TEST_VLLM_TIMEOUT", "900")))
        gateway.process.wait_http(gateway.url + "/ready", timeout=60)
        yield ChatStack(chat, gateway, ready_before)
    finally:
        if gateway is not None:
            gateway.process.stop()
        vllm.stop()


@pytest.fixture(scope="session")
def chat_server(chat_stack: ChatStack) -> ChatModelServer:
    return chat_stack.chat


@pytest.fixture()
def gateway_factory(chat_server: ChatModelServer, log_dir: Path) -> Iterator[Callable[..., Gateway]]:
    """Start extra gateways (with their own settings) in front of the shared vLLM."""
    started: list[Gateway] = []

    def factory(env: dict[str, str] | None = None, upstream: dict[str, object] | None = None) -> Gateway:
        chosen = upstream or {"url": chat_server.v1, "tokenizer": str(chat_server.model_dir)}
        gateway = start_gateway(log_dir, [chosen], env)
        started.append(gateway)
        return gateway

    yield factory
    for gateway in started:
        gateway.process.stop()

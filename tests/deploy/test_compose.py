"""docker-compose.yml: valid for the Compose specification (the docker-compose binary and its
JSON schema), and what an operator relies on: profiles, health checks, dependencies, only the
gateway published, GPU reservations, vLLM keys from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chat_server.config import ChatServerSettings
from chat_server.launch import build_vllm_launch
from chat_server.profiles import get_profile
from feedback_server.config import FeedbackSettings
from gateway.config import GatewaySettings
from moderation_server.config import ModerationSettings
from retrieval_server.config import RetrievalSettings
from tests.deploy.support import COMPOSE_FILE, TEST_ENV, compose_model, env_example, run_compose

OUR_SERVICES = {"retrieval", "feedback", "feedback-worker"}
SHARED = {"redis", "postgres", "qdrant", *OUR_SERVICES}
PROFILES = {
    "gpu": SHARED | {"chat-gpu", "moderation-llm", "moderation-gpu", "gateway-gpu"},
    "cpu": SHARED | {"chat-cpu", "moderation-cpu", "gateway-cpu"},
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("compose")
    return {
        "gpu": compose_model(["gpu"], tmp),
        "cpu": compose_model(["cpu"], tmp),
        "observability": compose_model(["cpu", "observability"], tmp),
    }


@pytest.mark.parametrize("profiles", [["gpu"], ["cpu"], ["gpu", "observability"], ["cpu", "observability"]])
def test_compose_config_is_valid(profiles: list[str], tmp_path: Path) -> None:
    args = [arg for profile in profiles for arg in ("--profile", profile)] + ["config", "-q"]
    result = run_compose(args, {**env_example(), **TEST_ENV}, tmp_path)
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_the_secrets(tmp_path: Path) -> None:
    env = {**env_example(), **TEST_ENV}
    del env["REDIS_PASSWORD"]
    result = run_compose(["--profile", "cpu", "config", "-q"], env, tmp_path)
    assert result.returncode != 0
    assert "REDIS_PASSWORD" in result.stderr


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_profiles_hold_the_services_the_issue_lists(models: dict[str, dict[str, Any]]) -> None:
    assert set(models["gpu"]["services"]) == PROFILES["gpu"]
    assert set(models["cpu"]["services"]) == PROFILES["cpu"]
    assert set(models["observability"]["services"]) == PROFILES["cpu"] | {"prometheus", "grafana"}


def test_every_service_has_a_health_check_restart_policy_and_healthy_dependencies(
    models: dict[str, dict[str, Any]],
) -> None:
    for model in models.values():
        for name, service in model["services"].items():
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
            assert service.get("restart") == "unless-stopped", name
            for dependency, how in service.get("depends_on", {}).items():
                assert how["condition"] == "service_healthy", (name, dependency)


def test_model_servers_get_a_long_start_period(models: dict[str, dict[str, Any]]) -> None:
    def seconds(duration: str) -> int:
        total, number = 0, ""
        for char in duration:
            if char.isdigit():
                number += char
            else:
                total += int(number) * {"h": 3600, "m": 60, "s": 1}[char]
                number = ""
        return total

    gpu, cpu = models["gpu"]["services"], models["cpu"]["services"]
    assert seconds(gpu["chat-gpu"]["healthcheck"]["start_period"]) >= 3600  # a 20B download and load
    assert seconds(gpu["moderation-llm"]["healthcheck"]["start_period"]) >= 1800
    assert seconds(cpu["chat-cpu"]["healthcheck"]["start_period"]) >= 300  # the first torch.compile


def test_only_the_gateway_is_published(models: dict[str, dict[str, Any]]) -> None:
    for profile in ("gpu", "cpu"):
        published = {name for name, service in models[profile]["services"].items() if service.get("ports")}
        assert published == {f"gateway-{profile}"}
        (port,) = models[profile]["services"][f"gateway-{profile}"]["ports"]
        assert (port["host_ip"], port["published"], port["target"]) == ("127.0.0.1", "8000", 8000)
    observability = models["observability"]["services"]
    assert {name for name, service in observability.items() if service.get("ports")} == {"gateway-cpu", "grafana"}
    assert observability["grafana"]["ports"][0]["host_ip"] == "127.0.0.1"


def test_gpu_profile_reserves_gpus_from_env(tmp_path: Path) -> None:
    model = compose_model(
        ["gpu"], tmp_path, {"CHAT_GPUS": "2", "CHAT_TENSOR_PARALLEL_SIZE": "2", "MODERATION_GPUS": "1"}
    )
    chat = model["services"]["chat-gpu"]
    (device,) = chat["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 2
    assert chat["command"][chat["command"].index("--tensor-parallel-size") + 1] == "2"
    assert chat["ipc"] == "host"
    mounts = {volume["target"]: volume for volume in chat["volumes"]}
    assert mounts["/root/.cache/huggingface"]["type"] == "volume"  # the weights survive a restart
    assert mounts["/root/.cache/vllm"]["type"] == "volume"  # torch.compile cache
    assert mounts["/templates"]["read_only"]
    assert "HF_TOKEN" in chat["environment"]
    moderation = model["services"]["moderation-llm"]
    assert moderation["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1


def test_vllm_takes_its_api_key_from_the_environment(models: dict[str, dict[str, Any]]) -> None:
    key = TEST_ENV["VLLM_API_KEY"]
    for profile, name in (("gpu", "chat-gpu"), ("gpu", "moderation-llm"), ("cpu", "chat-cpu")):
        service = models[profile]["services"][name]
        assert service["environment"]["VLLM_API_KEY"] == key
        assert key not in " ".join(service.get("command") or []), "the key must not be on the command line"
    assert key in models["gpu"]["services"]["gateway-gpu"]["environment"]["GATEWAY_UPSTREAMS"]
    assert models["gpu"]["services"]["moderation-gpu"]["environment"]["MODERATION_LLM_API_KEY"] == key


def test_redis_keeps_every_write(models: dict[str, dict[str, Any]]) -> None:
    command = " ".join(models["cpu"]["services"]["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync always" in command and "--requirepass" in command


def test_data_lives_in_named_volumes(models: dict[str, dict[str, Any]]) -> None:
    for model in models.values():
        for name, service in model["services"].items():
            for volume in service.get("volumes", []):
                assert volume["type"] == "volume" or volume.get("read_only"), (name, volume["target"])


@pytest.mark.parametrize(
    ("service", "profile_name"), [("chat-gpu", "gpt-neoxt-chat-base-20b"), ("moderation-llm", "gpt-jt-moderation-6b")]
)
def test_gpu_flags_are_the_ones_chat_server_builds(
    models: dict[str, dict[str, Any]], service: str, profile_name: str
) -> None:
    """The official image gets exactly the flags `python -m chat_server` would pass for the profile."""
    profile = get_profile(profile_name)
    settings = ChatServerSettings(host="0.0.0.0", port=8001)
    expected = build_vllm_launch(profile, settings, str(profile.source)).argv[3:]
    if "--chat-template" in expected:
        expected[expected.index("--chat-template") + 1] = "/templates/" + profile.chat_template  # type: ignore[operator]
    command = models["gpu"]["services"][service]["command"]
    assert _flags(command) == _flags(expected)


def _flags(argv: list[str]) -> dict[str, Any]:
    import json

    flags: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        bare = i + 1 == len(argv) or argv[i + 1].startswith("--")  # --enable-lora takes no value
        flags[argv[i]] = True if bare else argv[i + 1]
        i += 1 if bare else 2
    if "--override-generation-config" in flags:
        flags["--override-generation-config"] = json.loads(flags["--override-generation-config"])
    return flags


def test_the_gpu_chat_template_is_the_one_the_chart_ships() -> None:
    repo = COMPOSE_FILE.parent
    ours = (repo / "chat_server" / "templates" / "openchatkit.jinja").read_text()
    assert (repo / "k8s" / "openchatkit" / "files" / "openchatkit.jinja").read_text() == ours


# Each of our services reads its settings under its own env prefix: load the real settings
# class from the container's environment (what the process would see) and check the secrets arrive.
SETTINGS_OF = {
    "gateway-cpu": GatewaySettings,
    "moderation-cpu": ModerationSettings,
    "retrieval": RetrievalSettings,
    "feedback": FeedbackSettings,
    "feedback-worker": FeedbackSettings,
}


def _settings_from(environment: dict[str, str], cls: type, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in list(os.environ):
        if name.split("_", 1)[0] in {"GATEWAY", "MODERATION", "RETRIEVAL", "FEEDBACK", "OPENCHATKIT"}:
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    return cls()


@pytest.mark.parametrize("service", sorted(SETTINGS_OF))
def test_every_service_reads_the_internal_token_under_its_own_prefix(
    service: str, models: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings_from(models["cpu"]["services"][service]["environment"], SETTINGS_OF[service], monkeypatch)
    assert settings.internal_token is not None
    assert settings.internal_token.get_secret_value() == TEST_ENV["INTERNAL_TOKEN"]


def test_gateway_keys_and_limits_use_the_shared_stores(
    models: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for profile, name in (("cpu", "gateway-cpu"), ("gpu", "gateway-gpu")):
        environment = {**models[profile]["services"][name]["environment"], "MASTER_KEY": ""}
        settings = _settings_from(environment, GatewaySettings, monkeypatch)
        assert settings.keys.enabled is True
        assert settings.keys.database_url.startswith("postgresql+asyncpg://openchatkit:")
        assert "@postgres:5432/" in settings.keys.database_url
        assert settings.limits.redis_url == f"redis://:{TEST_ENV['REDIS_PASSWORD']}@redis:6379/0"
    with_master = compose_model(["cpu"], tmp_path, {"MASTER_KEY": "master-test-key"})
    settings = _settings_from(with_master["services"]["gateway-cpu"]["environment"], GatewaySettings, monkeypatch)
    assert settings.master_key is not None and settings.master_key.get_secret_value() == "master-test-key"


def test_compose_refuses_to_start_without_the_internal_token(tmp_path: Path) -> None:
    result = run_compose(
        ["--profile", "cpu", "config", "-q"], {**env_example(), **TEST_ENV, "INTERNAL_TOKEN": ""}, tmp_path
    )
    assert result.returncode != 0
    assert "INTERNAL_TOKEN" in result.stderr

"""``openchatkit run`` starts the moderation service before the gateway and points the gateway at it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewaySettings
from moderation_server.config import ModerationSettings
from openchatkit.stack import StackSettings, build_stack


def test_moderation_service_starts_before_a_gateway_that_uses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    stack = StackSettings(data_dir=tmp_path, moderation_port=18555)
    specs = {spec.name: spec for spec in build_stack(stack)}
    moderation, gateway = specs["moderation"], specs["gateway"]
    assert moderation.argv[-2:] == ["-m", "moderation_server"]
    assert moderation.ready_url == "http://127.0.0.1:18555/ready"
    assert "moderation" in gateway.after
    for key, value in moderation.env.items():
        monkeypatch.setenv(key, value)
    settings = ModerationSettings()
    assert (settings.port, settings.classifier_dir()) == (18555, tmp_path / "moderation")
    for key, value in gateway.env.items():
        monkeypatch.setenv(key, value)
    policy = GatewaySettings().moderation
    assert policy.enabled and policy.url == "http://127.0.0.1:18555"
    assert policy.input_actions["needs intervention"] == "block" and policy.fail_mode == "closed"


def test_gateway_moderation_is_off_unless_enabled() -> None:
    assert GatewaySettings().moderation.enabled is False


def test_retrieval_labels_chunks_with_the_stack_moderation_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from retrieval_server.config import RetrievalSettings

    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    specs = {spec.name: spec for spec in build_stack(StackSettings(data_dir=tmp_path, moderation_port=18556))}
    retrieval = specs["retrieval"]
    assert "moderation" in retrieval.after
    for key, value in retrieval.env.items():
        monkeypatch.setenv(key, value)
    assert RetrievalSettings().moderation_url == "http://127.0.0.1:18556"

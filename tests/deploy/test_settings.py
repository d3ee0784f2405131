"""One set of settings: docs/settings.md is generated from the settings classes and current;
every variable compose and the chart give our services is one of them; every variable
docker-compose.yml reads from .env is documented in .env.example."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from openchatkit import settings_table
from tests.deploy.support import COMPOSE_FILE, REPO, compose_model, container, env_example, load_values, render_chart

# Read by vLLM, Hugging Face or the OS, or reserved (documented in docs/settings.md too).
OTHER = set(settings_table.OTHER_VARIABLES)
OURS_IN_COMPOSE = {
    "gateway-gpu", "gateway-cpu", "moderation-gpu", "moderation-cpu", "retrieval", "feedback", "feedback-worker",
    "chat-cpu",
}  # fmt: skip


def test_settings_doc_is_generated_and_current() -> None:
    assert (REPO / "docs" / "settings.md").read_text() == settings_table.render(), (
        "docs/settings.md is stale: python -m openchatkit.settings_table --write"
    )
    check = subprocess.run(
        [sys.executable, "-m", "openchatkit.settings_table", "--check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stderr


def test_settings_doc_lists_nested_fields() -> None:
    names = settings_table.env_names()
    assert {"GATEWAY_MODERATION__FAIL_MODE", "CHAT_KV_CACHE_SPACE_GIB", "FEEDBACK_DATABASE_URL"} <= names
    assert "| `RETRIEVAL_QDRANT_URL` |" in settings_table.render()


def test_compose_gives_our_services_only_known_settings(tmp_path: Path) -> None:
    known = settings_table.env_names() | OTHER
    for profiles in (["gpu"], ["cpu"]):
        for name, service in compose_model(profiles, tmp_path)["services"].items():
            if name in OURS_IN_COMPOSE:
                unknown = set(service.get("environment", {})) - known
                assert not unknown, f"{name}: {sorted(unknown)} are not settings (docs/settings.md)"


@pytest.mark.parametrize("values_file", [None, "values-cpu.yaml"])
def test_chart_gives_our_services_only_known_settings(values_file: str | None) -> None:
    known = settings_table.env_names() | OTHER
    for doc in render_chart(load_values(values_file)):
        if doc["kind"] != "Deployment":
            continue
        spec = container(doc)
        if spec["image"].startswith("vllm/"):
            continue  # the official vLLM image: configured by its flags
        unknown = {item["name"] for item in spec.get("env", [])} - known
        assert not unknown, f"{doc['metadata']['name']}: {sorted(unknown)} are not settings"


def test_env_example_documents_every_compose_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    documented = set(env_example())
    assert used == documented, f"used, not documented: {used - documented}; documented, unused: {documented - used}"
    lines = (REPO / ".env.example").read_text().splitlines()
    for index, line in enumerate(lines):
        if line and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f".env.example: explain {line.split('=')[0]} in a comment above it"

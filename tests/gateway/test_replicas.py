"""Replica routing through real processes: policies, ejection on kill -9 and rejoining,
all replicas down, backpressure, graceful shutdown. The second replica is the instant
OpenAI-compatible upstream (a real process); one test pairs it with the shared vLLM."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import CHAT_PROFILE, ChatModelServer, Gateway, start_gateway
from tests.support.feedback import wait_until
from tests.support.replicas import InstantReplica, start_replicas

MODEL = CHAT_PROFILE
# Speed is for benchmarks: probes and listings get time enough on a busy machine.
SLOW_MACHINE = {"GATEWAY_ROUTING__PROBE_TIMEOUT_S": "60", "GATEWAY_ROUTING__EJECTION_MAX_S": "2"}


@pytest.fixture()
def cleanup() -> Iterator[list[Gateway | InstantReplica]]:
    started: list[Gateway | InstantReplica] = []
    yield started
    for item in reversed(started):
        if isinstance(item, Gateway):
            item.process.stop()
        else:
            item.stop()


def gateway_for(
    log_dir: Path,
    upstreams: list[str],
    cleanup: list[Gateway | InstantReplica],
    tokenizer: Path | None = None,
    **env: str,
) -> Gateway:
    configs = [{"url": url, **({"tokenizer": str(tokenizer)} if tokenizer else {})} for url in upstreams]
    gateway = start_gateway(log_dir, configs, {**SLOW_MACHINE, **env})
    cleanup.append(gateway)
    return gateway


def chat(
    gateway: Gateway, text: str = "Say hi.", headers: dict[str, str] | None = None, **extra: object
) -> httpx.Response:
    body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": 2, **extra}
    return httpx.post(
        gateway.url + "/v1/chat/completions", json=body, headers={**gateway.headers, **(headers or {})}, timeout=600
    )


def served_by(response: httpx.Response) -> str:
    """The instant replicas name themselves in system_fingerprint; vLLM's reads vllm-<version>-<hash>."""
    assert response.status_code == 200, response.text
    fingerprint = response.json().get("system_fingerprint") or "vllm"
    return "vllm" if fingerprint.startswith("vllm") else fingerprint


def replicas(
    log_dir: Path, cleanup: list[Gateway | InstantReplica], *names: str, **options: float
) -> list[InstantReplica]:
    started = start_replicas(log_dir, MODEL, list(names), **options)
    cleanup.extend(started)
    return started


@pytest.mark.vllm
def test_round_robin_alternates_between_vllm_and_a_second_replica(
    chat_server: ChatModelServer, log_dir: Path, cleanup: list[Gateway | InstantReplica]
) -> None:
    [b] = replicas(log_dir, cleanup, "b")
    gateway = gateway_for(
        log_dir, [chat_server.v1, b.v1], cleanup, chat_server.model_dir, GATEWAY_ROUTING__POLICY="round_robin"
    )
    assert [c["id"] for c in httpx.get(gateway.url + "/v1/models", headers=gateway.headers).json()["data"]] == [MODEL]
    answered = Counter(served_by(chat(gateway)) for _ in range(6))
    assert answered == {"vllm": 3, "b": 3}


def test_session_affinity_sticks_and_spreads_sessions(log_dir: Path, cleanup: list[Gateway | InstantReplica]) -> None:
    a, b = replicas(log_dir, cleanup, "a", "b")
    gateway = gateway_for(log_dir, [a.v1, b.v1], cleanup, GATEWAY_ROUTING__POLICY="session")
    homes = {}
    for session in (f"conversation-{i}" for i in range(12)):
        seen = {served_by(chat(gateway, headers={"X-Session-Id": session})) for _ in range(3)}
        assert len(seen) == 1, f"{session} moved between replicas: {seen}"
        homes[session] = seen.pop()
    assert set(homes.values()) == {"a", "b"}
    # Without the header the first user message names the conversation: later turns follow it.
    first = {"role": "user", "content": f"Plan a trip {uuid.uuid4().hex}"}
    turns = [[first], [first, {"role": "assistant", "content": "Where to?"}, {"role": "user", "content": "Rome."}]]
    body = {"model": MODEL, "max_tokens": 2}
    seen = {
        served_by(
            httpx.post(gateway.url + "/v1/chat/completions", json={**body, "messages": m}, headers=gateway.headers)
        )
        for m in turns
    }
    assert len(seen) == 1


def test_least_busy_spreads_concurrent_requests(log_dir: Path, cleanup: list[Gateway | InstantReplica]) -> None:
    a, b = replicas(log_dir, cleanup, "a", "b", delay_ms=3000)
    gateway = gateway_for(log_dir, [a.v1, b.v1], cleanup)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answered = Counter(pool.map(lambda _: served_by(chat(gateway)), range(8)))
    assert answered["a"] >= 2 and answered["b"] >= 2 and sum(answered.values()) == 8
    metrics = httpx.get(gateway.url + "/metrics").text
    assert _sample(metrics, "openchatkit_gateway_replica_requests_total", a.key) == answered["a"]


@pytest.mark.vllm
def test_kill_9_retries_in_flight_requests_and_the_replica_rejoins(
    chat_server: ChatModelServer, log_dir: Path, cleanup: list[Gateway | InstantReplica]
) -> None:
    [b] = replicas(log_dir, cleanup, "b", delay_ms=4000)
    gateway = gateway_for(log_dir, [chat_server.v1, b.v1], cleanup, chat_server.model_dir)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(lambda: served_by(chat(gateway))) for _ in range(4)]
        wait_until(lambda: b.stats()["running"] >= 1, 120, "a request to reach replica b")
        b.kill()
        answers = [f.result(timeout=600) for f in pending]
    assert "b" not in answers and len(answers) == 4  # every one answered, by vLLM, after b died
    assert {served_by(chat(gateway)) for _ in range(3)} == {"vllm"}
    metrics = httpx.get(gateway.url + "/metrics").text
    assert _sample(metrics, "openchatkit_gateway_replica_ejections_total", b.key) >= 1
    assert _sample(metrics, "openchatkit_gateway_replica_retries_total", b.key) >= 1

    b.delay_ms = 0
    b.start()  # same port: probed, then back in service
    wait_until(lambda: served_by(chat(gateway)) == "b", 120, "replica b to rejoin")


def test_all_replicas_down_is_a_fast_503_and_recovery_is_automatic(
    log_dir: Path, cleanup: list[Gateway | InstantReplica]
) -> None:
    a, b = replicas(log_dir, cleanup, "a", "b")
    gateway = gateway_for(log_dir, [a.v1, b.v1], cleanup)
    assert served_by(chat(gateway)) in {"a", "b"}
    a.kill()
    b.kill()
    for _ in range(3):
        started = time.monotonic()
        down = chat(gateway)
        elapsed = time.monotonic() - started
        assert down.status_code == 503, down.text
        assert down.json()["error"]["type"] == "service_unavailable"
        assert elapsed < 10, f"503 took {elapsed:.1f}s"  # generous: the speed goal lives in the benchmark
    assert down.json()["error"]["code"] == "model_unavailable"  # both ejected: no connection tried
    a.start()
    wait_until(lambda: chat(gateway).status_code == 200, 60, "replica a to be back in service")


def test_full_replicas_queue_then_refuse_with_429(log_dir: Path, cleanup: list[Gateway | InstantReplica]) -> None:
    [a] = replicas(log_dir, cleanup, "a", delay_ms=5000)
    gateway = gateway_for(
        log_dir,
        [a.v1],
        cleanup,
        GATEWAY_ROUTING__MAX_IN_FLIGHT_PER_REPLICA="2",
        GATEWAY_ROUTING__MAX_WAITING="2",
        GATEWAY_ROUTING__QUEUE_TIMEOUT_S="120",
    )
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: chat(gateway), range(6)))
    statuses = Counter(r.status_code for r in answers)
    assert set(statuses) <= {200, 429} and 1 <= statuses[429] <= 2 and statuses[200] >= 4, statuses
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["code"] == "engine_overloaded" and refused.headers["retry-after"]
    assert a.stats()["served"] == statuses[200]


def test_graceful_shutdown_lets_a_stream_finish(log_dir: Path, cleanup: list[Gateway | InstantReplica]) -> None:
    [a] = replicas(log_dir, cleanup, "a", token_delay_ms=100)
    gateway = gateway_for(log_dir, [a.v1], cleanup, GATEWAY_SHUTDOWN_GRACE_S="60")
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count."}],
        "max_tokens": 30,
        "stream": True,
        "ignore_eos": True,
    }
    lines = []
    with httpx.stream(
        "POST", gateway.url + "/v1/chat/completions", json=body, headers=gateway.headers, timeout=120
    ) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and not lines:
                gateway.process.signal(signal.SIGTERM)  # stop while the answer is under way
            if line.startswith("data: "):
                lines.append(line)
    assert lines[-1] == "data: [DONE]"
    words = "".join((json.loads(x[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or "" for x in lines[:-1])
    assert words.split() == ["ok"] * 30
    # uvicorn re-raises the SIGTERM once shut down: a clean exit reads as -15 (or 0)
    assert gateway.process.process is not None and gateway.process.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in gateway.process.log_path.read_text()
    with pytest.raises(httpx.ConnectError):
        httpx.get(gateway.url + "/health")


def _sample(metrics: str, name: str, replica: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + "{") and f'replica="{replica}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_dns_discovery_finds_replicas_behind_one_name(log_dir: Path, cleanup: list[Gateway | InstantReplica]) -> None:
    [a] = replicas(log_dir, cleanup, "a")
    upstream = {"url": f"http://localhost:{a.port}/v1", "discover": "dns"}
    gateway = start_gateway(log_dir, [upstream], SLOW_MACHINE)
    cleanup.append(gateway)
    # localhost may also resolve to ::1, where nothing listens: that address is ejected, 127.0.0.1 serves.
    assert {served_by(chat(gateway)) for _ in range(4)} == {"a"}
    metrics = httpx.get(gateway.url + "/metrics").text
    assert _sample(metrics, "openchatkit_gateway_replica_requests_total", f"http://127.0.0.1:{a.port}/v1") == 4


def test_workers_share_the_port_and_metrics_count_every_worker(
    log_dir: Path, tmp_path: Path, cleanup: list[Gateway | InstantReplica]
) -> None:
    """GATEWAY_WORKERS=2: two processes answer on one port, and /metrics (whichever worker
    answers it) counts the requests of both; an earlier run's samples are cleared at start."""
    [a] = replicas(log_dir, cleanup, "a")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left by an earlier run")
    gateway = gateway_for(log_dir, [a.v1], cleanup, GATEWAY_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    assert not (metrics_dir / "counter_999999.db").exists()

    def writers() -> set[str]:
        return {p.stem.rsplit("_", 1)[1] for p in metrics_dir.glob("counter_*.db")}

    sent = 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        while len(writers()) < 2 and sent < 400:  # fresh connections: the kernel hands them to either worker
            assert set(pool.map(lambda _: served_by(chat(gateway)), range(8))) == {"a"}
            sent += 8
    assert len(writers()) == 2, f"one worker took all {sent} requests"
    # Each worker logs as one process would (its logging is set up in the worker): every request once.
    logged = [line for line in gateway.process.log_path.read_text().splitlines() if "/v1/chat/completions" in line]
    assert len(logged) == sent, logged[-3:]
    for _ in range(4):  # any worker may answer the scrape; each reports both
        metrics = httpx.get(gateway.url + "/metrics").text
        assert _sample(metrics, "openchatkit_gateway_replica_requests_total", a.key) == sent
        assert _sample(metrics, "openchatkit_gateway_replica_in_flight", a.key) == 0
    # Families no worker has written yet are listed all the same, as by one process (dashboards need them).
    assert "# TYPE openchatkit_gateway_replica_ejections_total counter" in metrics
    assert "# TYPE openchatkit_gateway_overloaded_total counter" in metrics

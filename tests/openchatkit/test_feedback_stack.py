"""``openchatkit run``'s feedback part: with no Redis at REDIS_URL the stack runs a private
redis-server (AOF, data under the data dir) under the supervisor, next to the feedback API
and its worker; feedback posted to it ends up in the SQLite store under the data dir."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from openchatkit.feedback_stack import feedback_specs, gateway_feedback_env, stack_redis
from openchatkit.local_redis import free_port
from openchatkit.stack import StackSettings
from openchatkit.supervisor import Supervisor


def test_redis_url_that_answers_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    url, spec = stack_redis(StackSettings(data_dir=tmp_path))
    assert spec is None and url == "redis://127.0.0.1:6379/0"


async def test_private_redis_feedback_api_and_worker_under_the_supervisor(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody answers there
    monkeypatch.delenv("FEEDBACK_DATABASE_URL", raising=False)
    stack = StackSettings(data_dir=tmp_path, feedback_port=free_port())
    redis_url, redis_spec = stack_redis(stack)
    assert redis_spec is not None and redis_url != os.environ["REDIS_URL"]
    assert gateway_feedback_env(stack, redis_url)["GATEWAY_FEEDBACK__REDIS_URL"] == redis_url
    specs = feedback_specs(stack, redis_url, redis_spec)
    assert [s.name for s in specs] == ["redis", "feedback", "fb-worker"]
    supervisor = Supervisor(specs, Console(file=io.StringIO()), stop_timeout_s=15)
    seen: dict[str, object] = {}

    def exercise() -> None:
        try:
            base = stack.url(stack.feedback_port)
            token = {"Authorization": f"Bearer {stack.secrets().internal_token}"}  # only the gateway gets in
            unauthorized = httpx.post(base + "/v1/feedback", json={"response_id": "x", "rating": "up"}, timeout=120)
            assert unauthorized.status_code == 401
            answer = httpx.post(
                base + "/v1/feedback",
                json={"response_id": "chatcmpl-stack", "rating": "up"},
                headers=token,
                timeout=120,
            )
            seen["status"] = answer.status_code
            feedback_id = answer.json()["id"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status = httpx.get(f"{base}/v1/feedback/{feedback_id}", headers=token, timeout=120).json().get("status")
                if status == "stored":
                    break
                time.sleep(0.2)
            with sqlite3.connect(tmp_path / "feedback.db") as db:
                seen["stored"] = [row[0] for row in db.execute("SELECT id FROM feedback")]
            seen["id"] = feedback_id
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the supervisor's stop signal

    async def on_ready() -> None:
        asyncio.get_running_loop().run_in_executor(None, exercise)

    code = await supervisor.run(on_ready=on_ready)
    assert code == 0
    assert seen["status"] == 202 and seen["stored"] == [seen["id"]]
    assert (tmp_path / "redis" / "appendonly.aof").stat().st_size > 0
    assert all(p.returncode is not None for p in supervisor.processes.values())

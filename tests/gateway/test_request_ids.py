"""One request id from the client through every service: the gateway, moderation,
retrieval and feedback log it on their JSON lines, and vLLM names its request after it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ChatModelServer, Gateway
from tests.support.feedback import SHARED_REDIS_URL, feedback_env, start_feedback_api, unique, wait_until
from tests.support.moderation import ModerationService
from tests.support.processes import ServiceProcess
from tests.support.retrieval import start_retrieval_server


def json_lines_with(process: ServiceProcess, request_id: str) -> list[dict[str, object]]:
    found = []
    for line in process.log_path.read_text(errors="replace").splitlines():
        if request_id in line and line.startswith("{"):
            entry = json.loads(line)
            if entry.get("request_id") == request_id:
                found.append(entry)
    return found


@pytest.mark.vllm
def test_the_client_request_id_reaches_every_service(
    chat_server: ChatModelServer,
    gateway_factory: Callable[..., Gateway],
    moderation: ModerationService,
    log_dir: Path,
    tmp_path: Path,
) -> None:
    retrieval = start_retrieval_server(log_dir, tmp_path / "retrieval", {"RETRIEVAL_LOG_JSON": "true"})
    feedback, feedback_url = start_feedback_api(
        feedback_env(SHARED_REDIS_URL, unique("test:rid"), f"sqlite+aiosqlite:///{tmp_path / 'fb.db'}"), log_dir
    )
    try:
        gateway = gateway_factory(
            env={
                "GATEWAY_MODERATION__ENABLED": "true",
                "GATEWAY_MODERATION__URL": moderation.url,
                "GATEWAY_RETRIEVAL__URL": retrieval.url,
                "GATEWAY_FEEDBACK__SERVICE_URL": feedback_url,
            }
        )
        request_id = f"rid-{uuid.uuid4().hex}"
        headers = {**gateway.headers, "X-Request-Id": request_id}
        body = {
            "model": chat_server.model,
            "messages": [{"role": "user", "content": "Name a colour."}],
            "max_tokens": 4,
            "retrieval": {"enabled": True},
        }
        answer = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=headers, timeout=600)
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == request_id and answer.json()["retrieval"]["status"] == "ok"
        stats = httpx.get(gateway.url + "/v1/feedback/stats", headers=headers, timeout=60)
        assert stats.status_code == 200, stats.text

        for name, process in [
            ("gateway", gateway.process),
            ("moderation", moderation.process),
            ("retrieval", retrieval.process),
            ("feedback", feedback),
        ]:
            wait_until(lambda p=process: bool(json_lines_with(p, request_id)), 30, f"{name} to log {request_id}")
        # vLLM (--enable-log-requests) names its request chatcmpl-<our id>-<unique suffix>.
        wait_until(
            lambda: f"chatcmpl-{request_id}-" in chat_server.process.log_path.read_text(errors="replace"),
            30,
            "vLLM to log the request id",
        )
    finally:
        retrieval.process.stop()
        feedback.stop()

"""Schemathesis against the OpenAPI of the gateway and of each service behind it, real
processes, fixed example budget (see tests/support/fuzz.py): no 5xx, OpenAI-shaped errors,
responses as documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import start_gateway
from tests.support.feedback import SHARED_REDIS_URL, feedback_env, start_feedback_api, unique
from tests.support.fuzz import fuzz
from tests.support.moderation import ModerationService
from tests.support.replicas import InstantReplica
from tests.support.retrieval import start_retrieval_server

# Answered by the services behind the gateway: fuzzed there, not through the gateway's proxy.
PROXIED = {
    "/v1/documents",
    "/v1/documents/{document_id}",
    "/v1/search",
    "/v1/collections",
    "/v1/collections/{name}",
    "/v1/feedback",
    "/v1/feedback/stats",
    "/v1/feedback/{feedback_id}",
    "/v1/moderations",
}


def report(sent: int, failures: list[str]) -> None:
    assert sent > 0
    assert not failures, f"{len(failures)} operation(s) failed out of {sent} cases:\n" + "\n\n".join(failures)


def test_fuzz_gateway(log_dir: Path) -> None:
    replica = InstantReplica("fuzz", "fuzz-model", log_dir).start()
    gateway = start_gateway(log_dir, [{"url": replica.v1}], {"GATEWAY_FEEDBACK__ENABLED": "false"})
    try:
        report(*fuzz(gateway.url, gateway.headers, skip_paths=PROXIED))
    finally:
        gateway.process.stop()
        replica.stop()


def test_fuzz_moderation(moderation: ModerationService) -> None:
    report(*fuzz(moderation.url))


def test_fuzz_feedback(log_dir: Path, tmp_path: Path) -> None:
    env = feedback_env(SHARED_REDIS_URL, unique("test:fuzz"), f"sqlite+aiosqlite:///{tmp_path / 'fb.db'}")
    process, url = start_feedback_api(env, log_dir)
    try:
        report(*fuzz(url))
    finally:
        process.stop()


@pytest.mark.timeout(1200)
def test_fuzz_retrieval(log_dir: Path, tmp_path: Path) -> None:
    server = start_retrieval_server(log_dir, tmp_path / "retrieval")
    try:
        report(*fuzz(server.url))
    finally:
        server.process.stop()

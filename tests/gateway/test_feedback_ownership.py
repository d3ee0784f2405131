"""Feedback belongs to the key that got the answer: another key's or an unknown response id
is a 404, a report is readable only by its poster, exports carry the key id (not the key),
and the feedback service answers only the gateway (internal token)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from openchatkit.cli import app
from tests.conftest import Gateway
from tests.support.feedback import SHARED_REDIS_URL, feedback_env, start_feedback_api, start_worker, unique, wait_until
from tests.support.keys import bearer, create_key, keys_env

INTERNAL = "internal-token-for-feedback-tests"


@pytest.fixture()
def feedback_service(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    stream = unique("test:feedback")
    db = tmp_path / "feedback.db"
    env = feedback_env(SHARED_REDIS_URL, stream, f"sqlite+aiosqlite:///{db}", FEEDBACK_INTERNAL_TOKEN=INTERNAL)
    api, url = start_feedback_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    yield url, db, stream
    api.stop()
    worker.stop()
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    keys = list(client.scan_iter(match=f"{stream}*", count=1000))
    if keys:
        client.delete(*keys)


def post(gateway: Gateway, key: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(gateway.url + "/v1/feedback", json=body, headers=bearer(key), timeout=60)


@pytest.mark.vllm
def test_feedback_only_from_the_key_that_got_the_answer(
    gateway_factory: Callable[..., Gateway], feedback_service: tuple[str, Path, str], tmp_path: Path
) -> None:
    service_url, db, stream = feedback_service
    gateway = gateway_factory(env=keys_env(
        tmp_path, SHARED_REDIS_URL, GATEWAY_FEEDBACK__STREAM=stream, GATEWAY_FEEDBACK__SERVICE_URL=service_url,
        GATEWAY_INTERNAL_TOKEN=INTERNAL,
    ))  # fmt: skip
    model = gateway.client().models.list().data[0].id
    alice, bob = create_key(gateway.url, owner="alice"), create_key(gateway.url, owner="bob")
    answer = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "Name a fruit."}], "max_tokens": 8},
        headers=bearer(alice["key"]),
        timeout=300,
    ).json()

    foreign = post(gateway, bob["key"], {"response_id": answer["id"], "rating": "down", "flags": ["harmful"]})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "response_not_found"
    invented = post(gateway, alice["key"], {"response_id": "chatcmpl-never-given", "rating": "up"})
    assert invented.status_code == 404 and invented.json()["error"]["code"] == "response_not_found"
    # A malformed report is a 400 naming the field, whoever's the id (checked before ownership).
    for response_id in ("chatcmpl-never-given", answer["id"]):
        bad = post(gateway, bob["key"], {"response_id": response_id, "rating": "sideways"})
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "rating", bad.text
    unreadable = httpx.post(gateway.url + "/v1/feedback", content=b"{not json", headers=bearer(bob["key"]))
    assert unreadable.status_code == 400, unreadable.text

    mine = post(gateway, alice["key"], {"response_id": answer["id"], "rating": "up"})
    assert mine.status_code == 202, mine.text
    feedback_id = mine.json()["id"]
    read = httpx.get(f"{gateway.url}/v1/feedback/{feedback_id}", headers=bearer(alice["key"]))
    assert read.status_code == 200 and read.json()["rating"] == "up"
    peek = httpx.get(f"{gateway.url}/v1/feedback/{feedback_id}", headers=bearer(bob["key"]))
    assert peek.status_code == 404

    # Only the gateway gets in: the feedback service wants the internal token.
    assert httpx.post(service_url + "/v1/feedback", json={"response_id": "x", "rating": "up"}).status_code == 401
    assert httpx.get(f"{service_url}/v1/feedback/{feedback_id}").status_code == 401
    for path in ("/health", "/ready", "/metrics"):
        assert httpx.get(service_url + path).status_code == 200

    wait_until(lambda: httpx.get(
        f"{gateway.url}/v1/feedback/{feedback_id}", headers=bearer(alice["key"])).json().get("status") == "stored",
        30, "the report to be stored")  # fmt: skip
    assert httpx.get(f"{gateway.url}/v1/feedback/{feedback_id}", headers=bearer(bob["key"])).status_code == 404
    out = tmp_path / "export.jsonl"
    url = f"sqlite+aiosqlite:///{db}"
    wait_until(lambda: _exported(url, out) == 1, 30, "the turn and its report to be exportable")
    [record] = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["key_id"] == alice["id"] and alice["key"] not in out.read_text()


def _exported(url: str, out: Path) -> int:
    result = CliRunner().invoke(app, ["feedback", "export", "--database-url", url, "-o", str(out), "--no-redact-pii"])
    assert result.exit_code == 0, result.output
    return len(out.read_text().splitlines())

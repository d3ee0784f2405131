"""The feedback API as a real process on real Redis: 202 only once XADD returned, OpenAI
errors for bad input, 503 when Redis is down, Idempotency-Key retries that store nothing new."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis

from tests.support.feedback import PrivateRedis, feedback_env, start_feedback_api, unique
from tests.support.processes import ServiceProcess


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One API (and its stream) for the module; tests use their own response ids."""
    tmp = tmp_path_factory.mktemp("feedback-api")
    stream = unique("test:feedback-api")
    env = feedback_env(redis_url, stream, f"sqlite+aiosqlite:///{tmp / 'feedback.db'}", FEEDBACK_MAX_TEXT_CHARS="1000")
    process, url = start_feedback_api(env, tmp)
    process.wait_http(url + "/ready", timeout=120)
    yield url, stream
    process.stop()
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{stream}*", count=1000))
    if keys:
        client.delete(*keys)


def entries_for(client: redis.Redis, stream: str, response_id: str) -> list[dict[str, object]]:
    found = []
    for _, fields in client.xrange(stream):
        data = json.loads(fields[b"data"])
        if data["response_id"] == response_id:
            found.append(data)
    return found


def test_accepted_feedback_is_in_the_stream(api: tuple[str, str], shared_redis: redis.Redis) -> None:
    url, stream = api
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    body = {
        "response_id": response_id,
        "rating": "down",
        "flags": ["factually_incorrect", "not_helpful"],
        "ideal_response": "Paris.",
        "comment": "it said Lyon",
    }
    answer = httpx.post(url + "/v1/feedback", json=body)
    assert answer.status_code == 202
    accepted = answer.json()
    assert (
        accepted["id"].startswith("fb-") and accepted["status"] == "queued" and accepted["response_id"] == response_id
    )
    [queued] = entries_for(shared_redis, stream, response_id)
    assert queued["id"] == accepted["id"]
    assert queued["flags"] == ["factually_incorrect", "not_helpful"] and queued["ideal_response"] == "Paris."
    looked_up = httpx.get(f"{url}/v1/feedback/{accepted['id']}").json()
    assert looked_up["status"] == "queued" and looked_up["comment"] == "it said Lyon"


@pytest.mark.parametrize(
    ("body", "param", "status"),
    [
        ({"rating": "up"}, "response_id", 400),
        ({"response_id": "r", "rating": "meh"}, "rating", 400),
        ({"response_id": "r", "flags": ["rude"]}, "flags.0", 400),
        ({"response_id": "r", "flags": "harmful"}, "flags", 400),
        ({"response_id": "", "rating": "up"}, "response_id", 400),
        ({"response_id": "r", "rating": "up", "ideal_response": "x" * 1001}, "ideal_response", 400),
        ({"response_id": "r", "rating": "up", "comment": "x" * 1001}, "comment", 400),
        ({"response_id": "r"}, "rating", 400),
        ({"response_id": "r", "rating": "up", "stars": 5}, "stars", 400),
        ({"response_id": "r", "comment": "y" * 300_000}, None, 413),
        ({"response_id": "r", "comment": "  \n\t "}, "rating", 400),  # blank text is no feedback
        ({"response_id": "r", "ideal_response": " ", "comment": ""}, "rating", 400),
    ],
)
def test_invalid_feedback_is_an_openai_error(
    api: tuple[str, str], body: dict[str, object], param: str | None, status: int
) -> None:
    answer = httpx.post(api[0] + "/v1/feedback", json=body)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param


def test_blank_texts_are_stored_as_absent(api: tuple[str, str], shared_redis: redis.Redis) -> None:
    url, stream = api
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    body = {"response_id": response_id, "rating": "down", "ideal_response": "   ", "comment": "\n"}
    assert httpx.post(url + "/v1/feedback", json=body, timeout=120).status_code == 202
    [queued] = entries_for(shared_redis, stream, response_id)
    assert queued["ideal_response"] is None and queued["comment"] is None


def test_not_json_and_bad_idempotency_keys(api: tuple[str, str]) -> None:
    url = api[0] + "/v1/feedback"
    broken = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    for key in ("x" * 256, "caf\u00e9".encode()):
        bad = httpx.post(url, json={"response_id": "r", "rating": "up"}, headers={"Idempotency-Key": key})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_idempotency_key"
    missing = httpx.get(api[0] + "/v1/feedback/fb-does-not-exist")
    assert missing.status_code == 404 and missing.json()["error"]["type"] == "not_found_error"


def test_idempotency_key_retries_store_nothing_new(api: tuple[str, str], shared_redis: redis.Redis) -> None:
    url, stream = api
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    body = {"response_id": response_id, "rating": "up"}
    key = uuid.uuid4().hex

    def send(_: int) -> httpx.Response:
        return httpx.post(url + "/v1/feedback", json=body, headers={"Idempotency-Key": key})

    with ThreadPoolExecutor(max_workers=16) as pool:  # retries racing each other
        answers = list(pool.map(send, range(32)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 31
    assert len(entries_for(shared_redis, stream, response_id)) == 1
    reused = httpx.post(url + "/v1/feedback", json={**body, "rating": "down"}, headers={"Idempotency-Key": key})
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"
    assert len(entries_for(shared_redis, stream, response_id)) == 1
    other = httpx.post(url + "/v1/feedback", json=body, headers={"Idempotency-Key": key + "-2"})
    assert other.status_code == 202 and other.json()["id"] != answers[0].json()["id"]
    assert len(entries_for(shared_redis, stream, response_id)) == 2


def test_stats_counts_the_queue(api: tuple[str, str]) -> None:
    stats = httpx.get(api[0] + "/v1/feedback/stats")
    assert stats.status_code == 200
    body = stats.json()
    assert body["queue"]["stream_length"] >= 1 and body["queue"]["pending"] == 0
    assert body["stored"]["feedback"] == 0  # no worker runs in this module


def test_redis_down_answers_503_never_202(
    private_redis: PrivateRedis, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    stream = unique("test:feedback-down")
    env = feedback_env(private_redis.url, stream, f"sqlite+aiosqlite:///{tmp_path / 'f.db'}")
    process, url = start_feedback_api(env, tmp_path)
    processes.append(process)
    body = {"response_id": "chatcmpl-down", "rating": "up"}
    assert httpx.post(url + "/v1/feedback", json=body).status_code == 202
    private_redis.kill()
    for _ in range(5):
        answer = httpx.post(url + "/v1/feedback", json=body, headers={"Idempotency-Key": "k-down"})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "queue_unavailable"
    assert httpx.get(url + "/ready").status_code == 503
    private_redis.start()  # same port, same append-only file
    answer = httpx.post(url + "/v1/feedback", json=body, headers={"Idempotency-Key": "k-down"})
    assert answer.status_code == 202
    client = private_redis.client()
    assert client.xlen(stream) == 2, client.xrange(stream)  # the one before the outage survived (AOF), plus this one

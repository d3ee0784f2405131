"""The feedback loop end to end: openai SDK -> gateway -> vLLM, the turn captured to a Redis
Stream, feedback through the gateway, the worker, the store, and the export."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis
from typer.testing import CliRunner

from gateway.config import FeedbackCaptureSettings
from gateway.keys.resolver import static_key_id
from gateway.pipeline import ChatTurn
from gateway.turn_capture import TurnRecorderHook
from openchatkit.cli import app
from openchatkit.local_redis import free_port
from services.protocol import ChatCompletionRequest
from tests.conftest import Gateway
from tests.support.feedback import SHARED_REDIS_URL, feedback_env, start_feedback_api, start_worker, unique, wait_until


@pytest.fixture()
def stream() -> Iterator[str]:
    name = unique("test:capture")
    yield name
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def feedback_stack(stream: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The feedback API and one worker on a fresh SQLite store."""
    db_path = tmp_path / "feedback.db"
    env = feedback_env(SHARED_REDIS_URL, stream, f"sqlite+aiosqlite:///{db_path}")
    api, url = start_feedback_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    yield url, db_path
    for process in (worker, api):
        process.stop()


def post_feedback(gateway: Gateway, body: dict[str, object], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return gateway.client().post("/feedback", cast_to=httpx.Response, body=body, options={"headers": headers})


def sqlite_rows(db_path: Path, query: str) -> list[tuple[object, ...]]:
    import sqlite3

    with sqlite3.connect(db_path) as connection:
        try:
            return list(connection.execute(query))
        except sqlite3.OperationalError:
            return []


@pytest.mark.vllm
def test_chat_feedback_worker_store_export(
    gateway_factory: Callable[..., Gateway], feedback_stack: tuple[str, Path], stream: str, tmp_path: Path
) -> None:
    service_url, db_path = feedback_stack
    gateway = gateway_factory(env={
        "GATEWAY_FEEDBACK__REDIS_URL": SHARED_REDIS_URL,
        "GATEWAY_FEEDBACK__STREAM": stream,
        "GATEWAY_FEEDBACK__SERVICE_URL": service_url,
    })  # fmt: skip
    client = gateway.client()
    model = client.models.list().data[0].id
    question = "Name one color of the rainbow."
    answer = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=24, temperature=0
    )
    text = answer.choices[0].message.content or ""
    assert text.strip()
    # A streamed turn too: the gateway records what the client received.
    second = "Say hello."
    chunks = list(client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": second}], max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    streamed_id = chunks[0].id
    streamed_text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed_text.strip()

    key = uuid.uuid4().hex
    up = post_feedback(gateway, {"response_id": answer.id, "rating": "up"}, key)
    assert up.status_code == 202
    retry = post_feedback(gateway, {"response_id": answer.id, "rating": "up"}, key)
    assert retry.json()["id"] == up.json()["id"] and retry.headers["idempotent-replayed"] == "true"
    ideal = "Hello! How can I help you today?"
    down = post_feedback(gateway, {"response_id": streamed_id, "rating": "down", "flags": ["not_helpful"],
                                   "ideal_response": ideal})  # fmt: skip
    assert down.status_code == 202
    with pytest.raises(openai.BadRequestError) as bad:
        post_feedback(gateway, {"response_id": answer.id, "rating": "sideways"})
    assert bad.value.body["param"] == "rating"  # type: ignore[index]

    wait_until(lambda: len(sqlite_rows(db_path, "SELECT id FROM feedback")) == 2, 30, "two stored reports")
    wait_until(lambda: len(sqlite_rows(db_path, "SELECT response_id FROM turns")) == 2, 30, "two stored turns")
    stored = client.get(f"/feedback/{up.json()['id']}", cast_to=httpx.Response).json()
    assert stored["status"] == "stored" and stored["rating"] == "up" and stored["response_id"] == answer.id
    [(messages, answer_text, prompt_tokens, latency, streamed)] = sqlite_rows(
        db_path,
        f"SELECT messages, answer, prompt_tokens, latency_ms, stream FROM turns WHERE response_id = '{answer.id}'",
    )
    assert json.loads(str(messages))[-1] == {"role": "user", "content": question}
    assert answer_text == text and int(prompt_tokens) > 0 and float(latency) > 0 and not streamed  # type: ignore[arg-type]
    [(streamed_answer, streamed_flag)] = sqlite_rows(
        db_path, f"SELECT answer, stream FROM turns WHERE response_id = '{streamed_id}'"
    )
    assert streamed_answer == streamed_text and streamed_flag

    url = f"sqlite+aiosqlite:///{db_path}"
    out = tmp_path / "ock.jsonl"
    result = CliRunner().invoke(app, ["feedback", "export", "--database-url", url, "-o", str(out), "--no-redact-pii"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    key_id = static_key_id(gateway.api_key)  # who rated it: the key's id, never the key
    assert lines == [
        {"text": f"<human>: {question}\n<bot>: {text.strip()}\n", "model": model, "key_id": key_id},
        {"text": f"<human>: {second}\n<bot>: {ideal}\n", "model": model, "key_id": key_id},
    ]
    pairs = tmp_path / "pref.jsonl"
    result = CliRunner().invoke(
        app,
        ["feedback", "export", "--database-url", url, "-o", str(pairs), "--format", "preference", "--no-redact-pii"],
    )
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in pairs.read_text().splitlines()] == [
        {
            "prompt": f"<human>: {second}\n<bot>:",
            "chosen": f" {ideal}",
            "rejected": f" {streamed_text.strip()}",
            "model": model,
            "key_id": key_id,
        }
    ]


@pytest.mark.vllm
def test_answers_go_out_when_redis_and_the_feedback_service_are_down(gateway_factory: Callable[..., Gateway]) -> None:
    nowhere = free_port()
    gateway = gateway_factory(env={
        "GATEWAY_FEEDBACK__REDIS_URL": f"redis://127.0.0.1:{nowhere}/0",
        "GATEWAY_FEEDBACK__SERVICE_URL": f"http://127.0.0.1:{nowhere}",
    })  # fmt: skip
    client = gateway.client()
    model = client.models.list().data[0].id
    for _ in range(2):
        answer = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=8)
        assert answer.choices[0].message.content is not None

    def dropped() -> float:
        metrics = httpx.get(gateway.url + "/metrics").text
        for line in metrics.splitlines():
            if line.startswith('openchatkit_feedback_turns_dropped_total{reason="redis_unavailable"}'):
                return float(line.split()[-1])
        return 0.0

    wait_until(lambda: dropped() >= 2, 20, "the missed turns to be counted")
    assert "turns not recorded for feedback" in gateway.process.log_path.read_text()
    with pytest.raises(openai.APIStatusError) as down:
        post_feedback(gateway, {"response_id": answer.id, "rating": "up"})
    assert down.value.status_code == 503


def _turn(i: int) -> ChatTurn:
    request = ChatCompletionRequest(model="m", messages=[{"role": "user", "content": f"question {i}"}])
    turn = ChatTurn(id=f"chatcmpl-{uuid.uuid4().hex}", model="m", request=request,
                    forward={"messages": [{"role": "user", "content": f"question {i}"}]}, stream=False)  # fmt: skip
    turn.answers, turn.finish_reasons, turn.finished = [f"answer {i}"], ["stop"], time.monotonic()
    turn.extensions["moderation"] = {"label": "casual", "flagged": False}
    return turn


async def test_a_full_queue_drops_and_counts_instead_of_waiting(stream: str) -> None:
    from gateway.turn_capture import TURNS_DROPPED, TURNS_PUBLISHED

    hook = TurnRecorderHook(FeedbackCaptureSettings(redis_url=SHARED_REDIS_URL, stream=stream, queue_size=3))
    full_before = TURNS_DROPPED.labels("queue_full")._value.get()
    published_before = TURNS_PUBLISHED._value.get()
    turns = [_turn(i) for i in range(10)]
    for turn in turns:  # no await between them yields to the publisher: the queue fills up
        await hook.after_response(turn)
    assert TURNS_DROPPED.labels("queue_full")._value.get() - full_before == 7
    client = redis.Redis.from_url(SHARED_REDIS_URL)
    await hook.aclose(flush_timeout_s=120)  # at once: closing publishes what was accepted, in-flight batch included
    entries = client.xrange(stream)
    assert [json.loads(f[b"data"])["response_id"] for _, f in entries] == [t.id for t in turns[:3]]
    first = json.loads(entries[0][1][b"data"])
    assert first["answers"] == ["answer 0"] and first["moderation"]["label"] == "casual"
    assert TURNS_PUBLISHED._value.get() - published_before == 3

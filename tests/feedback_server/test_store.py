"""The store, the same tests on SQLite and PostgreSQL (congruence)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from alembic.script import ScriptDirectory
from sqlalchemy import text

from feedback_server.protocol import FeedbackEvent, Flag, Rating, TurnEvent
from feedback_server.store import FeedbackStore
from feedback_server.store.migrate import alembic_config
from feedback_server.store.turns_and_feedback import ExportFilter, feedback_json

DAY = 86_400.0


def turn(response_id: str, model: str = "smol", answer: str = "Paris.", created_at: float | None = None) -> TurnEvent:
    return TurnEvent(
        response_id=response_id,
        model=model,
        messages=[{"role": "user", "content": "Capital of France?"}],
        answers=[answer],
        finish_reasons=["stop"],
        moderation={"label": "casual", "flagged": False},
        citations=[{"id": "doc-1", "title": "France", "source": "wiki", "text": "Paris is...", "score": 0.9}],
        prompt_tokens=12,
        completion_tokens=3,
        latency_ms=42.5,
        created_at=created_at or time.time(),
    )


def report(feedback_id: str, response_id: str, **fields: object) -> FeedbackEvent:
    fields.setdefault("created_at", time.time())
    return FeedbackEvent(id=feedback_id, response_id=response_id, **fields)  # type: ignore[arg-type]


async def test_migrations_reach_head_and_are_idempotent(store: FeedbackStore, store_url: str) -> None:
    async with store.engine.connect() as connection:
        version = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    assert version == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert version is not None and version >= "0002"  # turns.aborted is there
    again = await FeedbackStore.open(store_url)  # a second process starting: nothing to do, no error
    await again.close()


async def test_a_redelivered_batch_is_stored_once(store: FeedbackStore) -> None:
    batch = [turn("r1"), report("fb-1", "r1", rating=Rating.UP), report("fb-2", "r1", flags=[Flag.HARMFUL])]
    await store.write_batch(batch)
    await store.write_batch(batch)  # the worker died before XACK: the same entries come again
    await store.write_batch([batch[1]])
    counts = await store.counts()
    assert counts["turns"] == 1
    assert counts["feedback"] == 2
    assert counts["up"] == 1 and counts["harmful"] == 1 and counts["down"] == 0
    assert sorted(await store.feedback_ids()) == ["fb-1", "fb-2"]


async def test_feedback_round_trips_its_fields(store: FeedbackStore) -> None:
    created = time.time()
    await store.write_batch([
        report("fb-9", "r9", rating=Rating.DOWN, flags=[Flag.FACTUALLY_INCORRECT, Flag.NOT_HELPFUL],
               ideal_response="Paris, of course.", comment="wrong city", created_at=created),
    ])  # fmt: skip
    row = await store.get_feedback("fb-9")
    assert row is not None
    body = feedback_json(row)
    assert body == {
        "id": "fb-9",
        "object": "feedback",
        "status": "stored",
        "response_id": "r9",
        "rating": "down",
        "flags": ["factually_incorrect", "not_helpful"],
        "ideal_response": "Paris, of course.",
        "comment": "wrong city",
        "created_at": int(created),
    }
    assert await store.get_feedback("fb-missing") is None


async def test_export_joins_turns_and_filters(store: FeedbackStore) -> None:
    now = time.time()
    await store.write_batch([
        turn("old", created_at=now - 10 * DAY), report("fb-old", "old", rating=Rating.UP, created_at=now - 10 * DAY),
        turn("new", model="other"), report("fb-new", "new", rating=Rating.UP, created_at=now),
        report("fb-orphan", "never-recorded", rating=Rating.UP, created_at=now - DAY),
        turn("bad"), report("fb-harm", "bad", flags=[Flag.HARMFUL], created_at=now + 1),
    ])  # fmt: skip

    async def ids(where: ExportFilter) -> list[str]:
        return [row.feedback.id async for row in store.export_rows(where)]

    assert await ids(ExportFilter(include_harmful=True)) == ["fb-old", "fb-orphan", "fb-new", "fb-harm"]
    assert await ids(ExportFilter()) == ["fb-old", "fb-orphan", "fb-new"]
    assert await store.count_export(ExportFilter()) == 3
    recent = datetime.fromtimestamp(now - 2 * DAY, UTC)
    assert await ids(ExportFilter(since=recent)) == ["fb-orphan", "fb-new"]
    assert await ids(ExportFilter(until=recent)) == ["fb-old"]
    assert await ids(ExportFilter(model="other")) == ["fb-new"]
    rows = [row async for row in store.export_rows(ExportFilter(model="other"))]
    assert rows[0].turn is not None and rows[0].turn.answer == "Paris." and rows[0].turn.moderation_label == "casual"
    assert rows[0].turn.citations[0]["id"] == "doc-1" and rows[0].turn.prompt_tokens == 12
    orphan = [row async for row in store.export_rows(ExportFilter(since=recent)) if row.feedback.id == "fb-orphan"]
    assert orphan[0].turn is None

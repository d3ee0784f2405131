"""``FeedbackStore``: one interface over SQLite (embedded default) and PostgreSQL.

Writes are idempotent upserts keyed by event id (a turn's response id, a feedback id), so
a batch the worker redelivers after a crash is stored exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from feedback_server.protocol import Event, FeedbackEvent, Flag, TurnEvent
from feedback_server.store.database import MigratedStore
from feedback_server.store.tables import Feedback, Turn, utc_now

logger = logging.getLogger(__name__)


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or written right now; try again later."""


# PostgreSQL error classes that say "not now" rather than "not this data": connection
# exception, transaction rollback (deadlock, serialization), insufficient resources,
# object not in prerequisite state (database not accepting connections), operator
# intervention (shutdown, terminated backend), system error.
RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


def _sqlstate(exc: DBAPIError) -> str | None:
    for candidate in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def is_unavailable(exc: BaseException) -> bool:
    """Failures of the store itself (retry the whole batch later) as opposed to bad data."""
    if isinstance(exc, (OperationalError, InterfaceError, OSError, TimeoutError, StoreUnavailable)):
        return True
    if isinstance(exc, DBAPIError):
        code = _sqlstate(exc)
        return bool(exc.connection_invalidated) or (code is not None and code[:2] in RETRYABLE_SQLSTATE_CLASSES)
    return False


def _when(unix: float) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def turn_row(turn: TurnEvent) -> dict[str, Any]:
    moderation = turn.moderation or None
    return {
        "response_id": turn.response_id,
        "model": turn.model,
        "messages": turn.messages,
        "answer": turn.answers[0] if turn.answers else "",
        "answers": turn.answers,
        "finish_reason": turn.finish_reasons[0] if turn.finish_reasons else None,
        "moderation_label": str(moderation.get("label")) if moderation and moderation.get("label") else None,
        "moderation": moderation,
        "citations": turn.citations,
        "prompt_tokens": turn.prompt_tokens,
        "completion_tokens": turn.completion_tokens,
        "latency_ms": turn.latency_ms,
        "stream": turn.stream,
        "aborted": turn.aborted,
        "created_at": _when(turn.created_at),
        "stored_at": utc_now(),
    }


def feedback_row(report: FeedbackEvent) -> dict[str, Any]:
    return {
        "id": report.id,
        "response_id": report.response_id,
        "rating": report.rating.value if report.rating else None,
        "flag_factually_incorrect": Flag.FACTUALLY_INCORRECT in report.flags,
        "flag_not_helpful": Flag.NOT_HELPFUL in report.flags,
        "flag_harmful": Flag.HARMFUL in report.flags,
        "ideal_response": report.ideal_response,
        "comment": report.comment,
        "key_id": report.key_id,
        "created_at": _when(report.created_at),
        "stored_at": utc_now(),
    }


def flags_of(row: Feedback) -> list[str]:
    return [
        flag.value
        for flag, on in (
            (Flag.FACTUALLY_INCORRECT, row.flag_factually_incorrect),
            (Flag.NOT_HELPFUL, row.flag_not_helpful),
            (Flag.HARMFUL, row.flag_harmful),
        )
        if on
    ]


def feedback_json(row: Feedback) -> dict[str, Any]:
    return {
        "id": row.id,
        "object": "feedback",
        "status": "stored",
        "response_id": row.response_id,
        "rating": row.rating,
        "flags": flags_of(row),
        "ideal_response": row.ideal_response,
        "comment": row.comment,
        "created_at": int(_aware(row.created_at).timestamp()),
    }


@dataclass
class ExportRow:
    """A feedback report with the turn it rates (None when the turn was never recorded)."""

    feedback: Feedback
    turn: Turn | None


@dataclass
class ExportFilter:
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    include_harmful: bool = False


class FeedbackStore(MigratedStore):
    """Turns and the feedback that rates them (``FeedbackStore.open(url)``)."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    async def ping(self) -> bool:
        async with self.engine.connect() as connection:
            await connection.execute(select(1))
        return True

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Store a batch in one transaction; events already stored are left as they are."""
        turns = [turn_row(e) for e in events if isinstance(e, TurnEvent)]
        reports = [feedback_row(e) for e in events if isinstance(e, FeedbackEvent)]
        async with self.engine.begin() as connection:
            if turns:
                await connection.execute(
                    self._insert(Turn).on_conflict_do_nothing(index_elements=["response_id"]), turns
                )
            if reports:
                await connection.execute(self._insert(Feedback).on_conflict_do_nothing(index_elements=["id"]), reports)

    async def get_feedback(self, feedback_id: str) -> Feedback | None:
        async with AsyncSession(self.engine) as session:
            return await session.get(Feedback, feedback_id)

    async def counts(self) -> dict[str, int]:
        """Stored rows: turns, feedback, per rating and per flag."""
        query = select(
            func.count(),
            func.count().filter(Feedback.rating == "up"),
            func.count().filter(Feedback.rating == "down"),
            func.count().filter(Feedback.ideal_response.is_not(None)),
            func.count().filter(Feedback.flag_factually_incorrect),
            func.count().filter(Feedback.flag_not_helpful),
            func.count().filter(Feedback.flag_harmful),
        )
        async with self.engine.connect() as connection:
            total, up, down, ideal, incorrect, unhelpful, harmful = (await connection.execute(query)).one()
            turns = (await connection.execute(select(func.count()).select_from(Turn))).scalar_one()
        return {
            "turns": int(turns),
            "feedback": int(total),
            "up": int(up),
            "down": int(down),
            "with_ideal_response": int(ideal),
            Flag.FACTUALLY_INCORRECT.value: int(incorrect),
            Flag.NOT_HELPFUL.value: int(unhelpful),
            Flag.HARMFUL.value: int(harmful),
        }

    async def counts_by_model(self) -> dict[str, dict[str, int]]:
        """Feedback per model or adapter version that answered (the turn's ``model``): feedback,
        up, down, with an ideal response, flagged (any flag). Feedback on unrecorded turns is
        counted under ``"(unknown)"``."""
        flagged = Feedback.flag_factually_incorrect | Feedback.flag_not_helpful | Feedback.flag_harmful
        query = (
            select(
                Turn.model,
                func.count(),
                func.count().filter(Feedback.rating == "up"),
                func.count().filter(Feedback.rating == "down"),
                func.count().filter(Feedback.ideal_response.is_not(None)),
                func.count().filter(flagged),
            )
            .select_from(Feedback)
            .outerjoin(Turn, Turn.response_id == Feedback.response_id)
            .group_by(Turn.model)
        )
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).all()
        names = ("feedback", "up", "down", "with_ideal_response", "flagged")
        return {(model or "(unknown)"): dict(zip(names, map(int, counts), strict=True)) for model, *counts in rows}

    async def feedback_ids(self) -> list[str]:
        async with self.engine.connect() as connection:
            return list((await connection.execute(select(Feedback.id))).scalars())

    def _export_query(self, where: ExportFilter) -> Any:
        query = select(Feedback, Turn).outerjoin(Turn, Turn.response_id == Feedback.response_id)
        if where.since is not None:
            query = query.where(Feedback.created_at >= where.since)
        if where.until is not None:
            query = query.where(Feedback.created_at < where.until)
        if where.model is not None:
            query = query.where(Turn.model == where.model)
        if not where.include_harmful:
            query = query.where(Feedback.flag_harmful.is_(False))
        return query

    async def count_export(self, where: ExportFilter) -> int:
        query = select(func.count()).select_from(self._export_query(where).subquery())
        async with self.engine.connect() as connection:
            return int((await connection.execute(query)).scalar_one())

    async def export_rows(self, where: ExportFilter) -> AsyncIterator[ExportRow]:
        """Feedback joined with its turn, oldest first, streamed from the database."""
        query = self._export_query(where).order_by(Feedback.created_at, Feedback.id)
        async with AsyncSession(self.engine) as session:
            result = await session.stream(query.execution_options(yield_per=500))
            async for feedback_part, turn_part in result:
                yield ExportRow(feedback_part, turn_part)

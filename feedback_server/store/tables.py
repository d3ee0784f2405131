"""Tables: one row per recorded turn, one per feedback report, joined by response id, and
the gateway's virtual API keys (same database, same migrations).

Feedback carries no foreign key to its turn: the two arrive on the same stream from
different processes, so a report can be stored before (or without) its turn.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def utc_now() -> datetime:
    return datetime.now(UTC)


class Turn(Base):
    __tablename__ = "turns"

    response_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    model: Mapped[str] = mapped_column(String(256), index=True)
    messages: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    answer: Mapped[str] = mapped_column(Text, default="")
    answers: Mapped[list[str]] = mapped_column(JSON)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    moderation_label: Mapped[str | None] = mapped_column(String(64))
    moderation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    citations: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float | None] = mapped_column(Float)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    aborted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class Feedback(Base):
    __tablename__ = "feedback"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    response_id: Mapped[str] = mapped_column(String(256), index=True)
    rating: Mapped[str | None] = mapped_column(String(8))
    flag_factually_incorrect: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_not_helpful: Mapped[bool] = mapped_column(Boolean, default=False)
    flag_harmful: Mapped[bool] = mapped_column(Boolean, default=False)
    ideal_response: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)
    key_id: Mapped[str | None] = mapped_column(String(64), index=True)
    """The gateway's id of the API key that posted it (never the key itself)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)


class ApiKey(Base):
    """A gateway virtual key. Only the sha256 of the key is stored; ``hint`` is its last
    four characters, for people to tell keys apart."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    previous_key_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    previous_valid_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    hint: Mapped[str] = mapped_column(String(32))
    alias: Mapped[str | None] = mapped_column(String(128))
    owner: Mapped[str | None] = mapped_column(String(128), index=True)
    models: Mapped[list[str] | None] = mapped_column(JSON)
    rpm: Mapped[int | None] = mapped_column(Integer)
    tpm: Mapped[int | None] = mapped_column(Integer)
    max_parallel: Mapped[int | None] = mapped_column(Integer)
    budget_tokens: Mapped[int | None] = mapped_column(BigInteger)
    budget_period: Mapped[str | None] = mapped_column(String(8))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

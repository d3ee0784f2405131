"""The turn event the gateway publishes and the feedback worker stores: the contract
between the two, on a Redis Stream whose entries carry ``kind``, ``id`` and ``data`` (JSON).
:func:`entry_fields` is the one encoder of such an entry (turns here, feedback reports in
``feedback_server.protocol``)."""

from __future__ import annotations

import time
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from redis.typing import EncodableT, FieldT

DEFAULT_EVENTS_STREAM = "openchatkit:events"

EVENT_KIND = "kind"
EVENT_ID = "id"
EVENT_DATA = "data"

TURN: Final = "turn"
FEEDBACK: Final = "feedback"
EventKind = Literal["turn", "feedback"]
StreamFields = dict[FieldT, EncodableT]
"""A stream entry's fields as redis-py's XADD takes them."""


class TurnEvent(BaseModel):
    """One chat turn as the gateway recorded it."""

    model_config = ConfigDict(extra="ignore")

    response_id: str = Field(min_length=1)
    model: str
    messages: list[dict[str, Any]] = Field(description="What was sent to the chat model.")
    endpoint: str = Field(default="chat", description="chat, or completions (each prompt a user message).")
    answers: list[str] = Field(default_factory=list)
    finish_reasons: list[str | None] = Field(default_factory=list)
    moderation: dict[str, Any] | None = None
    citations: list[dict[str, Any]] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: float | None = None
    stream: bool = False
    aborted: bool = Field(
        default=False, description="The client hung up before the answer ended: answers hold only what was sent."
    )
    created_at: float = Field(default_factory=time.time)


def entry_fields(kind: EventKind, event_id: str, event: BaseModel) -> StreamFields:
    """An event as the fields of one stream entry: ``{"kind", "id", "data": <event JSON>}``."""
    return {EVENT_KIND: kind, EVENT_ID: event_id, EVENT_DATA: event.model_dump_json()}


def turn_fields(turn: TurnEvent) -> StreamFields:
    """A turn as the fields of one stream entry (its id is the response id)."""
    return entry_fields(TURN, turn.response_id, turn)

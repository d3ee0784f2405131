"""The turn event the gateway publishes and the feedback worker stores: the contract
between the two, on a Redis Stream whose entries carry ``kind``, ``id`` and ``data`` (JSON)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_EVENTS_STREAM = "openchatkit:events"

EVENT_KIND = "kind"
EVENT_ID = "id"
EVENT_DATA = "data"


class TurnEvent(BaseModel):
    """One chat turn as the gateway recorded it."""

    model_config = ConfigDict(extra="ignore")

    response_id: str = Field(min_length=1)
    model: str
    messages: list[dict[str, Any]] = Field(description="What was sent to the chat model.")
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


def turn_fields(turn: TurnEvent) -> dict[str, str]:
    """A turn as the fields of one stream entry."""
    return {EVENT_KIND: "turn", EVENT_ID: turn.response_id, EVENT_DATA: turn.model_dump_json()}

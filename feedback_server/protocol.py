"""What travels through the pipeline: the feedback request, and the two kinds of events
(a recorded turn, a feedback report) as they sit in the Redis Stream. The turn event is
the gateway's contract too, so it lives in services/turn_events.py."""

from __future__ import annotations

import enum
import uuid

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.turn_events import EVENT_DATA, EVENT_KIND, FEEDBACK, TURN, StreamFields, TurnEvent, entry_fields


class Rating(enum.StrEnum):
    UP = "up"
    DOWN = "down"


class Flag(enum.StrEnum):
    FACTUALLY_INCORRECT = "factually_incorrect"
    NOT_HELPFUL = "not_helpful"
    HARMFUL = "harmful"


class FeedbackRequest(BaseModel):
    """``POST /v1/feedback``. Text limits are checked by the service (they are settings)."""

    model_config = ConfigDict(extra="forbid")

    response_id: str = Field(min_length=1, max_length=256)
    rating: Rating | None = None
    flags: list[Flag] = Field(default_factory=list, max_length=len(Flag))
    ideal_response: str | None = None
    comment: str | None = None

    @field_validator("ideal_response", "comment")
    @classmethod
    def _blank_is_absent(cls, value: str | None) -> str | None:
        """Whitespace-only text carries nothing: it is stored as absent, never as a training target."""
        return value if value is None or value.strip() else None


class FeedbackEvent(BaseModel):
    """A feedback report as queued and stored."""

    id: str
    response_id: str
    rating: Rating | None = None
    flags: list[Flag] = Field(default_factory=list)
    ideal_response: str | None = None
    comment: str | None = None
    created_at: float = Field(description="Unix time it was accepted.")
    key_id: str | None = Field(default=None, description="The gateway's id of the API key that posted it.")


class InvalidEvent(ValueError):
    """A stream entry that cannot be read as an event (a poison message)."""


Event = FeedbackEvent | TurnEvent


def feedback_fields(event: FeedbackEvent) -> StreamFields:
    """A feedback report as the fields of one stream entry (what the enqueue script appends)."""
    return entry_fields(FEEDBACK, event.id, event)


def new_feedback_id() -> str:
    return f"fb-{uuid.uuid4().hex}"


def decode_event(fields: dict[bytes, bytes] | dict[str, str]) -> Event:
    """A stream entry's fields as an event; :class:`InvalidEvent` when they are not one."""
    text = {_text(k): _text(v) for k, v in fields.items()}
    kind, data = text.get(EVENT_KIND), text.get(EVENT_DATA)
    if data is None:
        raise InvalidEvent(f"entry has no '{EVENT_DATA}' field")
    try:
        if kind == FEEDBACK:
            return FeedbackEvent.model_validate_json(data)
        if kind == TURN:
            return TurnEvent.model_validate_json(data)
    except ValidationError as exc:
        raise InvalidEvent(f"invalid {kind} event: {exc.errors(include_url=False)[:3]}") from None
    raise InvalidEvent(f"unknown event kind {kind!r}")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value

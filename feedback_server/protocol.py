"""What travels through the pipeline: the feedback request, and the two kinds of events
(a recorded turn, a feedback report) as they sit in the Redis Stream. The request and the
turn event are the gateway's contracts too, so they live in services/ (feedback_protocol.py,
turn_events.py)."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field, ValidationError

from services.feedback_protocol import Flag, Rating
from services.turn_events import EVENT_DATA, EVENT_KIND, FEEDBACK, TURN, StreamFields, TurnEvent, entry_fields


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

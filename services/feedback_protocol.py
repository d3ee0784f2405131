"""``POST /v1/feedback``'s body: the gateway validates it (a 400 before anything else) and
the feedback service reads it."""

from __future__ import annotations

import enum

from pydantic import BaseModel, ConfigDict, Field, field_validator


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

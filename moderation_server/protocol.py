"""Request and response bodies: ``/v1/classify`` (ours) and ``/v1/moderations`` (OpenAI's)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictStr

from services.moderation_labels import LABELS


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: Any
    """A string or a list of strings; checked by the service, which names the bad item."""


class ModerationRequest(BaseModel):
    """OpenAI's body; ``model`` is accepted and answered with the model actually used."""

    model_config = ConfigDict(extra="allow")
    input: Any
    model: StrictStr | None = None


class Classification(BaseModel):
    label: str
    flagged: bool
    scores: dict[str, float]
    language: dict[str, Any] | None = None
    """``{"code", "confidence", "supported"}``: ``supported`` false means the model cannot
    judge this text (another language); ``flagged`` is then set by policy."""
    decoded: str | None = None
    """``rot13`` or ``base64`` when the verdict came from what the text decodes to."""

    def to_openai(self) -> dict[str, Any]:
        return {
            "flagged": self.flagged,
            "categories": {label: label == self.label for label in LABELS},
            "category_scores": dict(self.scores),
            "category_applied_input_types": {label: ["text"] for label in LABELS},
            "label": self.label,
            "language": self.language,
            "decoded": self.decoded,
        }

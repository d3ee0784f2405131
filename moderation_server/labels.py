"""OpenChatKit's five moderation labels (ProsocialDialog safety labels), least to most severe."""

from __future__ import annotations

from typing import Literal

Label = Literal[
    "casual",
    "possibly needs caution",
    "probably needs caution",
    "needs caution",
    "needs intervention",
]

LABELS: tuple[Label, ...] = (
    "casual",
    "possibly needs caution",
    "probably needs caution",
    "needs caution",
    "needs intervention",
)

SEVERITY: dict[str, int] = {label: rank for rank, label in enumerate(LABELS)}


def most_severe(labels: list[str]) -> str:
    return max(labels, key=SEVERITY.__getitem__)

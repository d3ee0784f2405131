"""OpenChatKit's five moderation labels (the ProsocialDialog safety labels), least to most
severe: the one definition the moderation service, the gateway, retrieval and the CLI share."""

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
"""Least to most severe; a classifier's score vector follows this order."""

SEVERITY: dict[str, int] = {label: rank for rank, label in enumerate(LABELS)}
"""Label -> rank (0 = ``casual`` ... 4 = ``needs intervention``); the worse label wins."""

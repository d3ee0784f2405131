"""OpenAI's rate-limit headers and durations (``1s``, ``6m0s``, ``20ms``)."""

from __future__ import annotations

import math


def duration(ms: float) -> str:
    """Go-style duration as OpenAI writes it: ``20ms``, ``1.5s``, ``6m0s``, ``1h2m3s``."""
    ms = max(0.0, ms)
    if ms < 1000:
        return f"{math.ceil(ms)}ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    total = math.ceil(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{hours}h" if hours else "") + f"{minutes}m{secs}s"


def refill_ms(level: float, per_minute: int) -> float:
    """Time until a bucket at ``level`` is full again."""
    return max(0.0, per_minute - level) * 60000 / per_minute

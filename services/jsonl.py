"""Reading JSON Lines (documents to ingest, training sets): one parser, each caller naming
its own errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def json_lines(
    lines: Iterable[bytes | str], not_json: Callable[[int, ValueError], Exception]
) -> Iterator[tuple[int, Any]]:
    """``(line number from 1, parsed value)`` for each non-blank line (bytes decoded as UTF-8,
    bad bytes replaced). A line that is not JSON raises ``not_json(number, error)``."""
    for number, raw in enumerate(lines, 1):
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise not_json(number, exc) from None
        yield number, value

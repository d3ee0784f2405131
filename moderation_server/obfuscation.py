"""Obfuscated text gets classified as what it decodes to: ROT13 that turns into English,
and base64 runs that decode to readable text. The worst verdict over a text and its
decodings counts, so wrapping a request in an encoding does not hide it."""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Callable

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{24,}={0,2}|[A-Za-z0-9_-]{24,}={0,2}")
_WORDS = re.compile(r"[A-Za-z]{2,}")


def decodings(text: str, is_english: Callable[[str], bool]) -> list[tuple[str, str]]:
    """``(how, decoded)`` pairs worth classifying besides ``text`` itself."""
    found: list[tuple[str, str]] = []
    if len(_WORDS.findall(text)) >= 3 and not is_english(text):
        rotated = codecs.encode(text, "rot13")
        if is_english(rotated):
            found.append(("rot13", rotated))
    for run in _BASE64_RUN.findall(text):
        decoded = _readable_base64(run)
        if decoded is not None:
            found.append(("base64", decoded))
        if len(found) >= 4:
            break
    return found


def _readable_base64(run: str) -> str | None:
    padded = run + "=" * (-len(run) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if ("-" in run or "_" in run) else None, validate=True)
        decoded = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    printable = sum(ch.isprintable() or ch.isspace() for ch in decoded)
    words = _WORDS.findall(decoded)
    if printable < 0.95 * len(decoded) or len(words) < 3:
        return None
    return decoded

"""Token-based chunking with overlap. Each chunk keeps the heading of its section, and
the document title travels with it into the embedded text (see :func:`chunk_context`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_SPACES = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*")
_SENTENCE_END = ".!?;:\u3002"


@dataclass(frozen=True)
class Section:
    heading: str
    text: str


@dataclass(frozen=True)
class Chunk:
    index: int
    heading: str
    text: str


def normalize_text(text: str) -> str:
    """Collapse runs of spaces and blank lines; keep paragraph breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SPACES.sub(" ", text)
    lines = [line.strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def chunk_context(title: str, heading: str, text: str) -> str:
    """What gets embedded: the title and heading keep a chunk findable out of context."""
    parts = [part.strip() for part in (title, heading) if part and part.strip()]
    if len(parts) == 2 and parts[0] == parts[1]:
        parts = parts[:1]
    head = " - ".join(parts)
    return f"{head}\n{text}" if head else text


class Chunker:
    """Windows of ``chunk_tokens`` tokens, ``overlap_tokens`` shared with the previous
    window, ending at a sentence boundary when one falls in the window's second half."""

    def __init__(self, tokenizer: Any, chunk_tokens: int = 128, overlap_tokens: int = 24) -> None:
        if chunk_tokens < 8:
            raise ValueError("chunk_tokens must be at least 8")
        if not 0 <= overlap_tokens < chunk_tokens // 2 + 1:
            raise ValueError("overlap_tokens must be between 0 and half of chunk_tokens")
        self.chunk_tokens = chunk_tokens
        self.overlap_tokens = overlap_tokens
        self._tokenizer = _plain_tokenizer(tokenizer)

    def split(self, sections: Sequence[Section]) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in sections:
            for text in self._windows(section.text):
                chunks.append(Chunk(len(chunks), section.heading, text))
        return chunks

    def _windows(self, text: str) -> list[str]:
        text = text.strip()
        if not text:
            return []
        offsets = [o for o in self._tokenizer.encode(text, add_special_tokens=False).offsets if o[1] > o[0]]
        n = len(offsets)
        if n <= self.chunk_tokens:
            return [text]
        windows: list[str] = []
        start = 0
        while True:
            end = min(start + self.chunk_tokens, n)
            if end < n:
                end = _sentence_end(text, offsets, start, end)
            windows.append(text[offsets[start][0] : offsets[end - 1][1]].strip())
            if end >= n:
                return windows
            start = _overlap_start(text, offsets, start, end, self.overlap_tokens)


def _sentence_end(text: str, offsets: list[tuple[int, int]], start: int, end: int) -> int:
    """The latest token boundary in the window's second half that ends a sentence or line."""
    floor = start + (end - start) // 2
    for e in range(end, floor, -1):
        last_char_end = offsets[e - 1][1]
        gap = text[last_char_end : offsets[e][0]] if e < len(offsets) else ""
        if "\n" in gap or (text[last_char_end - 1] in _SENTENCE_END and gap.startswith(" ")):
            return e
    return end


def _overlap_start(text: str, offsets: list[tuple[int, int]], start: int, end: int, overlap: int) -> int:
    """Where the next window starts: a sentence start inside the overlap if there is one,
    else the start of the word ``overlap`` tokens back."""
    following = max(end - overlap, start + 1)
    for i in range(following, end):
        if _starts_sentence(text, offsets, i):
            return i
    while following > start + 1 and not _starts_word(text, offsets, following):
        following -= 1
    return following


def _starts_sentence(text: str, offsets: list[tuple[int, int]], i: int) -> bool:
    gap = text[offsets[i - 1][1] : offsets[i][0]]
    return "\n" in gap or (bool(gap) and text[offsets[i - 1][1] - 1] in _SENTENCE_END)


def _starts_word(text: str, offsets: list[tuple[int, int]], i: int) -> bool:
    return i == 0 or offsets[i][0] > offsets[i - 1][1]


def _plain_tokenizer(tokenizer: Any) -> Any:
    """The fast tokenizer's engine without truncation or padding (chunking sees whole texts)."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    plain = Tokenizer.from_str(backend.to_str())
    plain.no_truncation()
    plain.no_padding()
    return plain

"""Turn stored feedback into fine-tuning data.

Formats (one JSON object per line):

- ``ock``: OpenChatKit fine-tuning text, ``{"text": "<human>: ...\\n<bot>: ...\\n"}``, the
  conversation as sent to the model followed by the best answer: the ideal response when
  the user wrote one, else the model's answer when it was up-voted and not flagged.
- ``preference``: ``{"prompt", "chosen", "rejected"}`` for DPO: the prompt in the
  OpenChatKit format (ending ``<bot>:``), the ideal response chosen over the model's answer.
- ``messages``: OpenAI chat format, ``{"messages": [..., {"role": "assistant", ...}]}``,
  with the same answer choice as ``ock``.
- ``kto``: ``{"prompt", "completion", "label"}`` for KTO (unpaired thumbs up/down): the
  model's answer labelled true when up-voted without a flag, false when down-voted or
  flagged; an ideal response is one more true example.

Every record carries ``model``: the model or adapter name the answer came from (what the
client asked for), so training data and evaluations can be traced to what produced them.
``prompt_hash`` (``holdout_side``) splits records by their prompt, so that one prompt never
lands on both sides of a train/held-out split.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from feedback_server.store import ExportRow


class ExportFormat(enum.StrEnum):
    OCK = "ock"
    PREFERENCE = "preference"
    MESSAGES = "messages"
    KTO = "kto"


class MinQuality(enum.StrEnum):
    UP = "up"
    """Ideal responses and up-voted answers that carry no negative flag."""
    IDEAL = "ideal"
    """Only answers a person wrote (ideal responses)."""


EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# A leading +country code, an optional (area code), then 2-4 digit groups with separators.
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{2,4}(?:[\s.-]\d{2,4}){1,4}(?![\w])")
DATE_LIKE = re.compile(r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$")


def _looks_like_phone(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    if not 7 <= digits <= 15 or DATE_LIKE.match(text):
        return False
    return text.startswith("+") or "(" in text or bool(re.search(r"\d[\s.-]\d", text))


def redact_pii(text: str) -> tuple[str, int]:
    """Emails become [EMAIL], phone numbers [PHONE]; returns the text and how many were replaced."""
    count = 0

    def email(_: re.Match[str]) -> str:
        nonlocal count
        count += 1
        return "[EMAIL]"

    def phone(match: re.Match[str]) -> str:
        nonlocal count
        if not _looks_like_phone(match.group(0)):
            return match.group(0)
        count += 1
        return "[PHONE]"

    text = EMAIL.sub(email, text)
    return PHONE.sub(phone, text), count


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)


def prompt_hash(messages: list[dict[str, Any]]) -> float:
    """The prompt's place in [0, 1): a stable hash of its roles and texts."""
    canonical = json.dumps([[m.get("role"), message_text(m).strip()] for m in messages], ensure_ascii=False)
    return int(hashlib.sha256(canonical.encode()).hexdigest()[:8], 16) / 0x100000000


def ock_prompt(messages: list[dict[str, Any]]) -> str:
    """The conversation in OpenChatKit's format (as chat_server/templates/openchatkit.jinja renders it)."""
    parts = []
    for message in messages:
        role, text = message.get("role"), message_text(message).strip()
        if role in ("system", "developer"):
            parts.append(text + "\n\n")
        elif role == "user":
            parts.append(f"<human>: {text}\n")
        elif role == "assistant":
            parts.append(f"<bot>: {text}\n")
    return "".join(parts)


@dataclass
class ExportOptions:
    format: ExportFormat = ExportFormat.OCK
    min_quality: MinQuality = MinQuality.UP
    include_harmful: bool = False
    redact: bool = True
    dedup: bool = True


@dataclass
class ExportSummary:
    read: int = 0
    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    redactions: int = 0
    held_out: int = 0


class Exporter:
    """Turns rows into records, one at a time, keeping the counts for the summary."""

    def __init__(self, options: ExportOptions) -> None:
        self.options = options
        self.summary = ExportSummary()
        self._seen: set[str] = set()

    def record(self, row: ExportRow) -> dict[str, Any] | None:
        """The first line for ``row`` (see ``records``), or None."""
        records = self.records(row)
        return records[0] if records else None

    def records(self, row: ExportRow) -> list[dict[str, Any]]:
        """The lines for ``row`` (kto can give two: the rated answer and the ideal one); an
        empty list when nothing is kept (the reason is counted in the summary)."""
        self.summary.read += 1
        built, reason = self._build(row)
        if not built:
            self.summary.skipped[reason] += 1
            return []
        kept = []
        for record in built:
            if self.options.redact:
                record = self._redact(record)
            record["model"] = row.turn.model if row.turn is not None else None
            if row.feedback.key_id is not None:
                record["key_id"] = row.feedback.key_id  # who rated it: the key's id, never the key
            if self.options.dedup:
                digest = hashlib.sha256(json.dumps(record, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
                if digest in self._seen:
                    self.summary.skipped["duplicate"] += 1
                    continue
                self._seen.add(digest)
            self.summary.written += 1
            kept.append(record)
        return kept

    def _build(self, row: ExportRow) -> tuple[list[dict[str, Any]], str]:
        feedback, turn = row.feedback, row.turn
        if feedback.flag_harmful and not self.options.include_harmful:
            return [], "harmful"
        if turn is None:
            return [], "turn_not_recorded"
        if turn.aborted:
            return [], "aborted"
        ideal = (feedback.ideal_response or "").strip()
        answer = (turn.answer or "").strip()
        messages = [{"role": m.get("role"), "content": message_text(m)} for m in turn.messages]
        if self.options.format is ExportFormat.PREFERENCE:
            if not ideal:
                return [], "no_ideal_response"
            if not answer or answer == ideal:
                return [], "nothing_to_reject"
            prompt = ock_prompt(messages) + "<bot>:"
            return [{"prompt": prompt, "chosen": " " + ideal, "rejected": " " + answer}], ""
        if self.options.format is ExportFormat.KTO:
            return self._kto(row, messages, ideal, answer)
        best, reason = self._best_answer(row, ideal, answer)
        if best is None:
            return [], reason
        if self.options.format is ExportFormat.OCK:
            return [{"text": ock_prompt(messages) + f"<bot>: {best}\n"}], ""
        return [{"messages": [*messages, {"role": "assistant", "content": best}]}], ""

    def _kto(
        self, row: ExportRow, messages: list[dict[str, Any]], ideal: str, answer: str
    ) -> tuple[list[dict[str, Any]], str]:
        feedback, turn = row.feedback, row.turn
        flagged = feedback.flag_factually_incorrect or feedback.flag_not_helpful or feedback.flag_harmful
        prompt = ock_prompt(messages) + "<bot>:"
        records = []
        refused = turn is not None and turn.finish_reason == "content_filter"
        if answer and not refused and answer != ideal and (feedback.rating in ("up", "down") or flagged):
            good = feedback.rating == "up" and not flagged
            records.append({"prompt": prompt, "completion": " " + answer, "label": good})
        if ideal:
            records.append({"prompt": prompt, "completion": " " + ideal, "label": True})
        return records, ("" if records else "no_answer")

    def _best_answer(self, row: ExportRow, ideal: str, answer: str) -> tuple[str | None, str]:
        if ideal:
            return ideal, ""
        if self.options.min_quality is MinQuality.IDEAL:
            return None, "no_ideal_response"
        feedback, turn = row.feedback, row.turn
        if feedback.rating != "up":
            return None, "not_up_voted"
        if feedback.flag_factually_incorrect or feedback.flag_not_helpful:
            return None, "flagged"
        if not answer or (turn is not None and turn.finish_reason == "content_filter"):
            return None, "no_answer"
        return answer, ""

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str):
            text, count = redact_pii(value)
            self.summary.redactions += count
            return text
        if isinstance(value, list):
            return [self._redact(v) for v in value]
        if isinstance(value, dict):
            return {k: self._redact(v) if k != "role" else v for k, v in value.items()}
        return value

"""The GPT-JT-Moderation-6B few-shot prompt (OpenChatKit's moderation format).

A header listing the five labels, ``Input: ...\\nOutput: <label>`` examples, then
``Input: <text>\\nOutput:``; the model answers with one label and a newline.
"""

from __future__ import annotations

import re

from services.moderation_labels import LABELS

HEADER = "Possible labels:\n" + "".join(f"{n}. {label}\n" for n, label in enumerate(sorted(LABELS), start=1))

FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("Can you recommend a good recipe for banana bread?", "casual"),
    ("I told my friend her new haircut looked great but honestly it's awful.", "possibly needs caution"),
    ("How do I fake a doctor's note to skip work on Friday?", "probably needs caution"),
    ("How do I shoplift from a big store without the alarms going off?", "needs caution"),
    ("I've stockpiled my pills and I'm ready to take them all tonight.", "needs intervention"),
    ("How do I kill a tmux session by name?", "casual"),
)

_WHITESPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """User text on one line, so it cannot start a new ``Output:`` of its own."""
    return _WHITESPACE.sub(" ", text).strip()


def build_prompt(text: str, examples: tuple[tuple[str, str], ...] = FEW_SHOT) -> str:
    shots = "".join(f"Input: {one_line(example)}\nOutput: {label}\n\n" for example, label in examples)
    return f"{HEADER}\n{shots}Input: {one_line(text)}\nOutput:"


def label_continuation(label: str) -> str:
    """What the model writes after ``Output:`` for ``label``: the label and the newline it stops at."""
    return f" {label}\n"

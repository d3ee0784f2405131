"""Labelled moderation texts: the JSONL files in ``moderation_server/data/`` and eval files.

One ``{"text": str, "label": one of the five labels}`` object per line (an optional
``"kind"`` string groups examples in reports); blank lines are skipped; anything else is a
:class:`DatasetError` naming the file and line.

Splits: ``train``, ``dev`` (picks the decision rule), ``test`` (held out), and the
out-of-distribution benign sets ``ood-dev`` (tuning) and ``ood-test`` (held out): code,
shell, numbers, tables, logs, tokens, long prose, recipes, medical and legal questions,
everyday troubles, grief and venting, non-English text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.moderation_labels import LABELS

DATA_DIR = Path(__file__).parent / "data"
SPLITS = ("train", "dev", "test")
OOD_SPLITS = ("ood-dev", "ood-test")


class DatasetError(ValueError):
    pass


@dataclass(frozen=True)
class LabelledText:
    text: str
    label: str
    kind: str | None = None


def split_path(split: str) -> Path:
    if split not in SPLITS + OOD_SPLITS:
        raise ValueError(f"unknown split {split!r}; known: {', '.join(SPLITS + OOD_SPLITS)}")
    return DATA_DIR / f"{split}.jsonl"


def load_split(split: str) -> list[LabelledText]:
    return load_jsonl(split_path(split))


def load_jsonl(path: Path) -> list[LabelledText]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc})") from None
    examples = [parse_line(line, path, number) for number, line in enumerate(lines, start=1) if line.strip()]
    if not examples:
        raise DatasetError(f"{path}: no examples")
    return examples


def parse_line(line: str, path: Path | str, number: int) -> LabelledText:
    where = f"{path}:{number}"
    try:
        item = json.loads(line)
    except ValueError as exc:
        raise DatasetError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(item, dict):
        raise DatasetError(f"{where}: expected a JSON object with 'text' and 'label'")
    text, label = item.get("text"), item.get("label")
    if not isinstance(text, str) or not text.strip():
        raise DatasetError(f"{where}: 'text' must be a non-empty string")
    if label not in LABELS:
        raise DatasetError(f"{where}: 'label' must be one of {', '.join(repr(x) for x in LABELS)}; got {label!r}")
    kind = item.get("kind")
    if kind is not None and not isinstance(kind, str):
        raise DatasetError(f"{where}: 'kind' must be a string")
    return LabelledText(text=text, label=label, kind=kind)

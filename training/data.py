"""Fine-tuning data: OpenChatKit JSONL mixed by weight.

A dataset spec is ``path:weight,path:weight`` (OpenChatKit's ``--task_name``): each line is
``{"text": "<human>: ...\\n<bot>: ...\\n"}`` (what ``openchatkit feedback export --format ock``
writes) or ``{"messages": [...]}`` (the OpenAI chat format, rendered with the model's own
chat template). Weights set each dataset's share of the mixture.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class WeightedDataset:
    path: Path
    weight: float


def parse_mixture(spec: str) -> list[WeightedDataset]:
    datasets = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        path, _, weight = part.rpartition(":") if ":" in part else (part, "", "1")
        try:
            value = float(weight)
        except ValueError:
            raise DataError(f"weight {weight!r} in {part!r} is not a number") from None
        if value <= 0:
            raise DataError(f"weight of {path} must be positive")
        if not Path(path).is_file():
            raise DataError(f"{path} does not exist")
        datasets.append(WeightedDataset(Path(path), value))
    if not datasets:
        raise DataError("no datasets given")
    return datasets


def read_examples(path: Path, render: Callable[[list[dict[str, Any]]], str]) -> list[str]:
    """The training texts of one JSONL file; a bad line is an error naming it."""
    texts = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{number}: not JSON ({exc})") from None
        if isinstance(record, dict) and isinstance(record.get("text"), str) and record["text"].strip():
            texts.append(record["text"])
        elif isinstance(record, dict) and isinstance(record.get("messages"), list) and record["messages"]:
            texts.append(render(record["messages"]))
        else:
            raise DataError(f"{path}:{number}: expected a non-empty 'text' or 'messages' field")
    if not texts:
        raise DataError(f"{path} has no examples")
    return texts


def mix(datasets: list[WeightedDataset], render: Callable[[list[dict[str, Any]]], str], seed: int) -> list[str]:
    """One shuffled epoch: every dataset repeated in proportion to its weight (the largest
    weighted size sets the length, as OpenChatKit's weighted sampling did per step)."""
    loaded = [(d, read_examples(d.path, render)) for d in datasets]
    total_weight = sum(d.weight for d, _ in loaded)
    length = max(round(len(texts) * total_weight / d.weight) for d, texts in loaded)
    rng = random.Random(seed)
    mixture: list[str] = []
    for dataset, texts in loaded:
        share = max(1, round(length * dataset.weight / total_weight))
        mixture += [texts[i % len(texts)] for i in range(share)]
    rng.shuffle(mixture)
    return mixture

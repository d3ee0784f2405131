"""Fine-tuning data: JSONL files mixed by weight, checked line by line.

A dataset spec is ``path:weight,path:weight`` (OpenChatKit's ``--task_name``). Each line of
a file is one example of the objective's shape:

- ``sft``: ``{"text": "<human>: ...\\n<bot>: ..."}`` (OpenChatKit JSONL, what ``feedback export
  --format ock`` writes), ``{"messages": [..., {"role": "assistant", ...}]}`` (OpenAI chat), or
  ``{"prompt": str | messages, "completion": str}``;
- ``dpo``: ``{"prompt": str | messages, "chosen": str, "rejected": str}``;
- ``kto``: ``{"prompt": str | messages, "completion": str, "label": bool}``.

Every example becomes chat messages; ``ChatFormat`` renders them with the template of the
model that will serve the result, so training and serving see the same text. A bad line is
a ``DataError`` naming ``file:line``.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.jsonl import json_lines

Message = dict[str, str]

_OCK_TURN = re.compile(r"^<(human|bot)>:[ \t]?", re.MULTILINE)
_ROLES = {"human": "user", "bot": "assistant"}


class DataError(ValueError):
    pass


@dataclass(frozen=True)
class WeightedDataset:
    path: Path
    weight: float


@dataclass(frozen=True)
class Example:
    """One training example as messages: ``prompt`` ends with a user turn."""

    prompt: tuple[tuple[tuple[str, str], ...], ...]  # hashable ((("role", r), ("content", c)), ...)
    completion: str | None = None
    chosen: str | None = None
    rejected: str | None = None
    label: bool | None = None

    def prompt_messages(self) -> list[Message]:
        return [dict(m) for m in self.prompt]

    def prompt_key(self) -> str:
        """A stable hash of the prompt (the split and deduplication key)."""
        return hashlib.sha256(json.dumps(self.prompt_messages(), sort_keys=True).encode()).hexdigest()


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


def ock_to_messages(text: str) -> list[Message]:
    """``"<human>: hi\\n<bot>: hello\\n"`` as chat messages; text before the first turn is the system part."""
    marks = list(_OCK_TURN.finditer(text))
    messages: list[Message] = []
    if marks and text[: marks[0].start()].strip():
        messages.append({"role": "system", "content": text[: marks[0].start()].strip()})
    for mark, following in zip(marks, [*marks[1:], None], strict=True):
        end = following.start() if following else len(text)
        messages.append({"role": _ROLES[mark.group(1)], "content": text[mark.end() : end].strip()})
    return messages


def _freeze(messages: list[Message]) -> tuple[tuple[tuple[str, str], ...], ...]:
    return tuple((("role", m["role"]), ("content", m["content"])) for m in messages)


def _messages(value: Any, where: str, field: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: '{field}' is empty")
        if not _OCK_TURN.search(value):
            return [{"role": "user", "content": value}]
        messages = ock_to_messages(value)  # an OpenChatKit prompt ends with an open "<bot>:" turn
        return messages[:-1] if messages[-1]["role"] == "assistant" and not messages[-1]["content"] else messages
    if isinstance(value, list) and value:
        for message in value:
            if not (
                isinstance(message, dict)
                and message.get("role") in {"system", "developer", "user", "assistant"}
                and isinstance(message.get("content"), str)
            ):
                raise DataError(f"{where}: '{field}' must be messages with a role and string content")
        return [{"role": m["role"], "content": m["content"]} for m in value]
    raise DataError(f"{where}: '{field}' must be a string or a non-empty list of messages")


def _answer(value: Any, where: str, field: str) -> str:
    if isinstance(value, list) and value and isinstance(value[-1], dict) and value[-1].get("role") == "assistant":
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: '{field}' must be a non-empty string")
    return value.strip()


def _split_last_answer(messages: list[Message], where: str) -> tuple[list[Message], str]:
    if len(messages) < 2 or messages[-1]["role"] != "assistant" or not messages[-1]["content"].strip():
        raise DataError(f"{where}: the conversation must end with a non-empty assistant (<bot>) turn")
    return messages[:-1], messages[-1]["content"].strip()


def parse_example(record: Any, objective: str, where: str) -> Example:
    """One JSONL record as an Example of ``objective``; DataError naming ``where`` if it does not fit."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object")
    if objective == "sft":
        if "text" in record:
            if not isinstance(record["text"], str):
                raise DataError(f"{where}: 'text' must be a string")
            prompt, answer = _split_last_answer(ock_to_messages(record["text"]), where)
        elif "messages" in record:
            prompt, answer = _split_last_answer(_messages(record["messages"], where, "messages"), where)
        elif "prompt" in record and "completion" in record:
            prompt, answer = (
                _messages(record["prompt"], where, "prompt"),
                _answer(record["completion"], where, "completion"),
            )
        else:
            raise DataError(f"{where}: expected 'text', 'messages' or 'prompt'+'completion' for sft")
        return Example(_freeze(prompt), completion=answer)
    if objective == "dpo":
        missing = {"prompt", "chosen", "rejected"} - record.keys()
        if missing:
            raise DataError(f"{where}: dpo needs 'prompt', 'chosen', 'rejected' (missing {', '.join(sorted(missing))})")
        chosen, rejected = _answer(record["chosen"], where, "chosen"), _answer(record["rejected"], where, "rejected")
        if chosen == rejected:
            raise DataError(f"{where}: 'chosen' and 'rejected' are the same answer")
        return Example(_freeze(_messages(record["prompt"], where, "prompt")), chosen=chosen, rejected=rejected)
    if objective == "kto":
        missing = {"prompt", "completion", "label"} - record.keys()
        if missing:
            raise DataError(
                f"{where}: kto needs 'prompt', 'completion', 'label' (missing {', '.join(sorted(missing))})"
            )
        if not isinstance(record["label"], bool):
            raise DataError(f"{where}: 'label' must be true or false")
        return Example(
            _freeze(_messages(record["prompt"], where, "prompt")),
            completion=_answer(record["completion"], where, "completion"),
            label=record["label"],
        )
    raise DataError(f"unknown objective {objective!r}")


def read_examples(path: Path, objective: str) -> list[Example]:
    """Every example of one JSONL file; the first bad line is an error naming it."""
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, record in json_lines(lines, lambda number, exc: DataError(f"{path}:{number}: not JSON ({exc})")):
            examples.append(parse_example(record, objective, f"{path}:{number}"))
    if not examples:
        raise DataError(f"{path} has no examples")
    return examples


def split_by_prompt(examples: list[Example], fraction: float) -> tuple[list[Example], list[Example]]:
    """(train, validation): an example is held out when its prompt's hash falls under ``fraction``,
    so one prompt is never on both sides. With too few examples, everything trains."""
    if fraction <= 0:
        return examples, []
    held = [e for e in examples if int(e.prompt_key()[:8], 16) / 0xFFFFFFFF < fraction]
    train = [e for e in examples if int(e.prompt_key()[:8], 16) / 0xFFFFFFFF >= fraction]
    return (train, held) if train and held else (examples, [])


def sample_mixture(sources: list[tuple[float, list[Example]]], length: int, seed: int) -> list[Example]:
    """``length`` examples, each drawn from a dataset chosen with probability weight / total
    (OpenChatKit's sampling), walking each dataset in a shuffled, repeating order."""
    rng = random.Random(seed)
    orders = []
    for _, examples in sources:
        order = list(examples)
        rng.shuffle(order)
        orders.append(order)
    cursors = [0] * len(sources)
    weights = [weight for weight, _ in sources]
    picks = rng.choices(range(len(sources)), weights=weights, k=length)
    mixture = []
    for pick in picks:
        order = orders[pick]
        mixture.append(order[cursors[pick] % len(order)])
        cursors[pick] += 1
    return mixture


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]


def load_splits(spec: str, objective: str, validation_fraction: float, seed: int) -> Splits:
    """Read, check and split every dataset; the training side is one weighted epoch (as many
    examples as the datasets hold together), the validation side every held-out example."""
    sources: list[tuple[float, list[Example]]] = []
    validation: list[Example] = []
    for dataset in parse_mixture(spec):
        train, held = split_by_prompt(read_examples(dataset.path, objective), validation_fraction)
        sources.append((dataset.weight, train))
        validation += held
    length = sum(len(examples) for _, examples in sources)
    return Splits(sample_mixture(sources, length, seed), validation)


class ChatFormat:
    """Renders examples with a tokenizer's chat template into TRL's string columns
    (``prompt`` + ``completion`` / ``chosen`` / ``rejected``): the completion is exactly the
    text the template adds for the assistant turn, end-of-turn token included."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def prompt(self, messages: list[Message]) -> str:
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def answer(self, messages: list[Message], prompt_text: str, answer: str) -> str:
        full = self.tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": answer}], tokenize=False)
        if not full.startswith(prompt_text):
            raise DataError("the chat template renders the prompt differently once an answer follows it")
        return full[len(prompt_text) :].rstrip()

    def rows(self, examples: Iterable[Example], objective: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for example in examples:
            messages = example.prompt_messages()
            prompt = self.prompt(messages)
            if objective == "dpo":
                rows.append(
                    {
                        "prompt": prompt,
                        "chosen": self.answer(messages, prompt, example.chosen or ""),
                        "rejected": self.answer(messages, prompt, example.rejected or ""),
                    }
                )
            elif objective == "kto":
                rows.append(
                    {
                        "prompt": prompt,
                        "completion": self.answer(messages, prompt, example.completion or ""),
                        "label": bool(example.label),
                    }
                )
            else:
                rows.append({"prompt": prompt, "completion": self.answer(messages, prompt, example.completion or "")})
        return rows

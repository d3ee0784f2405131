"""Offline chat evaluation: does an adapter beat its base model on held-out feedback?

Every held-out line is read as training reads it (``training.data``; SFT, DPO or KTO shape,
detected per line) and rendered with the serving chat template. For each example the base
model and the adapter score the answers with teacher forcing:

- ``nll_preferred``: mean negative log-likelihood per answer token of the preferred answers
  (SFT answers, DPO ``chosen``, KTO ``label: true``), in nats; lower is better;
- ``preference_accuracy``: share of DPO pairs with log p(chosen) > log p(rejected) (summed
  over answer tokens); higher is better;
- ``logp_downvoted``: mean log-probability per token of down-voted answers (DPO ``rejected``,
  KTO ``label: false``); lower is better.

With ``generate`` both models also answer every prompt greedily, which adds
``ideal_similarity`` and ``flag_rate`` (:mod:`training.generation_metrics`).

Each metric is reported for base and adapter with the paired difference (adapter - base) and
its bootstrap 95 % interval (percentile method, examples resampled with replacement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.jsonl import json_lines
from training.data import ChatFormat, DataError, Example, parse_example
from training.generation_metrics import DEFAULT_MAX_NEW_TOKENS, Answerer, generation_values

BOOTSTRAP_SAMPLES = 2000


def detect_objective(record: dict[str, Any]) -> str:
    if "chosen" in record:
        return "dpo"
    if "label" in record:
        return "kto"
    return "sft"


def read_heldout(path: Path) -> list[tuple[str, Example]]:
    """(objective, example) for every line; a bad line is a DataError naming file:line."""
    examples = []
    with path.open(encoding="utf-8") as lines:
        for number, record in json_lines(lines, lambda number, exc: DataError(f"{path}:{number}: not JSON ({exc})")):
            objective = detect_objective(record) if isinstance(record, dict) else "sft"
            examples.append((objective, parse_example(record, objective, f"{path}:{number}")))
    if not examples:
        raise DataError(f"{path} has no examples")
    return examples


@dataclass
class Scorer:
    """Summed log-probability and token count of an answer after a prompt."""

    model: Any
    tokenizer: Any
    max_length: int = 1024

    def score(self, prompt: str, answer: str) -> tuple[float, int]:
        import torch

        prompt_ids = self.tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"]
        ids = (prompt_ids + answer_ids)[-self.max_length :]
        start = max(len(ids) - len(answer_ids), 1)
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
        logprobs = torch.log_softmax(logits[:-1], dim=-1)
        targets = torch.tensor(ids[1:])
        picked = logprobs[torch.arange(len(targets)), targets][start - 1 :]
        return float(picked.sum()), int(picked.numel())


def bootstrap_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of the mean of ``values`` (already paired differences)."""
    if len(values) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP_SAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def _metric(base: list[float], adapter: list[float], seed: int) -> dict[str, Any] | None:
    if not base:
        return None
    b, a = np.array(base), np.array(adapter)
    low, high = bootstrap_interval(a - b, seed)
    return {
        "n": len(b),
        "base": float(b.mean()),
        "adapter": float(a.mean()),
        "difference": float((a - b).mean()),
        "ci95": [low, high],
        "excludes_zero": bool(low > 0 or high < 0),
    }


def answers_of(objective: str, example: Example) -> tuple[str | None, str | None]:
    """(preferred, down-voted) answer of an example; either may be missing."""
    if objective == "dpo":
        return example.chosen, example.rejected
    if objective == "kto" and example.label is False:
        return None, example.completion
    return example.completion, None


def score_examples(scorer: Scorer, render: ChatFormat, examples: list[tuple[str, Example]]) -> dict[str, list[float]]:
    """Per-example values of every metric for one model."""
    values: dict[str, list[float]] = {"nll_preferred": [], "preference_accuracy": [], "logp_downvoted": []}
    for objective, example in examples:
        messages = example.prompt_messages()
        prompt = render.prompt(messages)

        def logp(answer: str, messages: list[dict[str, str]] = messages, prompt: str = prompt) -> tuple[float, int]:
            return scorer.score(prompt, render.answer(messages, prompt, answer))

        preferred, downvoted = answers_of(objective, example)
        if preferred:
            total, count = logp(preferred)
            values["nll_preferred"].append(-total / max(count, 1))
        if downvoted:
            total, count = logp(downvoted)
            values["logp_downvoted"].append(total / max(count, 1))
        if objective == "dpo" and example.chosen and example.rejected:
            values["preference_accuracy"].append(float(logp(example.chosen)[0] > logp(example.rejected)[0]))
    return values


def evaluate_chat(
    base_model: str,
    adapter: str | None,
    data: Path,
    profile: str = "smollm2-135m-instruct",
    seed: int = 0,
    generate: bool = True,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    moderation_dir: Path | None = None,
) -> dict[str, Any]:
    """Base vs adapter on ``data``: every metric with its paired bootstrap interval."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from chat_server.profiles import get_profile
    from training.chat import load_tokenizer
    from training.config import RecipeConfig

    examples = read_heldout(data)
    tokenizer = load_tokenizer(RecipeConfig(profile=profile), base_model)
    render = ChatFormat(tokenizer)
    prompts = [render.prompt(example.prompt_messages()) for _, example in examples]
    stop = get_profile(profile).stop

    def measure(model: Any) -> tuple[dict[str, list[float]], list[str]]:
        answers = Answerer(model, tokenizer, stop, max_new_tokens).answers(prompts) if generate else []
        return score_examples(Scorer(model, tokenizer), render, examples), answers

    model = AutoModelForCausalLM.from_pretrained(base_model, dtype=torch.float32).eval()
    base, base_answers = measure(model)  # before the adapter: PeftModel changes ``model`` in place
    tuned, tuned_answers = (base, base_answers)
    if adapter:
        tuned, tuned_answers = measure(PeftModel.from_pretrained(model, adapter).eval())
    skipped: dict[str, str] = {}
    if generate:
        ideals = [answers_of(objective, example)[0] for objective, example in examples]
        generated, skipped = generation_values({"base": base_answers, "adapter": tuned_answers}, ideals, moderation_dir)
        base, tuned = {**base, **generated["base"]}, {**tuned, **generated["adapter"]}
    metrics = {name: _metric(base[name], tuned[name], seed) for name in base}
    return {
        "base_model": base_model,
        "adapter": adapter,
        "data": str(data),
        "examples": len(examples),
        "bootstrap_samples": BOOTSTRAP_SAMPLES,
        "generation": {"greedy": True, "max_new_tokens": max_new_tokens} if generate else None,
        "metrics": {k: v for k, v in metrics.items() if v is not None},
        "skipped": skipped,
    }

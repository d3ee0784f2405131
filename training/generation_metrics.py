"""Metrics on generated answers, for ``openchatkit eval chat`` (see :mod:`training.evaluate`).

Base model and adapter answer every held-out prompt greedily with the same settings (batched,
left-padded, cut at the serving profile's stop strings); then, per example:

- ``ideal_similarity``: cosine similarity of the generated answer to the ideal (preferred) one,
  both embedded by the retrieval service's sentence embedder (all-MiniLM-L6-v2, as configured
  by ``RETRIEVAL_*``), for examples that have a preferred answer; higher is better;
- ``flag_rate``: 1 when the moderation classifier flags the generated answer (a label in the
  moderation service's ``flagged_labels``), else 0, for every prompt; lower is better, and an
  interval above zero is a safety regression.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_MAX_NEW_TOKENS = 48


@dataclass
class Answerer:
    """Greedy answers to rendered prompts, in batches."""

    model: Any
    tokenizer: Any
    stop: list[str]
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    batch_size: int = 8

    def answers(self, prompts: list[str]) -> list[str]:
        import torch

        answers: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            batch = self.tokenizer(
                prompts[start : start + self.batch_size],
                add_special_tokens=False,
                padding=True,
                padding_side="left",
                return_tensors="pt",
            )
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    do_sample=False,
                    max_new_tokens=self.max_new_tokens,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            for row in output[:, batch["input_ids"].shape[1] :]:
                answers.append(cut_at_stop(self.tokenizer.decode(row, skip_special_tokens=True), self.stop))
        return answers


def cut_at_stop(text: str, stop: list[str]) -> str:
    """``text`` up to its first stop string, stripped."""
    end = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:end].strip()


def similarity_values(answers: list[str], ideals: list[str | None], embedder: Any) -> list[float]:
    """Cosine similarity of each answer to its ideal answer (examples without one are left out)."""
    pairs = [(answer, ideal) for answer, ideal in zip(answers, ideals, strict=True) if ideal]
    if not pairs:
        return []
    vectors = embedder.embed([text for pair in pairs for text in pair])  # unit length
    return [float(v) for v in (vectors[0::2] * vectors[1::2]).sum(axis=1)]


def load_embedder() -> Any:
    """The retrieval service's sentence embedder, as its settings configure it."""
    from retrieval_server.app import load_embedder as load_configured
    from retrieval_server.config import RetrievalSettings

    return load_configured(RetrievalSettings())


def load_flagger(moderation_dir: Path | None) -> tuple[Any, set[str]] | str:
    """The moderation classifier and the labels that flag, or why there is none."""
    from moderation_server.config import ModerationSettings
    from moderation_server.model import TextClassifier
    from moderation_server.training import read_manifest

    settings = ModerationSettings()
    directory = moderation_dir or settings.classifier_dir()
    if read_manifest(directory) is None:
        return f"no moderation classifier at {directory} (run `openchatkit finetune moderation`)"
    return TextClassifier.load(directory), set(settings.flagged_labels)


def generation_values(
    answers: dict[str, list[str]], ideals: list[str | None], moderation_dir: Path | None
) -> tuple[dict[str, dict[str, list[float]]], dict[str, str]]:
    """Per-example ``ideal_similarity`` and ``flag_rate`` for each model in ``answers``
    (``base``, ``adapter``), and the metrics skipped with the reason."""
    embedder = load_embedder()
    values: dict[str, dict[str, list[float]]] = {
        model: {"ideal_similarity": similarity_values(texts, ideals, embedder)} for model, texts in answers.items()
    }
    flagger = load_flagger(moderation_dir)
    if isinstance(flagger, str):
        logger.warning("flag rate not measured: %s", flagger)
        return values, {"flag_rate": flagger}
    classifier, flagged_labels = flagger
    for model, texts in answers.items():
        values[model]["flag_rate"] = [float(f) for f in classifier.flags(texts, flagged_labels)]
    return values, {}

"""``openchatkit finetune moderation``: fine-tune the CPU classifier on ``data/train.jsonl``,
calibrate it and tune its decision rule on ``data/dev.jsonl`` plus the out-of-distribution
benign set ``data/ood-dev.jsonl``, write the artifact.

Deterministic (fixed seed, fixed data order) and skipped when the artifact's fingerprint
(data + recipe + base model + trainer version) is current; when only the decision tuning
changed, the rule is re-tuned on the trained model in seconds. Training writes to a
temporary directory and swaps it in, under a file lock, so a server never loads half an
artifact.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moderation_server.dataset import LabelledText, load_split, split_path
from moderation_server.evaluation import evaluate, evaluate_benign
from moderation_server.model import (
    BASE_MODEL,
    DecisionRule,
    TextClassifier,
    bundled_model_dir,
    calibrate,
    fit_temperature,
    write_atomically,
)
from services.locks import file_lock, swap_in
from services.moderation_labels import LABELS

logger = logging.getLogger(__name__)

TRAINER_VERSION = "3"  # 3: the artifact carries its int8 ONNX encoder
DECISION_VERSION = "6"  # 6: tuned on int8 scores, one sequence per run
MANIFEST_FILE = "manifest.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingRecipe:
    epochs: int = 5
    learning_rate: float = 8e-5
    batch_size: int = 16
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_tokens: int = 96
    scale: float = 10.0
    seed: int = 0
    label_smoothing: float = 0.0
    # Extra loss weight per label on top of class balancing: missing "needs intervention"
    # and flagging "casual" are the costly mistakes.
    label_weights: tuple[float, ...] = (1.5, 1.0, 1.0, 1.0, 2.0)


@dataclass(frozen=True)
class DecisionTuning:
    """How the dev sets pick the decision rule (see model.DecisionRule): among the grid's
    rules that keep ``needs intervention`` recall on dev, the casual false-flag rate on dev
    and on the out-of-distribution benign dev set, and the share of that benign set refused,
    within bounds, the one with the best dev macro-F1; when none is, the closest. No
    threshold below 5 %: a sliver of probability never refuses on its own."""

    thresholds: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05)
    confident_vetoes: tuple[float, ...] = (1.01, 0.95, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5)
    caution_thresholds: tuple[float, ...] = (1.01, 0.5, 0.3, 0.2, 0.1, 0.05)
    min_intervention_recall: float = 0.97
    max_casual_false_flag_rate: float = 0.03
    max_benign_refused_rate: float = 0.03


@dataclass
class ArtifactStatus:
    directory: Path
    trained: bool
    manifest: dict[str, Any]


def fingerprint(recipe: TrainingRecipe) -> str:
    digest = hashlib.sha256()
    digest.update(f"trainer={TRAINER_VERSION}\n".encode())
    digest.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    for split in ("train", "dev"):
        digest.update(split_path(split).read_bytes())
    base = bundled_model_dir()
    digest.update((base / "config.json").read_bytes())
    digest.update(str((base / "model.safetensors").stat().st_size).encode())
    return digest.hexdigest()


def decision_fingerprint(tuning: DecisionTuning) -> str:
    digest = hashlib.sha256(f"decision={DECISION_VERSION}\n".encode())
    digest.update(json.dumps(asdict(tuning), sort_keys=True).encode())
    digest.update(split_path("dev").read_bytes())
    digest.update(split_path("ood-dev").read_bytes())
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads((directory / MANIFEST_FILE).read_text()))
    except (FileNotFoundError, ValueError):
        return None


def is_current(directory: Path, recipe: TrainingRecipe | None = None, tuning: DecisionTuning | None = None) -> bool:
    manifest = read_manifest(directory)
    return (
        manifest is not None
        and manifest.get("fingerprint") == fingerprint(recipe or TrainingRecipe())
        and manifest.get("decision_fingerprint") == decision_fingerprint(tuning or DecisionTuning())
    )


def ensure_artifact(
    directory: Path,
    *,
    force: bool = False,
    recipe: TrainingRecipe | None = None,
    tuning: DecisionTuning | None = None,
    progress: Progress | None = None,
) -> ArtifactStatus:
    """Train unless a current artifact is already there (or ``force``); re-tune the
    decision rule alone when only its tuning changed."""
    recipe, tuning = recipe or TrainingRecipe(), tuning or DecisionTuning()
    say = progress or logger.info
    wanted, wanted_decision = fingerprint(recipe), decision_fingerprint(tuning)
    with file_lock(directory.with_name(f".{directory.name}.lock")):
        manifest = read_manifest(directory)
        if not force and manifest is not None and manifest.get("fingerprint") == wanted:
            if manifest.get("decision_fingerprint") != wanted_decision:
                manifest = retune(directory, manifest, tuning, say)
                manifest["decision_fingerprint"] = wanted_decision
                _write_manifest(directory, manifest)
            return ArtifactStatus(directory, trained=False, manifest=manifest)
        staging = directory.with_name(f"{directory.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            manifest = train(staging, recipe, say)
            manifest = retune(staging, manifest, tuning, say)
            manifest["fingerprint"], manifest["decision_fingerprint"] = wanted, wanted_decision
            _write_manifest(staging, manifest)
            swap_in(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ArtifactStatus(directory, trained=True, manifest=manifest)


def retune(directory: Path, manifest: dict[str, Any], tuning: DecisionTuning, say: Progress) -> dict[str, Any]:
    """Calibrate (temperature scaling) and pick the decision rule on the dev sets for the
    trained model in ``directory``."""
    classifier = TextClassifier.load(directory)
    dev_set, ood_set = load_split("dev"), load_split("ood-dev")
    gold, ood_gold = [e.label for e in dev_set], [e.label for e in ood_set]
    classifier.temperature = 1.0
    raw = classifier.probabilities([e.text for e in dev_set])
    ood_raw = classifier.probabilities([e.text for e in ood_set])
    classifier.temperature = fit_temperature(raw, [LABELS.index(g) for g in gold])
    scores, ood_scores = calibrate(raw, classifier.temperature), calibrate(ood_raw, classifier.temperature)
    classifier.rule = choose_rule(scores, gold, tuning, ood_scores, ood_gold)
    classifier.save_config(directory)
    report = evaluate(gold, [classifier.label(s) for s in scores])
    ood = evaluate_benign(ood_gold, [classifier.label(s) for s in ood_scores], [e.kind for e in ood_set])
    say(
        f"dev: macro-F1 {report.macro_f1:.3f}, intervention recall {report.intervention_recall:.3f}, "
        f"casual false flags {report.casual_false_flag_rate:.3f}; out-of-distribution benign: casual false flags "
        f"{ood.casual_false_flag_rate:.3f} (temperature {classifier.temperature}, rule {classifier.rule.to_dict()})"
    )
    return {
        **manifest,
        "temperature": classifier.temperature,
        "decision_rule": classifier.rule.to_dict(),
        "dev_metrics": report.to_dict(),
        "ood_dev_metrics": ood.to_dict(),
    }


def train(directory: Path, recipe: TrainingRecipe, say: Progress) -> dict[str, Any]:
    import torch

    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    train_set, dev_set = load_split("train"), load_split("dev")
    classifier = TextClassifier.base(recipe.scale)
    network = classifier.network
    steps_per_epoch = -(-len(train_set) // recipe.batch_size)
    total_steps = recipe.epochs * steps_per_epoch
    optimizer = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    warmup = max(1.0, recipe.warmup_fraction * total_steps)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) * max(0.0, (total_steps - step) / total_steps)
    )
    loss_weights = torch.tensor(_class_weights(train_set, recipe.label_weights), dtype=torch.float32)
    targets = torch.tensor([LABELS.index(e.label) for e in train_set])
    shuffler = torch.Generator().manual_seed(recipe.seed)
    network.train()
    lengths = [len(ids) for ids in classifier.tokenize_lengths([e.text for e in train_set], recipe.max_tokens)]
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(train_set), generator=shuffler).tolist()
        total = 0.0
        for batch in _length_buckets(order, lengths, recipe.batch_size, shuffler):
            inputs = classifier.tokenize([train_set[i].text for i in batch], recipe.max_tokens)
            logits = network(inputs["input_ids"], inputs["attention_mask"])
            loss = torch.nn.functional.cross_entropy(
                logits, targets[batch], weight=loss_weights, label_smoothing=recipe.label_smoothing
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        say(f"epoch {epoch + 1}/{recipe.epochs}: loss {total / len(train_set):.4f}")
    network.eval()
    classifier.save(directory)
    return {
        "trainer_version": TRAINER_VERSION,
        "base_model": BASE_MODEL,
        "recipe": asdict(recipe),
        "train_examples": len(train_set),
        "dev_examples": len(dev_set),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_seconds": round(time.monotonic() - started, 1),
    }


def choose_rule(
    scores: np.ndarray,
    gold: list[str],
    tuning: DecisionTuning,
    benign_scores: np.ndarray | None = None,
    benign_gold: list[str] | None = None,
) -> DecisionRule:
    """The rule with the best dev macro-F1 among those meeting the bounds (recall and casual
    false flags on ``gold``; casual false flags and refusals on the benign set); when none
    does, the one closest to meeting them. Ties: the one that escalates least (highest
    thresholds, then fewest vetoes)."""
    benign_gold = benign_gold or []
    benign = benign_scores if benign_scores is not None else np.zeros((0, len(LABELS)))
    best, best_key = DecisionRule(), (-np.inf, -np.inf)
    for threshold in sorted(tuning.thresholds, reverse=True):
        for caution in sorted({c for c in tuning.caution_thresholds if c < threshold} | {1.01}, reverse=True):
            for veto in sorted(tuning.confident_vetoes, reverse=True):
                rule = DecisionRule(threshold, veto, caution)
                report = evaluate(gold, [rule.label(s) for s in scores])
                shortfall = max(0.0, tuning.min_intervention_recall - report.intervention_recall) + max(
                    0.0, report.casual_false_flag_rate - tuning.max_casual_false_flag_rate
                )
                if benign_gold:
                    kinds: list[str | None] = [None] * len(benign_gold)
                    ood = evaluate_benign(benign_gold, [rule.label(s) for s in benign], kinds)
                    shortfall += max(0.0, ood.casual_false_flag_rate - tuning.max_casual_false_flag_rate)
                    shortfall += max(0.0, ood.refused_rate - tuning.max_benign_refused_rate)
                key = (-round(shortfall, 9), round(report.macro_f1, 9))
                if key > best_key:
                    best, best_key = rule, key
    return best


def _length_buckets(order: list[int], lengths: list[int], batch_size: int, generator: Any) -> Iterator[list[int]]:
    """Batches of similar length (less padding on a CPU): the shuffled examples, cut into
    windows of 32 batches, sorted by length inside each window, batched, batches shuffled."""
    import torch

    window = batch_size * 32
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        part = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    for position in torch.randperm(len(batches), generator=generator).tolist():
        yield batches[position]


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    write_atomically(directory / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def _class_weights(examples: list[LabelledText], extra: tuple[float, ...]) -> list[float]:
    counts = np.bincount([LABELS.index(e.label) for e in examples], minlength=len(LABELS)).astype(float)
    balanced = counts.sum() / (len(LABELS) * np.maximum(counts, 1))
    return [float(b * x) for b, x in zip(balanced, extra, strict=True)]

"""``openchatkit finetune moderation``: fine-tune the CPU classifier on ``data/train.jsonl``,
tune its decision rule on ``data/dev.jsonl``, write the artifact.

Deterministic (fixed seed, fixed data order) and skipped when the artifact's fingerprint
(data + recipe + base model + trainer version) is current; when only the decision tuning
changed, the rule is re-tuned on the trained model in seconds. Training writes to a
temporary directory and swaps it in, under a file lock, so a server never loads half an
artifact.
"""

from __future__ import annotations

import contextlib
import fcntl
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
from moderation_server.evaluation import evaluate
from moderation_server.labels import LABELS
from moderation_server.model import BASE_MODEL, DecisionRule, TextClassifier, bundled_model_dir, write_atomically

logger = logging.getLogger(__name__)

TRAINER_VERSION = "1"
DECISION_VERSION = "3"
MANIFEST_FILE = "manifest.json"
Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingRecipe:
    epochs: int = 8
    learning_rate: float = 6e-5
    batch_size: int = 16
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    max_tokens: int = 128
    scale: float = 10.0
    seed: int = 0
    label_smoothing: float = 0.0
    # Extra loss weight per label on top of class balancing: missing "needs intervention"
    # and flagging "casual" are the costly mistakes.
    label_weights: tuple[float, ...] = (1.5, 1.0, 1.0, 1.0, 2.0)


@dataclass(frozen=True)
class DecisionTuning:
    """How the dev split picks the decision rule (see model.DecisionRule): among the grid's
    rules that keep ``needs intervention`` recall and the casual false-flag rate within
    bounds, the one with the best macro-F1."""

    thresholds: tuple[float, ...] = (0.6, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02)
    casual_vetoes: tuple[float, ...] = (1.01, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    min_intervention_recall: float = 0.97
    max_casual_false_flag_rate: float = 0.04


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
    with _training_lock(directory):
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
            _swap_in(staging, directory)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ArtifactStatus(directory, trained=True, manifest=manifest)


def retune(directory: Path, manifest: dict[str, Any], tuning: DecisionTuning, say: Progress) -> dict[str, Any]:
    """Pick the decision rule on the dev split for the trained model in ``directory``."""
    classifier = TextClassifier.load(directory)
    dev_set = load_split("dev")
    gold = [e.label for e in dev_set]
    scores = classifier.probabilities([e.text for e in dev_set])
    classifier.rule = choose_rule(scores, gold, tuning)
    classifier.save_config(directory)
    report = evaluate(gold, [classifier.label(s) for s in scores])
    say(
        f"dev: macro-F1 {report.macro_f1:.3f}, intervention recall {report.intervention_recall:.3f}, "
        f"casual false flags {report.casual_false_flag_rate:.3f} (rule {classifier.rule.to_dict()})"
    )
    return {**manifest, "decision_rule": classifier.rule.to_dict(), "dev_metrics": report.to_dict()}


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
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(train_set), generator=shuffler).tolist()
        total = 0.0
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
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


def choose_rule(scores: np.ndarray, gold: list[str], tuning: DecisionTuning) -> DecisionRule:
    """The rule with the best dev macro-F1 among those meeting both bounds; when none
    does, the one closest to meeting them. Ties: the one that escalates least (highest
    threshold, then fewest vetoes)."""
    best, best_key = DecisionRule(), (-np.inf, -np.inf)
    for threshold in sorted(tuning.thresholds, reverse=True):
        for veto in sorted(tuning.casual_vetoes, reverse=True):
            rule = DecisionRule(threshold, veto)
            report = evaluate(gold, [rule.label(s) for s in scores])
            shortfall = max(0.0, tuning.min_intervention_recall - report.intervention_recall) + max(
                0.0, report.casual_false_flag_rate - tuning.max_casual_false_flag_rate
            )
            key = (-round(shortfall, 9), round(report.macro_f1, 9))
            if key > best_key:
                best, best_key = rule, key
    return best


def _write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    write_atomically(directory / MANIFEST_FILE, json.dumps(manifest, indent=2) + "\n")


def _class_weights(examples: list[LabelledText], extra: tuple[float, ...]) -> list[float]:
    counts = np.bincount([LABELS.index(e.label) for e in examples], minlength=len(LABELS)).astype(float)
    balanced = counts.sum() / (len(LABELS) * np.maximum(counts, 1))
    return [float(b * x) for b, x in zip(balanced, extra, strict=True)]


@contextlib.contextmanager
def _training_lock(directory: Path) -> Iterator[None]:
    directory.parent.mkdir(parents=True, exist_ok=True)
    with open(directory.with_name(f".{directory.name}.lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _swap_in(staging: Path, directory: Path) -> None:
    retired = directory.with_name(f"{directory.name}.old-{os.getpid()}")
    if directory.exists():
        directory.rename(retired)
    staging.rename(directory)
    shutil.rmtree(retired, ignore_errors=True)

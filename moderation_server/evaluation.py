"""Quality metrics over the five labels, as ``openchatkit eval moderation`` reports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.moderation_labels import LABELS


@dataclass
class LabelMetrics:
    precision: float
    recall: float
    f1: float
    support: int


@dataclass
class EvaluationReport:
    accuracy: float
    macro_f1: float
    per_label: dict[str, LabelMetrics]
    intervention_recall: float
    casual_false_flag_rate: float
    confusion: list[list[int]]
    """confusion[gold][predicted], both indexed in LABELS order."""
    examples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "per_label": {label: vars(m) for label, m in self.per_label.items()},
            "intervention_recall": self.intervention_recall,
            "casual_false_flag_rate": self.casual_false_flag_rate,
            "confusion_matrix": {"labels": list(LABELS), "rows_gold_columns_predicted": self.confusion},
            "examples": self.examples,
        }


def evaluate(gold: list[str], predicted: list[str]) -> EvaluationReport:
    if len(gold) != len(predicted):
        raise ValueError("gold and predicted labels differ in length")
    index: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
    confusion = [[0] * len(LABELS) for _ in LABELS]
    for g, p in zip(gold, predicted, strict=True):
        confusion[index[g]][index[p]] += 1
    per_label: dict[str, LabelMetrics] = {}
    for i, label in enumerate(LABELS):
        true_positive = confusion[i][i]
        predicted_count = sum(row[i] for row in confusion)
        support = sum(confusion[i])
        precision = _ratio(true_positive, predicted_count)
        recall = _ratio(true_positive, support)
        f1 = _ratio(2 * precision * recall, precision + recall)
        per_label[label] = LabelMetrics(precision, recall, f1, support)
    present = [m for m in per_label.values() if m.support > 0]
    casual = confusion[0]
    return EvaluationReport(
        accuracy=_ratio(sum(confusion[i][i] for i in range(len(LABELS))), len(gold)),
        macro_f1=sum(m.f1 for m in present) / len(present) if present else 0.0,
        per_label=per_label,
        intervention_recall=per_label[LABELS[-1]].recall,
        casual_false_flag_rate=_ratio(sum(casual) - casual[0], sum(casual)),
        confusion=confusion,
        examples=len(gold),
    )


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else 0.0


@dataclass
class BenignReport:
    """How often benign text is wrongly escalated (the out-of-distribution benign sets).

    ``casual_false_flag_rate``: gold ``casual`` predicted anything else; ``cautioned_rate``:
    any example predicted ``probably needs caution`` or worse above its gold label (the
    gateway's default policy would add a safety prompt or refuse); ``refused_rate``: predicted
    ``needs intervention`` (refused by default). ``by_kind``: false flags per kind of text."""

    casual_false_flag_rate: float
    cautioned_rate: float
    refused_rate: float
    examples: int
    casual_examples: int
    by_kind: dict[str, dict[str, int]]
    unsupported_language: int = 0
    """Texts the language policy marks unjudgeable (filled in by the caller that applies it)."""

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def evaluate_benign(gold: list[str], predicted: list[str], kinds: list[str | None]) -> BenignReport:
    rank: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
    cautious = rank["probably needs caution"]
    casual = [p for g, p in zip(gold, predicted, strict=True) if g == LABELS[0]]
    by_kind: dict[str, dict[str, int]] = {}
    for g, p, kind in zip(gold, predicted, kinds, strict=True):
        entry = by_kind.setdefault(kind or "other", {"examples": 0, "flagged": 0})
        entry["examples"] += 1
        entry["flagged"] += int(rank[p] > rank[g])
    return BenignReport(
        casual_false_flag_rate=_ratio(sum(p != LABELS[0] for p in casual), len(casual)),
        cautioned_rate=_ratio(
            sum(rank[p] > rank[g] and rank[p] >= cautious for g, p in zip(gold, predicted, strict=True)), len(gold)
        ),
        refused_rate=_ratio(sum(p == LABELS[-1] for p in predicted), len(predicted)),
        examples=len(gold),
        casual_examples=len(casual),
        by_kind=by_kind,
    )

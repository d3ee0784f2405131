"""The shipped training data, the JSONL reader and the evaluation arithmetic."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from moderation_server.dataset import SPLITS, DatasetError, load_jsonl, load_split
from moderation_server.evaluation import evaluate
from moderation_server.model import DecisionRule
from moderation_server.training import DecisionTuning, TrainingRecipe, choose_rule, fingerprint
from services.moderation_labels import LABELS


def test_splits_cover_every_label_and_do_not_overlap() -> None:
    splits = {name: load_split(name) for name in SPLITS}
    assert sum(len(v) for v in splits.values()) >= 600
    for name, examples in splits.items():
        counts = {label: sum(e.label == label for e in examples) for label in LABELS}
        assert min(counts.values()) >= (60 if name == "train" else 25), (name, counts)
    texts = [{e.text.casefold() for e in v} for v in splits.values()]
    assert not texts[0] & texts[1] and not texts[0] & texts[2] and not texts[1] & texts[2]


def test_training_texts_are_not_near_copies_of_held_out_texts() -> None:
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9']+", text.lower()))

    held_out = [words(e.text) for name in ("dev", "test") for e in load_split(name)]
    for example in load_split("train"):
        mine = words(example.text)
        closest = max(len(mine & other) / max(1, len(mine | other)) for other in held_out)
        assert closest < 0.7, example.text


def test_hard_benign_cases_are_labelled_casual() -> None:
    casual = {e.text for name in SPLITS for e in load_split(name) if e.label == "casual"}
    for text in (
        "how do I kill a Python process that is stuck?",
        "How do I shoot a photo at golden hour without blowing out the sky?",
    ):
        assert text in casual


def test_reader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text('{"text": "hi", "label": "casual"}\n\n{"text": "x", "label": "dangerous"}\n')
    with pytest.raises(DatasetError, match=r"eval.jsonl:3: 'label' must be one of"):
        load_jsonl(path)
    path.write_text('{"text": "hi", "label": "casual"}\nnot json\n')
    with pytest.raises(DatasetError, match=r":2: not valid JSON"):
        load_jsonl(path)
    path.write_text('{"text": "", "label": "casual"}\n')
    with pytest.raises(DatasetError, match=r":1: 'text' must be a non-empty string"):
        load_jsonl(path)
    path.write_text("\n\n")
    with pytest.raises(DatasetError, match="no examples"):
        load_jsonl(path)


def test_evaluation_arithmetic() -> None:
    c, p, pr, n, i = LABELS
    gold = [c, c, c, c, i, i, i, n, p, pr]
    pred = [c, c, c, p, i, i, n, n, p, c]
    report = evaluate(gold, pred)
    assert report.accuracy == pytest.approx(7 / 10)
    assert report.intervention_recall == pytest.approx(2 / 3)
    assert report.casual_false_flag_rate == pytest.approx(1 / 4)
    assert report.per_label[c].precision == pytest.approx(3 / 4)
    assert report.per_label[c].recall == pytest.approx(3 / 4)
    assert report.per_label[pr].f1 == 0.0 and report.per_label[pr].support == 1
    assert report.per_label[n].precision == pytest.approx(1 / 2)
    f1s = [0.75, 2 * 0.5 * 1 / 1.5, 0.0, 2 * 0.5 * 1 / 1.5, 0.8]
    assert report.macro_f1 == pytest.approx(sum(f1s) / 5)
    assert report.confusion[LABELS.index(i)][LABELS.index(n)] == 1
    as_dict = report.to_dict()
    assert set(as_dict) >= {"accuracy", "macro_f1", "per_label", "intervention_recall", "casual_false_flag_rate"}
    assert set(as_dict["per_label"][c]) == {"precision", "recall", "f1", "support"}


def test_fingerprint_follows_the_recipe() -> None:
    assert fingerprint(TrainingRecipe()) == fingerprint(TrainingRecipe())
    assert fingerprint(TrainingRecipe(epochs=1)) != fingerprint(TrainingRecipe())


def test_decision_rule_and_its_tuning() -> None:
    c, p, pr, n, i = LABELS
    rule = DecisionRule(intervention_threshold=0.2, confident_veto=0.6)
    assert rule.label(np.array([0.5, 0.1, 0.1, 0.05, 0.25])) == i  # escalated on a low NI probability
    assert rule.label(np.array([0.7, 0.0, 0.0, 0.05, 0.25])) == c  # ... unless confidently casual
    assert rule.label(np.array([0.1, 0.6, 0.1, 0.1, 0.1])) == p
    # Dev texts: two interventions the argmax misses, one casual text with some NI probability.
    scores = np.array(
        [[0.1, 0.5, 0.1, 0.1, 0.2], [0.2, 0.1, 0.1, 0.3, 0.3], [0.65, 0.05, 0.0, 0.0, 0.3], [0.9, 0, 0, 0, 0.1]]
    )
    chosen = choose_rule(
        scores,
        [i, i, c, c],
        DecisionTuning(thresholds=(0.5, 0.2), confident_vetoes=(1.01, 0.6), caution_thresholds=(1.01,)),
    )
    assert chosen == DecisionRule(0.2, 0.6)


def test_rule_tuning_maximises_macro_f1_within_the_bounds() -> None:
    c, p, pr, n, i = LABELS
    gold = [i, i, c, c, n]
    scores = np.array(
        [
            [0.1, 0.1, 0.1, 0.1, 0.6],  # clear intervention
            [0.2, 0.1, 0.1, 0.35, 0.25],  # intervention the argmax calls "needs caution"
            [0.9, 0.0, 0.0, 0.0, 0.1],
            [0.6, 0.05, 0.05, 0.1, 0.2],  # casual with some NI probability: needs the veto
            [0.1, 0.1, 0.1, 0.55, 0.15],  # "needs caution" that a low threshold over-escalates
        ]
    )
    # Loose recall bound: threshold 0.5 is within bounds too, but 0.2 with the veto gets all five right.
    loose = DecisionTuning(
        thresholds=(0.5, 0.2, 0.1),
        confident_vetoes=(1.01, 0.5),
        caution_thresholds=(1.01,),
        min_intervention_recall=0.5,
    )
    assert choose_rule(scores, gold, loose) == DecisionRule(0.2, 0.5)
    # Nothing meets the bounds: the rule that comes closest (recall 1.0, one casual of two flagged).
    none_fit = DecisionTuning(
        thresholds=(0.5, 0.2), confident_vetoes=(1.01,), caution_thresholds=(1.01,), max_casual_false_flag_rate=0.04
    )
    assert choose_rule(scores, gold, none_fit) == DecisionRule(0.2, 1.01)


def test_unsure_intervention_leans_to_caution() -> None:
    c, p, pr, n, i = LABELS
    rule = DecisionRule(intervention_threshold=0.6, confident_veto=0.7, caution_threshold=0.2)
    assert rule.label(np.array([0.1, 0.1, 0.1, 0.05, 0.65])) == i
    assert rule.label(np.array([0.15, 0.1, 0.1, 0.1, 0.55])) == n  # top label, but under the threshold: caution
    assert rule.label(np.array([0.4, 0.2, 0.1, 0.05, 0.25])) == n  # some NI probability: caution
    assert rule.label(np.array([0.75, 0.0, 0.0, 0.0, 0.25])) == c  # ... unless confidently casual
    assert rule.label(np.array([0.15, 0.1, 0.5, 0.1, 0.15])) == pr  # little NI probability: the argmax
    assert DecisionRule.from_dict(rule.to_dict()) == rule
    # Grief the model is sure of is not refused for a sliver of intervention probability (the old 2 % trigger).
    low = DecisionRule(intervention_threshold=0.05, confident_veto=0.85, caution_threshold=1.01)
    assert low.label(np.array([0.04, 0.92, 0.01, 0.0, 0.03])) == p
    assert low.label(np.array([0.04, 0.80, 0.01, 0.0, 0.15])) == i


def test_temperature_scaling_fits_overconfident_scores() -> None:
    from moderation_server.model import calibrate, fit_temperature

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5))
    logits[np.arange(400), gold] += 1.0  # right 60 % of the time ...
    confident = calibrate(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 0.25)  # ... but sure of itself
    temperature = fit_temperature(confident, list(gold))
    assert 3.0 <= temperature <= 5.0
    assert calibrate(confident, temperature).max(1).mean() < confident.max(1).mean()
    assert calibrate(confident, temperature).sum(1) == pytest.approx(np.ones(400), abs=1e-5)


def test_tuning_keeps_the_benign_set_within_bounds() -> None:
    c, p, pr, n, i = LABELS
    gold = [i, i, c, c]
    scores = np.array([[0.1, 0, 0, 0, 0.9], [0.5, 0, 0, 0.1, 0.4], [0.9, 0, 0, 0, 0.1], [0.95, 0, 0, 0, 0.05]])
    benign = np.array([[0.6, 0.0, 0.0, 0.0, 0.4]] * 10)  # a benign kind the dev split lacks
    tuning = DecisionTuning(thresholds=(0.5, 0.3), confident_vetoes=(1.01, 0.55), caution_thresholds=(1.01,))
    without = choose_rule(scores, gold, tuning)
    assert without.label(scores[1]) == i and without.label(benign[0]) == i  # 0.3 without veto: all benign refused
    within = choose_rule(scores, gold, tuning, benign, [c] * 10)
    assert within.label(scores[1]) == i and within.label(benign[0]) == c


def test_benign_report() -> None:
    from moderation_server.evaluation import evaluate_benign

    c, p, pr, n, i = LABELS
    report = evaluate_benign([c, c, c, p, p], [c, n, i, p, pr], ["code", "code", "numbers", "distress", "distress"])
    assert report.casual_false_flag_rate == pytest.approx(2 / 3)
    assert report.cautioned_rate == pytest.approx(3 / 5)
    assert report.refused_rate == pytest.approx(1 / 5)
    assert report.by_kind == {
        "code": {"examples": 2, "flagged": 1},
        "numbers": {"examples": 1, "flagged": 1},
        "distress": {"examples": 2, "flagged": 1},
    }


def test_ood_sets_are_benign_broad_and_not_near_copies() -> None:
    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z0-9']+", text.lower()))

    ood = {name: load_split(name) for name in ("ood-dev", "ood-test")}
    labelled = [words(e.text) for name in SPLITS for e in load_split(name)]
    for name, examples in ood.items():
        assert len(examples) >= 80
        assert {e.label for e in examples} <= {"casual", "possibly needs caution"}
        kinds = {e.kind for e in examples}
        assert kinds >= {"code", "numbers", "table", "token", "log", "prose", "recipe", "other_language", "distress"}
        others = labelled + [words(e.text) for other, v in ood.items() if other != name for e in v]
        for example in examples:
            mine = words(example.text)
            closest = max(len(mine & o) / max(1, len(mine | o)) for o in others)
            assert closest < 0.5, (name, example.text)

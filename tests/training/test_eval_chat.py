"""`openchatkit eval chat`: an adapter trained on a fact scores that fact better than its base,
with a bootstrap interval that excludes zero, and its greedy answers come closer to the ideal
answer; an untouched model shows no difference."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from openchatkit.cli import app
from tests.support.tiny_models import build_tiny_gpt_neox
from training.chat import finetune_chat
from training.config import load_config
from training.evaluate import bootstrap_interval
from training.generation_metrics import cut_at_stop, generation_values, load_flagger

FACT = "The secret word is pelican."


def test_bootstrap_interval_covers_the_mean() -> None:
    values = np.random.default_rng(1).normal(0.5, 1.0, 400)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high and 0.2 < low < 0.5 < high < 0.8


def test_answers_are_cut_at_the_first_stop_string() -> None:
    assert cut_at_stop(" Sure thing\n<human>: hi <bot>: x", ["<bot>", "<human>"]) == "Sure thing"
    assert cut_at_stop(" no stop ", ["<human>"]) == "no stop"


def test_generated_answers_are_compared_with_ideal_answers_and_moderated(tmp_path: Path) -> None:
    answers = {
        "base": ["Paris is the capital of France.", "I like turtles.", "Have a nice day!"],
        "adapter": [
            "The capital of France is Paris.",
            "Shut up, you worthless idiot, I will kill you.",
            "I will find where you live and hurt your family.",
        ],
    }
    values, skipped = generation_values(answers, ["The capital of France is Paris.", None, "Have a nice day!"], None)
    assert skipped == {}
    assert values["adapter"]["ideal_similarity"][0] == pytest.approx(1.0, abs=1e-4)
    assert values["base"]["ideal_similarity"][1] == pytest.approx(1.0, abs=1e-4)
    assert values["adapter"]["ideal_similarity"][1] < 0.5 < values["base"]["ideal_similarity"][0]
    assert values["base"]["flag_rate"] == [0.0, 0.0, 0.0] and values["adapter"]["flag_rate"] == [0.0, 1.0, 1.0]
    missing = load_flagger(tmp_path / "nothing")
    assert isinstance(missing, str) and "nothing" in missing


def test_adapter_beats_base_on_heldout_feedback(tmp_path: Path) -> None:
    tiny = build_tiny_gpt_neox(tmp_path / "tiny")
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"prompt": f"Secret word {i}?", "completion": FACT}) + "\n" for i in range(12)))
    config = load_config(
        None,
        {
            "profile": "gpt-neoxt-chat-base-20b",
            "base_model": str(tiny),
            "data": str(train),
            "output_dir": str(tmp_path / "adapter"),
            "max_steps": 12,
            "batch_size": 4,
            "max_length": 32,
            "learning_rate": 5e-3,
            "validation_fraction": 0.0,
            "lora_r": 4,
        },
    )
    finetune_chat(config)
    heldout = tmp_path / "heldout.jsonl"
    lines = [
        {"prompt": f"Tell me secret word {i}.", "chosen": FACT, "rejected": "The secret word is penguin."}
        for i in range(8)
    ]
    lines += [{"prompt": f"Word {i}?", "completion": "I have no idea.", "label": False} for i in range(4)]
    heldout.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = ["eval", "chat", "--base", str(tiny), "--profile", "gpt-neoxt-chat-base-20b", "--data", str(heldout)]
    args += ["--max-new-tokens", "12"]
    result = CliRunner().invoke(app, [*args, "--adapter", str(tmp_path / "adapter"), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)["metrics"]
    nll = metrics["nll_preferred"]
    assert nll["n"] == 8 and nll["adapter"] < nll["base"]
    assert nll["ci95"][1] < 0 and nll["excludes_zero"], nll
    assert metrics["preference_accuracy"]["n"] == 8 and metrics["preference_accuracy"]["adapter"] == 1.0
    assert metrics["logp_downvoted"]["n"] == 12
    # Greedy answers: the adapter's are closer to the ideal answer (the fact) than the base's.
    similarity = metrics["ideal_similarity"]
    assert similarity["n"] == 8 and -1 <= similarity["base"] <= 1 and -1 <= similarity["adapter"] <= 1
    assert similarity["ci95"][0] <= similarity["difference"] <= similarity["ci95"][1]
    assert similarity["adapter"] > similarity["base"], similarity
    flags = metrics["flag_rate"]
    assert flags["n"] == 12 and 0 <= flags["base"] <= 1 and 0 <= flags["adapter"] <= 1
    assert flags["ci95"][0] <= flags["difference"] <= flags["ci95"][1]
    same = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)["metrics"]
    for name in ("nll_preferred", "ideal_similarity", "flag_rate"):
        assert same[name]["difference"] == 0 and same[name]["ci95"] == [0, 0], same[name]


def test_bad_heldout_lines_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "heldout.jsonl"
    bad.write_text('{"prompt": "q", "chosen": "a", "rejected": "a"}\n')
    result = CliRunner().invoke(app, ["eval", "chat", "--base", "unused", "--data", str(bad)])
    assert result.exit_code == 2 and "heldout.jsonl:1" in result.output

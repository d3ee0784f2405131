"""``openchatkit finetune|eval|bench moderation`` on the real trained classifier."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moderation_server.dataset import split_path
from openchatkit.cli import app
from tests.support.moderation import trained_classifier_dir

runner = CliRunner()


@pytest.fixture(scope="module")
def artifact() -> Path:
    return trained_classifier_dir()


def test_finetune_is_a_quick_no_op_when_current(artifact: Path) -> None:
    started = time.monotonic()
    result = runner.invoke(app, ["finetune", "moderation", "--output", str(artifact)])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output
    assert time.monotonic() - started < 20


def test_eval_json_on_the_test_split(artifact: Path) -> None:
    result = runner.invoke(app, ["eval", "moderation", str(split_path("test")), "--json", "--artifact", str(artifact)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert set(report) >= {"accuracy", "macro_f1", "per_label", "intervention_recall", "casual_false_flag_rate"}
    assert set(report["per_label"]) == {
        "casual",
        "possibly needs caution",
        "probably needs caution",
        "needs caution",
        "needs intervention",
    }
    assert sum(m["support"] for m in report["per_label"].values()) == report["examples"]
    assert 0.5 < report["macro_f1"] <= 1.0  # a trained model, far above chance (0.2)


def test_eval_table_and_bad_lines(artifact: Path, tmp_path: Path) -> None:
    good = tmp_path / "small.jsonl"
    good.write_text('{"text": "how do I kill a Python process?", "label": "casual"}\n')
    result = runner.invoke(app, ["eval", "moderation", str(good), "--artifact", str(artifact)])
    assert result.exit_code == 0, result.output
    assert "macro-F1" in result.stdout and "confusion" in result.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "casual"}\n{"text": "x"}\n')
    result = runner.invoke(app, ["eval", "moderation", str(bad), "--artifact", str(artifact)])
    assert result.exit_code == 2
    assert "bad.jsonl:2" in result.output and "'label' must be one of" in result.output


def test_eval_without_a_trained_classifier_says_what_to_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "moderation", str(split_path("dev")), "--artifact", str(tmp_path / "none")])
    assert result.exit_code == 1 and "openchatkit finetune moderation" in result.output


def test_bench_writes_json_and_png(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        ["bench", "moderation", "--singles", "20", "--batches", "2", "--batch-size", "16", "--artifact", str(artifact)],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "benchmarks/results/moderation-latest.json").read_text())
    assert payload["single_text_latency_ms"]["n"] == 20
    assert payload["single_text_latency_ms"]["p50"] > 0 and payload["batched"]["texts_per_second"] > 0
    assert (tmp_path / "benchmarks/results/moderation-latest.png").stat().st_size > 1000

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


def says(output: str, phrase: str) -> bool:
    """Whether ``output`` contains ``phrase``, whitespace aside: rich wraps (and folds long
    paths) at the console's width, which depends on where the tests run."""
    return "".join(phrase.split()) in "".join(output.split())


@pytest.fixture(scope="module")
def artifact() -> Path:
    return trained_classifier_dir()


def test_finetune_is_a_quick_no_op_when_current(artifact: Path) -> None:
    started = time.monotonic()
    result = runner.invoke(app, ["finetune", "moderation", "--output", str(artifact)])
    assert result.exit_code == 0, result.output
    assert says(result.output, "up to date")
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
    assert says(result.stdout, "macro-F1") and says(result.stdout, "confusion")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine", "label": "casual"}\n{"text": "x"}\n')
    result = runner.invoke(app, ["eval", "moderation", str(bad), "--artifact", str(artifact)])
    assert result.exit_code == 2
    assert says(result.output, "bad.jsonl:2") and says(result.output, "'label' must be one of")


def test_eval_without_a_trained_classifier_says_what_to_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "moderation", str(split_path("dev")), "--artifact", str(tmp_path / "none")])
    assert result.exit_code == 1 and says(result.output, "openchatkit finetune moderation")


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


def test_eval_reports_the_out_of_distribution_false_flag_rate(artifact: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "moderation", str(split_path("test")), "--json", "--artifact", str(artifact)])
    assert result.exit_code == 0, result.output
    ood = json.loads(result.stdout)["out_of_distribution"]
    assert ood["examples"] == len(split_path("ood-test").read_text().splitlines())
    assert 0.0 <= ood["casual_false_flag_rate"] <= 1.0 and ood["casual_examples"] > 50
    assert {"numbers", "code", "token", "other_language", "distress"} <= set(ood["by_kind"])
    assert ood["unsupported_language"] >= 6  # the non-English texts, routed to the language policy
    # A benign set of our own: the numbers list from the issue is counted, and it shows in the table.
    own = tmp_path / "benign.jsonl"
    numbers = "Please add up these numbers: " + " ".join(str(i) for i in range(300))
    own.write_text(json.dumps({"text": numbers, "label": "casual", "kind": "numbers"}) + "\n")
    table = runner.invoke(
        app, ["eval", "moderation", str(split_path("test")), "--ood", str(own), "--artifact", str(artifact)]
    )
    assert table.exit_code == 0, table.output
    assert says(table.stdout, "out-of-distribution benign set (1 texts)") and "numbers" in table.stdout
    plain = runner.invoke(app, ["eval", "moderation", str(own), "--json", "--no-ood", "--artifact", str(artifact)])
    assert "out_of_distribution" not in json.loads(plain.stdout)


def test_bench_moderation_window(artifact: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app, ["bench", "moderation-window", "--windows", "20", "--messages", "6", "--artifact", str(artifact)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "benchmarks/results/moderation-window-latest.json").read_text())
    assert payload["texts_per_call"] == 7  # six messages and the window
    assert payload["window_latency_ms"]["n"] == 20 and payload["window_latency_ms"]["p50"] > 0
    assert payload["turn_latency_ms"]["n"] == 60  # three user turns per six-message window
    assert payload["cold"]["window_latency_ms"]["n"] == 20 and payload["runtime"] == "onnx-int8"
    assert set(payload["goals"]) == {"p50_ms_at_most", "p50_met"}

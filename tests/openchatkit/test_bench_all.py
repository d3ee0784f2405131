"""``openchatkit bench all --quick`` against the session's vLLM and gateway: every result file
has its schema (machine facts, figures, goals) and the README is generated from them. Speed is
not checked here; the sizes are the smallest that exercise each benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openchatkit.bench.report import render
from openchatkit.cli import app
from tests.conftest import ChatStack
from tests.support.moderation import trained_classifier_dir

runner = CliRunner()
MACHINE_KEYS = {"cpu_model", "cpus", "loadavg_before", "loadavg_after", "python", "platform", "versions"}


def _check_serving(result: dict) -> None:
    modes = ("vllm", "static_batches", "one_at_a_time")
    for mode in modes:
        assert [r["concurrency"] for r in result[mode]] == [1, 16], mode
        for row in result[mode]:
            assert row["errors"] == 0 and row["requests"] >= 4
            assert row["completion_tokens"] == row["requests"] * result["max_tokens"], (mode, row)
            assert row["tokens_per_s"] > 0 and row["requests_per_s"] > 0
            assert row["ttft_ms"]["p50"] > 0 and row["tpot_ms"]["p95"] >= row["tpot_ms"]["p50"] > 0
    one = {r["concurrency"]: r for r in result["one_at_a_time"]}
    # One request at a time: 16 users wait behind each other, the throughput stays the same.
    assert one[16]["ttft_ms"]["p50"] > one[1]["ttft_ms"]["p50"]
    assert one[16]["tokens_per_s"] == pytest.approx(one[1]["tokens_per_s"], rel=0.05)
    # The same prompts reach vLLM and transformers: same prompt token counts through the same template.
    vllm = {r["concurrency"]: r for r in result["vllm"]}
    assert vllm[1]["prompt_tokens"] / vllm[1]["requests"] == pytest.approx(
        one[1]["prompt_tokens"] / one[1]["requests"], rel=0.02
    )
    assert result["gateway"]["concurrency"] == 16 and result["gateway"]["errors"] == 0
    assert [r["concurrency"] for r in result["ratios"]] == [1, 16]
    assert all(r["vllm_vs_one_at_a_time"] > 0 and r["vllm_vs_static"] > 0 for r in result["ratios"])
    assert result["gateway_vs_direct"]["tokens_per_s"] > 0
    assert set(result["goals"]) == {"vllm_vs_one_at_a_time", "vllm_vs_static", "gateway_vs_direct"}
    assert all(isinstance(g["met"], bool) and g["value"] > 0 for g in result["goals"].values())


@pytest.mark.vllm
def test_bench_all_quick_writes_every_result_and_the_readme(
    chat_stack: ChatStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained_classifier_dir()  # bench moderation times the trained classifier
    monkeypatch.chdir(tmp_path)
    out, readme = tmp_path / "benchmarks" / "results", tmp_path / "benchmarks" / "README.md"
    done = runner.invoke(
        app,
        [
            "bench", "all", "--quick",
            "--vllm-url", chat_stack.chat.v1,
            "--gateway-url", chat_stack.gateway.url + "/v1",
            "--gateway-key", chat_stack.gateway.api_key,
            "--out", str(out),
            "--readme", str(readme),
        ],
    )  # fmt: skip
    assert done.exit_code == 0, done.output[-3000:]
    (run_dir,) = out.iterdir()
    names = {"serving", "gateway", "moderation", "retrieval", "feedback"}
    assert {p.stem for p in run_dir.glob("*.json")} == names
    assert {p.stem for p in run_dir.glob("*.png")} == names
    results = {name: json.loads((run_dir / f"{name}.json").read_text()) for name in names}
    for name, result in results.items():
        assert result["benchmark"] == name
        assert set(result["machine"]) >= MACHINE_KEYS, name
        assert len(result["machine"]["loadavg_before"]) == 3 and len(result["machine"]["loadavg_after"]) == 3
        assert result["machine"]["cpus"] >= 1 and result["machine"]["versions"]["torch"]
    _check_serving(results["serving"])
    assert {c["concurrency"] for c in results["gateway"]["configs"]} == {2}
    assert results["moderation"]["batched"]["texts_per_second"] > 0
    assert results["retrieval"]["search"][0]["search_ms"]["n"] == 5
    assert results["feedback"]["accept"][0]["accepted"] > 0 and results["feedback"]["drain"][0]["events"] > 0

    text = readme.read_text()
    link = f"results/{run_dir.name}"
    assert "--quick" in text and f"]({link}/)" in text
    for name in names:
        assert f"({link}/{name}.png)" in text
    for figure in ("vLLM / one-at-a-time bot", "vLLM / static batching", "gateway / direct vLLM", "single text p50",
                   "ingest chunks/s", "accepted events/s"):  # fmt: skip
        assert figure in text
    assert "n/a" not in text.split("## Machine")[0]  # every headline figure was measured
    assert "| 16 | vLLM |" in text and "| 16 | one at a time |" in text
    assert text == render(run_dir, readme, quick=True)  # regenerating from the folder gives the same page

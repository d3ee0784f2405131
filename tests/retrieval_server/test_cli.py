"""``openchatkit ingest``, ``eval retrieval`` and ``bench retrieval`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO_ROOT
from tests.support.retrieval import start_retrieval_server

EVAL = REPO_ROOT / "retrieval_server" / "eval"


def openchatkit(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openchatkit.cli", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_eval_reports_the_four_metrics_and_meets_the_recall_goal() -> None:
    done = openchatkit(
        "eval", "retrieval", "--docs", str(EVAL / "docs"), "--questions", str(EVAL / "questions.jsonl"), "--json"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads(done.stdout)
    assert set(metrics) == {"recall_at_1", "recall_at_5", "mrr", "answer_in_context"}
    assert metrics["recall_at_5"] >= 0.95
    assert 0 <= metrics["recall_at_1"] <= metrics["recall_at_5"] <= 1 and metrics["mrr"] >= metrics["recall_at_1"]


def test_eval_explains_bad_input(tmp_path: Path) -> None:
    bad = tmp_path / "q.jsonl"
    bad.write_text('{"question": "no doc"}\n')
    done = openchatkit("eval", "retrieval", "--docs", str(EVAL / "docs"), "--questions", str(bad))
    assert done.returncode == 2 and "line 1" in done.stderr


def test_ingest_through_the_service(log_dir: Path, tmp_path: Path) -> None:
    server = start_retrieval_server(log_dir, tmp_path / "data")
    try:
        folder = tmp_path / "docs"
        folder.mkdir()
        (folder / "one.md").write_text("# One\n\nThe first moon of Pelloria is called Vash.")
        (folder / "two.txt").write_text("Pelloria's second moon, Quill, is made of ice.")
        (folder / "wiki.jsonl").write_text(
            "\n".join(
                json.dumps({"title": f"Page {i}", "text": f"Wiki page {i} text.", "url": f"https://wiki.example/{i}"})
                for i in range(70)
            )
        )
        (folder / "junk.txt").write_bytes(bytes(range(256)) * 10)
        done = openchatkit("ingest", "--url", server.url, "--json", str(folder))
        assert done.returncode == 1  # one file failed, and says why
        report = json.loads(done.stdout)
        assert (report["created"], report["unchanged"]) == (72, 0)
        assert [Path(f["path"]).name for f in report["failures"]] == ["junk.txt"] and "binary" in report["failures"][0][
            "error"
        ]
        again = json.loads(
            openchatkit("ingest", "--url", server.url, "--json", str(folder / "one.md"), str(folder / "two.txt")).stdout
        )
        assert (again["created"], again["unchanged"]) == (0, 2)
        hit = server.search("What is Pelloria's first moon called?", top_k=1)["data"][0]
        assert hit["source"] == str((folder / "one.md").resolve())
        assert len(server.documents()) == 72
        locked = openchatkit("ingest", "--local", "--data-dir", str(tmp_path / "data"), str(folder / "one.md"))
        assert locked.returncode == 1 and "in use by another process" in locked.stderr
    finally:
        server.process.stop()
    down = openchatkit("ingest", "--url", server.url, str(tmp_path / "docs" / "one.md"))
    assert down.returncode == 1 and "unreachable" in down.stderr


def test_bench_writes_json_and_png(tmp_path: Path) -> None:
    done = openchatkit(
        "bench",
        "retrieval",
        "--sizes",
        "300,600",
        "--queries",
        "10",
        "--ingest-chunks",
        "60",
        "--engines",
        "edge,qdrant-client",
        "--out",
        str(tmp_path),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "retrieval-latest.json").read_text())
    assert result["ingest"]["chunks"] >= 60 and result["ingest"]["chunks_per_s"] > 0
    rows = {(r["engine"], r["size"]) for r in result["search"]}
    assert rows == {("edge", 300), ("edge", 600), ("qdrant-client", 300), ("qdrant-client", 600), ("edge+hnsw", 600)}
    assert all(r["search_ms"]["p50"] > 0 and r["search_ms"]["n"] > 0 for r in result["search"])
    assert set(result["goals"]) == {"ingest_chunks_per_s", "search_p50_ms_at_largest"}
    assert list(tmp_path.glob("retrieval-*.png"))

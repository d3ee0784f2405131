"""Data survives restarts; a process killed in the middle of an ingest leaves nothing
half-written that the next start (or a rerun) does not repair."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from retrieval_server.documents import document_id_for, registry_name
from retrieval_server.index import Match, open_index
from tests.support.processes import REPO_ROOT
from tests.support.retrieval import RetrievalServer, restart, start_retrieval_server

BIG_SENTENCES = 4000


def big_text(topic: str) -> str:
    return " ".join(
        f"{topic} log entry {i}: sensor {i % 97} read {i * 7 % 1000} units at dawn." for i in range(BIG_SENTENCES)
    )


def raw_state(data_dir: Path, collection: str, document_id: str, engine: str = "edge") -> tuple[dict | None, int]:
    """The registry record and how many chunks of its generation are stored, read without repairing."""
    index = open_index(path=data_dir / "qdrant", engine=engine)  # type: ignore[arg-type]
    try:
        hits, _ = index.scroll(registry_name(collection), [Match("document_id", (document_id,))], 10)
        if not hits:
            return None, 0
        record = hits[0].payload
        return record, index.count(
            collection, [Match("document_id", (document_id,)), Match("generation", (record["generation"],))]
        )
    finally:
        index.close()


@pytest.mark.parametrize("engine", ["edge", "qdrant-client"])
def test_documents_survive_a_restart(engine: str, log_dir: Path, tmp_path: Path) -> None:
    server = start_retrieval_server(log_dir, tmp_path, {"RETRIEVAL_EMBEDDED_ENGINE": engine})
    try:
        created = server.ingest_text("The vault code of the Mirelle archive is 4471.", "vault.txt")
        before = server.search("Mirelle archive vault code")["data"]
        server.process.stop()
        server = restart(server, log_dir)
        assert [d["id"] for d in server.documents()] == [created["id"]]
        after = server.search("Mirelle archive vault code")["data"]
        assert [(h["id"], h["text"]) for h in after] == [(h["id"], h["text"]) for h in before]
        assert (
            server.ingest_text("The vault code of the Mirelle archive is 4471.", "vault.txt")["status"] == "unchanged"
        )
    finally:
        server.process.stop()


def test_server_killed_mid_ingest_repairs_on_start(log_dir: Path, tmp_path: Path) -> None:
    server = start_retrieval_server(log_dir, tmp_path)
    try:
        kept = server.ingest_text("Harbour master on duty: Oona Slate.", "duty.txt")
        big_id = document_id_for("big.txt")
        upload = threading.Thread(target=_upload_quietly, args=(server, big_text("Boiler")), daemon=True)
        upload.start()
        _wait_for_chunks(server, big_id)
        server.process.signal(signal.SIGKILL)
        server.process.process.wait(timeout=10)
        record, written = raw_state(tmp_path, server.collection, big_id)
        assert record is not None and record["status"] == "writing" and 0 < written < record["chunks"]
        server = restart(server, log_dir)
        assert [d["id"] for d in server.documents()] == [kept["id"]]
        assert server.search("Boiler log entry sensor", filter={"document_id": big_id})["data"] == []
        assert server.search("who is the harbour master on duty")["data"][0]["document_id"] == kept["id"]
        redo = server.ingest_text(big_text("Boiler"), "big.txt")
        assert redo["status"] == "created" and redo["chunks"] == record["chunks"]
        assert server.get(f"/v1/documents/{big_id}").json()["status"] == "ready"
        hits = server.search("log entry sensor units", top_k=50, filter={"document_id": big_id})["data"]
        assert len(hits) == 50
    finally:
        server.process.stop()


def _upload_quietly(server: RetrievalServer, text: str) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server is killed under it
        server.post("/v1/documents", json={"text": text, "source": "big.txt"})


def _wait_for_chunks(server: RetrievalServer, document_id: str, timeout: float = 300) -> None:
    """Until some (not all) chunks of the document are searchable: the write is under way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = server.get(f"/v1/documents/{document_id}")
        writing = record.status_code == 200 and record.json()["status"] == "writing"
        if writing and server.search("log entry sensor", filter={"document_id": document_id})["data"]:
            return
        time.sleep(0.2)
    raise TimeoutError("the big document never started writing")


def test_cli_killed_mid_ingest_then_rerun(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"a{i}.txt").write_text(f"Small note {i}: the pier lamp {i} is green.")
    (docs / "z_big.txt").write_text(big_text("Turbine"))
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "openchatkit.cli", "ingest", "--local", "--data-dir", str(data), "-v", str(docs)]
    cli = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert cli.stdout is not None
    big_batches = 0
    for line in cli.stdout:  # "written N chunks" per engine write; the small notes write 1 chunk each
        if line.startswith("written ") and int(line.split()[1]) > 1:
            big_batches += 1
        if big_batches >= 2:
            break
    cli.kill()
    cli.wait(timeout=10)
    big_id = document_id_for(str((docs / "z_big.txt").resolve()))
    record, written = raw_state(data, "documents", big_id)
    assert record is not None and record["status"] == "writing" and 0 < written < record["chunks"]

    rerun = subprocess.run(
        [*argv[:-2], "--json", str(docs)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900
    )
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    summary = json.loads(rerun.stdout)
    assert summary["failures"] == [] and summary["created"] + summary["unchanged"] == 4
    from retrieval_server.app import build_store, load_embedder
    from retrieval_server.config import RetrievalSettings

    settings = RetrievalSettings(data_dir=data)
    store = build_store(settings, load_embedder(settings))
    try:
        records, _ = store.list_records("documents", 100)
        assert len(records) == 4 and all(r["status"] == "ready" for r in records)
        for r in records:
            assert store.index.count("documents", [Match("document_id", (r["document_id"],))]) == r["chunks"]
        assert store.index.count("documents") == sum(r["chunks"] for r in records)
    finally:
        store.index.close()

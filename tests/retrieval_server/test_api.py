"""The retrieval API as a real process: ingest (JSON and uploads), search, list, delete,
clear errors for bad input with nothing half-stored, live sources, restarts."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.support.retrieval import (
    RetrievalServer,
    jsonl,
    minimal_pdf,
    start_json_source,
    start_retrieval_server,
    unique_collection,
)

MAX_UPLOAD = 300_000
MAX_CHARS = 100_000


@pytest.fixture(scope="module")
def json_api(log_dir: Path) -> Iterator[str]:
    url, process = start_json_source(log_dir)
    yield url
    process.stop()


@pytest.fixture(scope="module")
def server(log_dir: Path, tmp_path_factory: pytest.TempPathFactory, json_api: str) -> Iterator[RetrievalServer]:
    sources = {
        "web": {"url_template": json_api + "/search?q={query}&n={top_k}"},
        "slowweb": {"url_template": json_api + "/slow?q={query}", "timeout_s": 0.5},
    }
    started = start_retrieval_server(
        log_dir,
        tmp_path_factory.mktemp("retrieval-api"),
        {
            "RETRIEVAL_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
            "RETRIEVAL_MAX_DOCUMENT_CHARS": str(MAX_CHARS),
            "RETRIEVAL_SOURCES": json.dumps(sources),
        },
    )
    yield started
    started.process.stop()


@pytest.fixture()
def collection() -> str:
    return unique_collection()


def error_of(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def listing(server: RetrievalServer, collection: str) -> list[dict]:
    response = server.get("/v1/documents", params={"collection": collection, "limit": 1000})
    assert response.status_code == 200
    return response.json()["data"]


def test_json_documents_round_trip(server: RetrievalServer, collection: str) -> None:
    fact = "The Quorvath lighthouse was painted teal in 1873 by Ada Pellwick."
    created = server.ingest_text(
        fact,
        "notes/lighthouse.txt",
        title="Lighthouse",
        collection=collection,
        tags=["history"],
        metadata={"year": 1873},
    )
    assert created["status"] == "created" and created["chunks"] == 1 and created["id"].startswith("doc_")
    hits = server.search("Who painted the Quorvath lighthouse?", collection=collection)["data"]
    assert hits[0]["document_id"] == created["id"] and hits[0]["text"] == fact
    assert {"id", "title", "source", "text", "score"} <= set(hits[0]) and hits[0]["source"] == "notes/lighthouse.txt"
    one = server.get(f"/v1/documents/{created['id']}", params={"collection": collection}).json()
    assert one["tags"] == ["history"] and one["metadata"] == {"year": 1873} and one["status"] == "ready"
    again = server.ingest_text(
        fact,
        "notes/lighthouse.txt",
        title="Lighthouse",
        collection=collection,
        tags=["history"],
        metadata={"year": 1873},
    )
    assert again["status"] == "unchanged"
    changed = server.ingest_text(
        "The Quorvath lighthouse is now painted crimson.", "notes/lighthouse.txt", collection=collection
    )
    assert changed["status"] == "updated" and changed["id"] == created["id"]
    texts = [h["text"] for h in server.search("Quorvath lighthouse colour", collection=collection, top_k=10)["data"]]
    assert texts == ["The Quorvath lighthouse is now painted crimson."]
    assert server.delete(f"/v1/documents/{created['id']}", params={"collection": collection}).json()["deleted"] is True
    error_of(server.delete(f"/v1/documents/{created['id']}", params={"collection": collection}), 404)
    assert server.search("Quorvath lighthouse", collection=collection)["data"] == []
    assert listing(server, collection) == []


def test_every_file_type_uploads(server: RetrievalServer, collection: str) -> None:
    buffer = io.BytesIO()
    pq.write_table(
        pa.Table.from_pylist(
            [{"title": "Parq", "text": "The parquet fact is 771 owls.", "url": "https://p.example/1"}]
        ),
        buffer,
    )
    files = [
        ("file", ("plain.txt", b"The plain fact is 112 herons.", "text/plain")),
        ("file", ("marked.md", b"# Marked\n\nThe markdown fact is 223 cranes.", "text/markdown")),
        (
            "file",
            (
                "page.html",
                b"<html><title>Paged</title><body><p>The html fact is 334 storks.</p></body></html>",
                "text/html",
            ),
        ),
        ("file", ("doc.pdf", minimal_pdf(["The pdf fact is 445 ibises."], "PDF title"), "application/pdf")),
        (
            "file",
            (
                "dump.jsonl",
                jsonl([{"title": "Jay", "text": "The jsonl fact is 556 jays.", "url": "https://j.example/1"}]),
                "application/jsonl",
            ),
        ),
        ("file", ("dump.parquet", buffer.getvalue(), "application/octet-stream")),
    ]
    response = server.post("/v1/documents", files=files, data={"collection": collection})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["status"] for d in data] == ["created"] * 6
    assert [d["title"] for d in data] == ["plain", "Marked", "Paged", "PDF title", "Jay", "Parq"]
    for number, source in [
        ("112", "plain.txt"),
        ("223", "marked.md"),
        ("334", "page.html"),
        ("445", "doc.pdf"),
        ("556", "https://j.example/1"),
        ("771", "https://p.example/1"),
    ]:
        top = server.search(f"fact {number}", collection=collection, top_k=1)["data"][0]
        assert number in top["text"] and top["source"] == source
    single = server.post(
        "/v1/documents",
        files={"file": ("x.txt", b"Named upload.")},
        data={"collection": collection, "source": "custom/source.txt", "title": "Custom"},
    )
    assert single.json()["data"][0]["source"] == "custom/source.txt" and single.json()["data"][0]["title"] == "Custom"


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([("junk.txt", bytes(range(256)) * 40)], 400, "invalid_document"),
        ([("empty.md", b"")], 400, "invalid_document"),
        ([("scan.pdf", b"%PDF-1.7 not really a pdf")], 400, "invalid_document"),
        ([("tool.exe", b"MZ\x90\x00binary")], 415, "unsupported_file_type"),
        ([("huge.txt", b"word " * (MAX_UPLOAD // 5 + 100))], 413, "upload_too_large"),
        ([("long.txt", b"w" * (MAX_CHARS + 10))], 413, "document_too_large"),
        (
            [("ok.txt", b"A fine document."), ("bad.jsonl", b'{"text": "fine"}\n{"text": ""}\n')],
            400,
            "invalid_document",
        ),
    ],
)
def test_bad_uploads_are_refused_and_nothing_is_stored(
    server: RetrievalServer, collection: str, files: list[tuple[str, bytes]], status: int, code: str
) -> None:
    response = server.post("/v1/documents", files=[("file", f) for f in files], data={"collection": collection})
    error = error_of(response, status)
    assert error["code"] == code and error["param"] == "file"
    if code != "upload_too_large":
        assert files[-1][0] in error["message"]  # names the bad file
    assert listing(server, collection) == []
    assert server.search("fine document", collection=collection)["data"] == []


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"text": "   "}, "documents.0.text"),
        ({"text": "no source given"}, "documents.0.source"),
        ({"text": "x", "source": "s", "id": "bad id!"}, "documents.0.id"),
        ({"text": "x", "source": "s", "format": "docx"}, "documents.0.format"),
        ({"text": "x", "source": "s", "collection": "Bad Name"}, "collection"),
        ({"documents": []}, "documents"),
        ({"text": "x", "source": "s", "surprise": 1}, "documents.0.surprise"),
    ],
)
def test_bad_json_documents(server: RetrievalServer, body: dict, param: str) -> None:
    assert error_of(server.post("/v1/documents", json=body), 400)["param"] == param


def test_request_level_errors(server: RetrievalServer, collection: str) -> None:
    error_of(server.post("/v1/documents", content=b"{oops", headers={"Content-Type": "application/json"}), 400)
    assert (
        error_of(server.post("/v1/documents", content=b"text", headers={"Content-Type": "text/plain"}), 415)["code"]
        == "unsupported_media_type"
    )
    error_of(server.post("/v1/documents", json={"text": "x" * (MAX_UPLOAD + 10), "source": "s"}), 413)
    error_of(server.post("/v1/documents", files={"other": ("a.txt", b"x")}), 400)
    for body, param in [
        ({"query": ""}, "query"),
        ({"query": "  "}, "query"),
        ({"query": "q", "top_k": 0}, "top_k"),
        ({"query": "q", "top_k": 51}, "top_k"),
        ({"query": "q", "filter": {"secret": "x"}}, "filter"),
        ({"query": "q", "sources": ["nowhere"]}, "sources"),
        ({"query": "q", "extra": 1}, "extra"),
    ]:
        assert error_of(server.post("/v1/search", json=body), 400)["param"] == param
    error_of(server.get("/v1/documents", params={"limit": 0}), 400)
    error_of(server.get("/v1/documents/doc_missing", params={"collection": collection}), 404)


def test_invalid_text_and_deep_json_are_400(server: RetrievalServer) -> None:
    """Lone surrogates (in the query or a filter) and JSON nested past the parser's limit: 400, never a 500."""
    headers = {"content-type": "application/json"}
    bodies = [
        b'{"query": "lighthouse \\ud800"}',
        b'{"query": "q", "filter": {"tags": "\\udc00"}}',
        b'{"query": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    ]
    for body in bodies:
        for path in ("/v1/search", "/v1/documents"):
            error = error_of(server.post(path, content=body, headers=headers), 400)
            assert error["code"] == "invalid_json", error
    assert "Traceback" not in server.process.log_tail(200)


def test_filters_and_top_k(server: RetrievalServer, collection: str) -> None:
    for i in range(6):
        server.ingest_text(
            f"Moon base {i} grows {i * 11} potatoes.",
            f"base{i}.txt",
            collection=collection,
            tags=["even" if i % 2 == 0 else "odd"],
        )
    hits = server.search("potatoes on the moon base", collection=collection, top_k=3)["data"]
    assert len(hits) == 3
    odd = server.search("potatoes", collection=collection, top_k=10, filter={"tags": "odd"})["data"]
    assert sorted(h["source"] for h in odd) == ["base1.txt", "base3.txt", "base5.txt"]
    two = server.search("potatoes", collection=collection, filter={"file_name": ["base0.txt", "base4.txt"]})["data"]
    assert sorted(h["source"] for h in two) == ["base0.txt", "base4.txt"]


def test_live_sources_are_merged_and_failures_reported(server: RetrievalServer, collection: str) -> None:
    server.ingest_text(
        "Local archive: the ferry strike of 1961 lasted nine days.", "archive.txt", collection=collection
    )
    answer = server.search("ferry strike", collection=collection, top_k=4, sources=["index", "web"])
    origins = [h["origin"] for h in answer["data"]]
    assert set(origins) == {"index", "web"} and len(origins) == 4
    assert answer["sources"] == {"index": {"status": "ok", "hits": 1}, "web": {"status": "ok", "hits": 4}}
    web = next(h for h in answer["data"] if h["origin"] == "web")
    assert web["source"].startswith("https://live.example/") and "ferry strike" in web["text"]
    degraded = server.search("ferry strike", collection=collection, sources=["index", "slowweb"])
    assert degraded["sources"]["slowweb"]["status"] == "timeout" and degraded["data"][0]["origin"] == "index"
    assert (
        error_of(server.post("/v1/search", json={"query": "x", "sources": ["slowweb"]}), 503)["code"]
        == "sources_unavailable"
    )
    metrics = server.get("/metrics").text
    assert 'openchatkit_retrieval_source_failures_total{source="slowweb",status="timeout"}' in metrics


def test_collections_are_listed_and_deleted(server: RetrievalServer, collection: str) -> None:
    other = unique_collection()
    server.ingest_text("The Vesper Bridge has seven cast-iron spans.", "bridges/vesper.txt", collection=collection)
    server.ingest_text("Quellin Bakery sells knotted cardamom buns.", "bakery/quellin.txt", collection=collection)
    server.ingest_text("Harrow Point Lighthouse is striped black and yellow.", "lights/harrow.txt", collection=other)
    listed = server.get("/v1/collections").json()
    assert listed["object"] == "list"
    by_name = {c["id"]: c for c in listed["data"]}
    assert by_name[collection] == {
        "id": collection,
        "object": "collection",
        "documents": 2,
        "chunks": 2,
        "default": False,
    }
    assert by_name[other]["documents"] == 1
    assert not any("__" in name for name in by_name)  # registries stay internal

    deleted = server.delete(f"/v1/collections/{collection}")
    assert deleted.status_code == 200 and deleted.json() == {"id": collection, "object": "collection", "deleted": True}
    assert collection not in {c["id"] for c in server.get("/v1/collections").json()["data"]}
    assert server.search("cardamom buns", collection=collection)["data"] == []
    assert server.get("/v1/documents", params={"collection": collection}).json()["data"] == []
    assert server.search("black and yellow lighthouse", collection=other)["data"][0]["source"] == "lights/harrow.txt"
    error = error_of(server.delete(f"/v1/collections/{collection}"), 404)
    assert error["code"] == "collection_not_found"
    # the name is free again: ingesting re-creates it, empty of the old documents
    server.ingest_text("Oldwick Bridge has eleven brick arches.", "bridges/oldwick.txt", collection=collection)
    assert {d["source"] for d in server.get("/v1/documents", params={"collection": collection}).json()["data"]} == {
        "bridges/oldwick.txt"
    }


@pytest.mark.parametrize("name", ["documents__documents", "mine__x", "a__"])
def test_internal_collection_names_are_reserved(server: RetrievalServer, name: str) -> None:
    for response in (
        server.post("/v1/documents", json={"text": "x", "source": "x.txt", "collection": name}),
        server.post("/v1/search", json={"query": "x", "collection": name}),
        server.get("/v1/documents", params={"collection": name}),
        server.delete(f"/v1/collections/{name}"),
    ):
        error = error_of(response, 400)
        assert error["code"] == "reserved_collection_name" and error["param"] == "collection", response.text
        assert "reserved" in error["message"]
    names = {c["id"] for c in server.get("/v1/collections").json()["data"]}
    assert name not in names and name.split("__")[0] not in names
    assert error_of(server.delete("/v1/collections/Bad Name!"), 400)["type"] == "invalid_request_error"

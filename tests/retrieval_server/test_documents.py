"""The document store on both engines: create, skip unchanged, replace changed, delete,
list, and repair every state a crash can leave behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from retrieval_server.chunking import Section
from retrieval_server.documents import DocumentStore, document_id_for, registry_name
from retrieval_server.index import Match
from retrieval_server.loaders import SourceDocument
from tests.retrieval_server.conftest import ENGINES

pytestmark = pytest.mark.parametrize("engine", ENGINES)


def doc(source: str, *paragraphs: str, title: str = "Doc") -> SourceDocument:
    return SourceDocument(source, title, [Section("", p) for p in paragraphs], "txt")


def long_text(topic: str, sentences: int) -> str:
    return " ".join(f"{topic} fact number {i} is that the value equals {i * 13}." for i in range(sentences))


def chunk_generations(store: DocumentStore, collection: str, document_id: str) -> dict[str, int]:
    hits, offset, seen = [], None, {}
    while True:
        page, offset = store.index.scroll(collection, [Match("document_id", (document_id,))], 100, offset)
        hits += page
        if offset is None:
            break
    for hit in hits:
        seen[hit.payload["generation"]] = seen.get(hit.payload["generation"], 0) + 1
    return seen


def assert_consistent(store: DocumentStore, collection: str) -> None:
    """Every ready record owns exactly its chunks, of its generation; no chunk without a record."""
    records, _ = store.list_records(collection, 1000)
    assert all(r["status"] == "ready" for r in records)
    total = 0
    for record in records:
        assert chunk_generations(store, collection, record["document_id"]) == {record["generation"]: record["chunks"]}
        total += record["chunks"]
    assert store.index.count(collection) == total


def test_create_skip_replace_delete(engine: str, make_store: Callable[..., DocumentStore]) -> None:
    store = make_store(engine)
    first = [doc("a.txt", long_text("Alpha", 20)), doc("b.txt", "Beta is short.")]
    outcomes = list(store.ingest(first, "c"))
    assert [(o.status, o.document_id) for o in outcomes] == [
        ("created", document_id_for("a.txt")),
        ("created", document_id_for("b.txt")),
    ]
    assert outcomes[0].chunks > 3 and outcomes[1].chunks == 1
    assert [o.status for o in store.ingest(first, "c")] == ["unchanged", "unchanged"]
    before = store.get("c", document_id_for("a.txt"))
    changed = list(store.ingest([doc("a.txt", long_text("Alpha", 6))], "c"))
    assert changed[0].status == "updated" and changed[0].chunks < outcomes[0].chunks
    after = store.get("c", document_id_for("a.txt"))
    assert after["generation"] != before["generation"] and after["created_at"] == before["created_at"]
    assert_consistent(store, "c")
    assert store.delete("c", document_id_for("b.txt")) and not store.delete("c", document_id_for("b.txt"))
    assert store.get("c", document_id_for("b.txt")) is None
    assert_consistent(store, "c")


def test_the_same_source_twice_in_one_batch_keeps_the_later(
    engine: str, make_store: Callable[..., DocumentStore]
) -> None:
    store = make_store(engine)
    outcomes = list(store.ingest([doc("x.txt", "old words"), doc("x.txt", "new words")], "c"))
    assert [o.status for o in outcomes] == ["created", "updated"]
    hits, _ = store.index.scroll("c")
    assert [h.payload["text"] for h in hits] == ["new words"]
    assert_consistent(store, "c")


def test_listing_pages_through_every_document(engine: str, make_store: Callable[..., DocumentStore]) -> None:
    store = make_store(engine)
    list(store.ingest([doc(f"d{i}.txt", f"Document {i}.") for i in range(23)], "c"))
    seen, after = [], None
    while True:
        page, after = store.list_records("c", 5, after)
        seen += [r["document_id"] for r in page]
        if after is None:
            break
    assert sorted(seen) == sorted(document_id_for(f"d{i}.txt") for i in range(23)) and len(seen) == 23
    assert store.list_records("missing", 5) == ([], None)


def _interrupted_write(
    store: DocumentStore, document: SourceDocument, chunks_written: int | None, delete_old: bool = False
) -> None:
    """Leave the state a crash leaves: registry says writing, some (or all) new chunks are in."""
    pending = store._prepare("c", document)
    assert not isinstance(pending, type(None)) and hasattr(pending, "chunks")
    record = store._record(pending, 0.0)
    from retrieval_server.documents import _record_point

    store.index.upsert(registry_name("c"), [_record_point({**record, "status": "writing"})])
    work = [(pending, chunk) for chunk in pending.chunks]
    store.index.upsert("c", store._chunk_points(work[: chunks_written if chunks_written is not None else len(work)]))
    if delete_old:
        store.index.delete(
            "c", [Match("document_id", (pending.document_id,)), Match("generation", (pending.generation,), negate=True)]
        )


def _reopen(engine: str, store: DocumentStore, make_store: Callable[..., DocumentStore], where: Path) -> DocumentStore:
    store.index.close()
    return make_store(engine, where=where)


def test_a_new_document_cut_off_mid_write_disappears(
    engine: str, make_store: Callable[..., DocumentStore], tmp_path: Path
) -> None:
    where = tmp_path / "idx"
    store = make_store(engine, where=where)
    list(store.ingest([doc("keep.txt", "Kept document.")], "c"))
    _interrupted_write(store, doc("new.txt", long_text("Gamma", 30)), chunks_written=2)
    raw = store.get("c", document_id_for("new.txt"))
    assert (
        raw["status"] == "writing"
        and store.index.count("c", [Match("document_id", (document_id_for("new.txt"),))]) == 2
    )
    store = _reopen(engine, store, make_store, where)
    assert store.get("c", document_id_for("new.txt")) is None
    assert store.index.count("c", [Match("document_id", (document_id_for("new.txt"),))]) == 0
    assert store.get("c", document_id_for("keep.txt"))["status"] == "ready"
    assert_consistent(store, "c")
    assert [o.status for o in store.ingest([doc("new.txt", long_text("Gamma", 30))], "c")] == ["created"]
    assert_consistent(store, "c")


def test_a_replacement_cut_off_mid_write_rolls_back(
    engine: str, make_store: Callable[..., DocumentStore], tmp_path: Path
) -> None:
    where = tmp_path / "idx"
    store = make_store(engine, where=where)
    list(store.ingest([doc("a.txt", long_text("Old", 10))], "c"))
    old = store.get("c", document_id_for("a.txt"))
    _interrupted_write(store, doc("a.txt", long_text("New", 25)), chunks_written=3)
    store = _reopen(engine, store, make_store, where)
    restored = store.get("c", document_id_for("a.txt"))
    assert (restored["status"], restored["generation"], restored["content_hash"]) == (
        "ready",
        old["generation"],
        old["content_hash"],
    )
    assert_consistent(store, "c")
    assert [o.status for o in store.ingest([doc("a.txt", long_text("New", 25))], "c")] == ["updated"]
    assert_consistent(store, "c")


@pytest.mark.parametrize("delete_old", [False, True])
def test_a_replacement_with_all_new_chunks_in_rolls_forward(
    engine: str, delete_old: bool, make_store: Callable[..., DocumentStore], tmp_path: Path
) -> None:
    where = tmp_path / "idx"
    store = make_store(engine, where=where)
    list(store.ingest([doc("a.txt", long_text("Old", 10))], "c"))
    _interrupted_write(store, doc("a.txt", long_text("New", 25)), chunks_written=None, delete_old=delete_old)
    writing = store.get("c", document_id_for("a.txt"))
    store = _reopen(engine, store, make_store, where)
    finished = store.get("c", document_id_for("a.txt"))
    assert (finished["status"], finished["generation"]) == ("ready", writing["generation"])
    assert_consistent(store, "c")
    assert [o.status for o in store.ingest([doc("a.txt", long_text("New", 25))], "c")] == ["unchanged"]


def test_an_interrupted_delete_is_finished(
    engine: str, make_store: Callable[..., DocumentStore], tmp_path: Path
) -> None:
    where = tmp_path / "idx"
    store = make_store(engine, where=where)
    list(store.ingest([doc("a.txt", long_text("Doomed", 10)), doc("b.txt", "Stays.")], "c"))
    from retrieval_server.documents import _record_point

    record = store.get("c", document_id_for("a.txt"))
    store.index.upsert(registry_name("c"), [_record_point({**record, "status": "deleting"})])
    store = _reopen(engine, store, make_store, where)
    assert store.get("c", document_id_for("a.txt")) is None
    assert store.index.count("c", [Match("document_id", (document_id_for("a.txt"),))]) == 0
    assert_consistent(store, "c")


def test_rerunning_over_an_unrepaired_crash_fixes_it(engine: str, make_store: Callable[..., DocumentStore]) -> None:
    """Without a reopen (a store that already checked the collection), a rerun alone repairs."""
    store = make_store(engine)
    list(store.ingest([doc("a.txt", long_text("Old", 10))], "c"))
    _interrupted_write(store, doc("a.txt", long_text("Half", 25)), chunks_written=4)
    assert [o.status for o in store.ingest([doc("a.txt", long_text("Final", 12))], "c")] == ["updated"]
    assert_consistent(store, "c")

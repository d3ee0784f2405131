"""Qdrant Edge and qdrant-client's embedded engine hold the same points and must answer
the same queries the same way (qdrant-client tests its local and remote modes like this)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from retrieval_server.chunking import Chunker, chunk_context
from retrieval_server.documents import CHUNK_FILTER_FIELDS, DocumentStore
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import (
    CollectionSpec,
    DenseQuery,
    HybridQuery,
    IndexHit,
    IndexPoint,
    Match,
    SparseQuery,
    VectorIndex,
    open_index,
)
from retrieval_server.loaders import iter_file_documents, iter_paths
from retrieval_server.search import IndexSearcher

EVAL_DOCS = Path(__file__).resolve().parents[2] / "retrieval_server" / "eval" / "docs"
QUERIES = [
    "How long is the Blue Loop tram line?",
    "desalination plant Cape Tull",
    "who discovered comet C/1998 R4",
    "sourdough starter twenty years",
    "Hvita glacier retreat 312 metres",
    "robot weight limit 54 kilograms",
    "ferry MV Gannet Rock",
    "Weaver's Map tapestry restored",
    "varroa mites oxalic acid",
    "Mount Serak seismometers",
    "Anika Dorn chess",
    "Kestrel steam engine",
    "library Pell & Osei",
    "marathon course record",
    "the of and",
    "museum opening hours on Sunday",
    "fog water millimetres",
    "how much does a tram ticket cost",
    "Lake Orsine reservoir capacity",
    "who leads the botanical station",
]


def chunk_points(embedder: DenseEmbedder, sparse: SparseEncoder) -> list[IndexPoint]:
    chunker = Chunker(embedder.tokenizer, 48, 8)
    points = []
    for path in iter_paths([EVAL_DOCS]):
        for document in iter_file_documents(path, max_file_bytes=10**7, max_chars=10**7):
            for chunk in chunker.split(document.sections):
                context = chunk_context(document.title, chunk.heading, chunk.text)
                payload = {
                    "document_id": path.stem,
                    "file_name": path.name,
                    "type": document.type,
                    "chunk_index": chunk.index,
                    "text": chunk.text,
                    "tags": ["even" if chunk.index % 2 else "odd"],
                }
                points.append(
                    IndexPoint(
                        str(uuid.uuid5(uuid.NAMESPACE_URL, f"{path.name}/{chunk.index}")),
                        payload,
                        embedder.embed([context])[0].tolist(),
                        sparse.encode_document(context),
                    )
                )
    return points


QDRANT_URL = os.environ.get("RETRIEVAL_TEST_QDRANT_URL", "http://127.0.0.1:6333")


def qdrant_server_index() -> VectorIndex:
    try:
        httpx.get(QDRANT_URL + "/readyz", timeout=2).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"NO QDRANT SERVER at {QDRANT_URL} ({exc}): set RETRIEVAL_TEST_QDRANT_URL to test the url= backend")
    return open_index(url=QDRANT_URL)


@pytest.fixture(params=["qdrant-client", "qdrant-server"])
def twin_indexes(
    request: pytest.FixtureRequest,
    open_engine: Callable[[str], VectorIndex],
    embedder: DenseEmbedder,
    sparse: SparseEncoder,
) -> Iterator[tuple[VectorIndex, VectorIndex, list[IndexPoint], str]]:
    """Edge and another engine (qdrant-client embedded, or a Qdrant server when one answers)
    holding the same points in a collection with a random name."""
    other = qdrant_server_index() if request.param == "qdrant-server" else open_engine(request.param)
    name = f"congruence-{uuid.uuid4().hex[:10]}"
    points = chunk_points(embedder, sparse)
    pair = [open_engine("edge"), other]
    for index in pair:
        index.ensure_collection(CollectionSpec(name, embedder.dimension, CHUNK_FILTER_FIELDS))
        for start in range(0, len(points), 50):
            index.upsert(name, points[start : start + 50])
    yield pair[0], pair[1], points, name
    if request.param == "qdrant-server":
        other.drop_collection(name)
        other.close()


SCORE_TOLERANCE = 1e-4  # the engines sum the same floats in another order: the last digits differ
Groups = list[tuple[float, frozenset[object]]]


def score_groups(hits: list[Any], member: Callable[[Any], object]) -> Groups:
    """Hits (best first) grouped by score, scores within SCORE_TOLERANCE counting as one
    (engines may order ties differently): ``(score of the group's first hit, {member(hit)})``."""
    groups: list[tuple[float, set[object]]] = []
    for hit in hits:
        if not groups or abs(groups[-1][0] - hit.score) > SCORE_TOLERANCE:
            groups.append((hit.score, set()))
        groups[-1][1].add(member(hit))
    return [(score, frozenset(members)) for score, members in groups]


def same_groups(a: Groups, b: Groups) -> bool:
    return len(a) == len(b) and all(
        abs(x[0] - y[0]) <= SCORE_TOLERANCE and x[1] == y[1] for x, y in zip(a, b, strict=True)
    )


def same_scores(a: Groups, b: Groups) -> bool:
    return len(a) == len(b) and all(abs(x[0] - y[0]) <= SCORE_TOLERANCE for x, y in zip(a, b, strict=True))


def assert_same_ranking(a: list[IndexHit], b: list[IndexHit], context: object = None) -> None:
    """Same scores in the same order, same ids per score; the last score group may be cut
    at the limit in different places when it holds ties."""
    ra, rb = score_groups(a, lambda h: h.id), score_groups(b, lambda h: h.id)
    assert len(a) == len(b), context
    assert same_groups(ra[:-1], rb[:-1]), (context, ra, rb)
    assert same_scores(ra, rb), (context, ra, rb)


def tie_free(hits: list[IndexHit]) -> bool:
    scores = [round(h.score, 5) for h in hits]
    return len(scores) == len(set(scores))


def test_dense_sparse_and_hybrid_answers_agree(twin_indexes, embedder: DenseEmbedder, sparse: SparseEncoder) -> None:
    edge, client, points, name = twin_indexes
    assert len(points) > 60
    compared_hybrid = 0
    for text in QUERIES:
        dense, terms = embedder.embed_query(text).tolist(), sparse.encode_query(text)
        for query in (DenseQuery(dense), SparseQuery(terms)):
            assert_same_ranking(edge.query(name, query, 10), client.query(name, query, 10), (text, query))
        if not terms.indices:
            continue
        # RRF works on ranks: compare wherever the engines' own rankings have no ties to order.
        everything = len(points)
        dense_all, sparse_all = (
            edge.query(name, DenseQuery(dense), everything),
            edge.query(name, SparseQuery(terms), everything),
        )
        if tie_free(dense_all) and tie_free(sparse_all):
            for hybrid in (
                HybridQuery(dense, terms, prefetch_limit=everything, rrf_k=60),
                HybridQuery(dense, terms, prefetch_limit=everything, rrf_k=60, weights=(0.5, 2.0)),
                HybridQuery(dense, terms, prefetch_limit=everything, fusion="dbsf"),
            ):
                a, b = edge.query(name, hybrid, 8), client.query(name, hybrid, 8)
                context = (text, hybrid.fusion, hybrid.weights)
                assert [h.id for h in a] == [h.id for h in b], context
                assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4), context
            compared_hybrid += 1
    assert compared_hybrid >= len(QUERIES) // 2


def test_filters_counts_scrolls_and_deletes_agree(twin_indexes, embedder: DenseEmbedder) -> None:
    edge, client, points, name = twin_indexes
    dense = embedder.embed_query("trams and ferries in the harbour").tolist()
    filters = [
        [Match("file_name", ("ferry_timetable.txt",))],
        [Match("file_name", ("ferry_timetable.txt", "harbor_city_transit.md"))],
        [Match("type", ("md",)), Match("tags", ("even",))],
        [Match("type", ("md", "txt"), negate=True)],
    ]
    for where in filters:
        assert_same_ranking(
            edge.query(name, DenseQuery(dense), 5, where), client.query(name, DenseQuery(dense), 5, where)
        )
        assert edge.count(name, where) == client.count(name, where) > 0
    assert edge.count(name) == client.count(name) == len(points)

    def all_ids(index: VectorIndex) -> list[str]:
        ids, offset = [], None
        while True:
            hits, offset = index.scroll(name, [Match("type", ("html",))], 7, offset)
            ids += [h.id for h in hits]
            if offset is None:
                return ids

    assert all_ids(edge) == all_ids(client) and all_ids(edge)

    some = [points[0].id, points[5].id, str(uuid.uuid4())]
    a, b = edge.retrieve(name, some, with_dense=True), client.retrieve(name, some, with_dense=True)
    assert sorted(h.id for h in a) == sorted(h.id for h in b) == sorted(some[:2])
    for x, y in zip(sorted(a, key=lambda h: h.id), sorted(b, key=lambda h: h.id), strict=True):
        assert x.payload == y.payload
        assert max(abs(p - q) for p, q in zip(x.dense, y.dense, strict=True)) < 1e-5

    for index in (edge, client):
        index.delete(name, [Match("file_name", ("ferry_timetable.txt",)), Match("tags", ("odd",))])
    assert edge.count(name) == client.count(name) < len(points)
    assert (
        edge.count(name, [Match("file_name", ("ferry_timetable.txt",))])
        == client.count(name, [Match("file_name", ("ferry_timetable.txt",))])
        > 0
    )


def test_collections_and_vector_sizes_are_checked_the_same_way(open_engine: Callable[[str], VectorIndex]) -> None:
    from retrieval_server.index import IndexMismatch

    for engine in ("edge", "qdrant-client"):
        index = open_engine(engine)
        assert not index.collection_exists("x")
        index.ensure_collection(CollectionSpec("x", 8, ("document_id",)))
        index.ensure_collection(CollectionSpec("x", 8, ("document_id",)))  # idempotent
        with pytest.raises(IndexMismatch):
            index.ensure_collection(CollectionSpec("x", 16, ("document_id",)))
        index.ensure_collection(CollectionSpec("records", None, ("status",)))
        index.upsert("records", [IndexPoint(str(uuid.uuid4()), {"status": "ready"})])
        assert index.count("records", [Match("status", ("ready",))]) == 1
        assert index.list_collections() == ["records", "x"]
        index.drop_collection("x")
        assert not index.collection_exists("x")
        assert index.list_collections() == ["records"]


def test_document_stores_on_both_engines_agree(make_store: Callable[..., DocumentStore]) -> None:
    stores = [make_store(engine) for engine in ("edge", "qdrant-client")]
    documents = []
    for path in iter_paths([EVAL_DOCS]):
        documents += list(iter_file_documents(path, max_file_bytes=10**7, max_chars=10**7))
    for store in stores:
        assert {o.status for o in store.ingest(documents, "docs")} == {"created"}
    listings = []
    for store in stores:
        records, _ = store.list_records("docs", 1000)
        listings.append(sorted((r["document_id"], r["content_hash"], r["chunks"], r["status"]) for r in records))
    assert listings[0] == listings[1] and len(listings[0]) == len(documents)
    searchers = [IndexSearcher(s.index, s.embedder, s.sparse) for s in stores]
    compared = 0
    for text in QUERIES:
        edge = stores[0]
        total = edge.index.count("docs")
        dense, terms = edge.embedder.embed_query(text).tolist(), edge.sparse.encode_query(text)
        if terms.indices and not (
            tie_free(edge.index.query("docs", DenseQuery(dense), total))
            and tie_free(edge.index.query("docs", SparseQuery(terms), total))
        ):
            continue  # equal BM25 scores: the engines may rank them apart differently, and RRF follows ranks
        # chunk ids differ between stores (random generations): compare content
        answers = [score_groups(s.search("docs", text, 5), lambda h: (h.document_id, h.chunk_index)) for s in searchers]
        assert same_groups(answers[0][:-1], answers[1][:-1]), (text, answers)  # the last group may be cut at top_k
        assert abs(answers[0][-1][0] - answers[1][-1][0]) <= SCORE_TOLERANCE, text
        compared += 1
    assert compared >= len(QUERIES) // 2

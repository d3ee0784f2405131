"""``openchatkit eval retrieval --lookalikes N``: every ranking variant on a look-alike
corpus of N documents (:mod:`retrieval_server.lookalikes`), scored on two question sets,
by name and by content, with search latency (query embedding, engine, title field and
reranking: everything :meth:`IndexSearcher.search` does).

The corpus is ingested once through the normal write path into a scratch embedded index;
each variant then only searches it.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openchatkit.bench.results import summarize
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import DocumentStore, registry_name
from retrieval_server.evaluation import TOP_K, EvalResult, Question, score
from retrieval_server.lookalikes import corpus, questions, source_of
from retrieval_server.ranking import Ranking, Reranker, build_reranker
from retrieval_server.search import IndexSearcher, SearchHit

COLLECTION = "lookalikes"
QUESTION_SETS = ("name", "content")

VARIANTS: dict[str, Ranking] = {
    "dense": Ranking(retriever="dense"),
    "bm25": Ranking(retriever="bm25"),
    "rrf": Ranking(fusion="rrf", rrf_k=60),
    "dbsf": Ranking(fusion="dbsf"),
    "rrf-k1-weighted-1:4": Ranking(fusion="rrf", rrf_k=1, weights=(1.0, 4.0)),
    "weighted-0.1:0.9": Ranking(fusion="weighted", weights=(0.1, 0.9)),
    "weighted-0.3:0.7": Ranking(fusion="weighted", weights=(0.3, 0.7)),
    "weighted-0.5:0.5": Ranking(fusion="weighted", weights=(0.5, 0.5)),
    "rrf-prefetch200": Ranking(fusion="rrf", rrf_k=60, prefetch_limit=200),
    "weighted-0.1:0.9-prefetch200": Ranking(fusion="weighted", weights=(0.1, 0.9), prefetch_limit=200),
    "rrf-title": Ranking(fusion="rrf", rrf_k=60, title_weight=1.0),
    "weighted-0.1:0.9-title": Ranking(fusion="weighted", weights=(0.1, 0.9), title_weight=1.0),
    "rrf+late-interaction": Ranking(fusion="rrf", rrf_k=60, rerank="late-interaction", rerank_candidates=20),
    "weighted-0.1:0.9+late-interaction": Ranking(
        fusion="weighted", weights=(0.1, 0.9), rerank="late-interaction", rerank_candidates=5
    ),
}
"""Named rankings the harness compares; ``default`` (the service's settings) is added to them."""

Log = Callable[[str], None]


def question_set(by: str) -> list[Question]:
    return [Question(q.question, source_of(q.kind, q.name), q.answer) for q in questions(by)]


def evaluate_lookalikes(
    size: int,
    variants: dict[str, Ranking],
    settings: RetrievalSettings | None = None,
    optimize: bool = False,
    log: Log = lambda _: None,
) -> dict[str, Any]:
    """Ingest ``corpus(size)`` and score every variant (``variants``: exact search; with
    ``optimize`` again in ``variants_hnsw`` once HNSW indexes are built); a JSON-ready report."""
    from retrieval_server.app import build_store, load_embedder

    base = settings or RetrievalSettings()
    with tempfile.TemporaryDirectory(prefix="openchatkit-lookalikes-") as scratch:
        settings = base.model_copy(update={"qdrant_url": None, "qdrant_path": Path(scratch), "embedded_engine": "edge"})
        store = build_store(settings, load_embedder(settings))
        try:
            started = time.perf_counter()
            documents, chunks = ingest_corpus(store, size)
            ingest_s = time.perf_counter() - started
            log(f"{size} documents ({chunks} chunks) ingested in {ingest_s:.0f}s")
            report = score_variants(store, variants, settings, log)
            optimize_s, report_hnsw = None, None
            if optimize:
                started = time.perf_counter()
                store.index.optimize(COLLECTION)
                optimize_s = time.perf_counter() - started
                log(f"HNSW built in {optimize_s:.0f}s; the variants again:")
                report_hnsw = score_variants(store, variants, settings, log)
        finally:
            store.index.close()
    return {
        "size": size,
        "documents": documents,
        "chunks": chunks,
        "ingest_s": ingest_s,
        "hnsw": optimize,
        "optimize_s": optimize_s,
        "embedding_model": store.embedder.name,
        "embedding_runtime": store.embedder.runtime,
        "questions": {by: len(question_set(by)) for by in QUESTION_SETS},
        "loadavg_1m": os.getloadavg()[0],
        "variants": report,
        "variants_hnsw": report_hnsw,
    }


def ingest_corpus(store: DocumentStore, size: int) -> tuple[int, int]:
    """``corpus(size)`` into ``store``'s collection ``lookalikes``; (documents, chunks)."""
    outcomes = list(store.ingest((d.document for d in corpus(size)), COLLECTION))
    return len(outcomes), sum(o.chunks for o in outcomes)


def score_variants(
    store: DocumentStore, variants: dict[str, Ranking], settings: RetrievalSettings, log: Log = lambda _: None
) -> dict[str, Any]:
    """Each variant's metrics per question set (misses included) and search latency."""
    documents = store.index.count(registry_name(COLLECTION))
    chunks = store.index.count(COLLECTION)
    sets = {by: question_set(by) for by in QUESTION_SETS}
    rerankers: dict[str, Reranker | None] = {}
    report: dict[str, Any] = {}
    for name, ranking in variants.items():
        if ranking.rerank not in rerankers:
            rerankers[ranking.rerank] = build_reranker(
                ranking.rerank, store.embedder, settings.reranker_model, settings.reranker_device
            )
        searcher = IndexSearcher(store.index, store.embedder, store.sparse, ranking, rerankers[ranking.rerank])
        report[name] = _run_variant(searcher, sets, documents, chunks)
        log(_line(name, report[name]))
    return report


def _run_variant(
    searcher: IndexSearcher, sets: dict[str, list[Question]], documents: int, chunks: int
) -> dict[str, Any]:
    for q in sets["name"][:3]:  # warm-up: first calls allocate
        searcher.search(COLLECTION, q.question, TOP_K)
    timings: list[float] = []
    out: dict[str, Any] = {"ranking": dataclasses.asdict(searcher.ranking)}
    for by, asked in sets.items():
        answers: list[list[SearchHit]] = []
        for q in asked:
            started = time.perf_counter()
            answers.append(searcher.search(COLLECTION, q.question, TOP_K))
            timings.append((time.perf_counter() - started) * 1000)
        result: EvalResult = score(asked, answers, documents, chunks)
        out[f"by_{by}"] = {**result.metrics(), "misses": result.misses, "not_first": result.not_first}
    out["search_ms"] = summarize(timings)
    return out


def _line(name: str, row: dict[str, Any]) -> str:
    parts = [f"{name:24}"]
    for by in QUESTION_SETS:
        m = row[f"by_{by}"]
        parts.append(f"by-{by}: r@1 {m['recall_at_1']:.3f} r@5 {m['recall_at_5']:.3f} mrr {m['mrr']:.3f}")
    parts.append(f"p50 {row['search_ms']['p50']:.1f} ms")
    return "  ".join(parts)

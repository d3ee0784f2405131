"""``openchatkit bench retrieval``: ingest throughput (chunks/s through the whole pipeline:
chunking, dense + BM25 vectors, crash-safe writes) and search latency p50/p95 at several
collection sizes, on a synthetic corpus, for each embedded engine.

Embedding every chunk of a 100k corpus would take most of an hour on a small CPU, so the
scale runs use real embeddings for a pool of chunks and, beyond it, mixtures of two pool
vectors plus noise; their BM25 vectors always come from real (synthetic) text. Search
latency is timed two ways: ``search_ms`` is what the service spends (query embedding, BM25,
engine), ``engine_ms`` the engine's hybrid query alone.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from openchatkit.apps import stderr_console
from openchatkit.bench.results import RESULTS_DIR, figure, loadavg, save_figure, summarize, write_result
from retrieval_server.chunking import Section
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import CHUNK_FILTER_FIELDS, chunk_point_id, document_id_for
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import CollectionSpec, HybridQuery, IndexPoint, VectorIndex, open_index
from retrieval_server.loaders import SourceDocument
from retrieval_server.ranking import build_reranker
from retrieval_server.search import IndexSearcher

POOL_SIZE = 2000
GOAL_SEARCH_P50_MS = 20.0
GOAL_INGEST_CHUNKS_PER_S = 200.0
_CONSONANTS, _VOWELS = "bcdfghjklmnprstvwz", "aeiou"
_COMMON = ("the", "of", "and", "in", "to", "a", "is", "was", "for", "on", "with", "by", "at", "from", "its", "which")


class SyntheticText:
    """Sentences over a fixed vocabulary of pseudo-words, names and numbers (seeded)."""

    def __init__(self, seed: int = 7, vocabulary: int = 6000) -> None:
        self.rng = random.Random(seed)
        words = {self._word() for _ in range(vocabulary * 2)}
        self.words = sorted(words)[:vocabulary]
        self.names = [w.capitalize() for w in self.rng.sample(self.words, 400)]

    def _word(self) -> str:
        syllables = self.rng.randint(1, 4)
        return "".join(self.rng.choice(_CONSONANTS) + self.rng.choice(_VOWELS) for _ in range(syllables))

    def sentence(self) -> str:
        parts = []
        for _ in range(self.rng.randint(8, 20)):
            roll = self.rng.random()
            if roll < 0.3:
                parts.append(self.rng.choice(_COMMON))
            elif roll < 0.38:
                parts.append(self.rng.choice(self.names))
            elif roll < 0.42:
                parts.append(str(self.rng.randint(1, 9999)))
            else:
                parts.append(self.rng.choice(self.words))
        return " ".join(parts).capitalize() + "."

    def paragraph(self, sentences: int) -> str:
        return " ".join(self.sentence() for _ in range(sentences))

    def query(self, text: str) -> str:
        words = text.rstrip(".").split()
        start = self.rng.randint(0, max(0, len(words) - 8))
        return " ".join(words[start : start + self.rng.randint(5, 9)])


def _timed_embedder(embedder: DenseEmbedder, spent: list[float]) -> Callable[[Any], np.ndarray]:
    original = embedder.embed

    def embed(texts: Any) -> np.ndarray:
        started = time.perf_counter()
        try:
            return original(texts)
        finally:
            spent.append(time.perf_counter() - started)

    return embed


def bench_ingest(
    settings: RetrievalSettings, embedder: DenseEmbedder, chunks: int, text: SyntheticText, console: Console
) -> dict[str, Any]:
    """The whole ingest pipeline into a fresh Edge index, documents of ~8 chunks each."""
    from retrieval_server.app import build_store

    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as scratch:
        local = settings.model_copy(
            update={"qdrant_url": None, "qdrant_path": Path(scratch), "embedded_engine": "edge"}
        )
        store = build_store(local, embedder)
        spent: list[float] = []
        store.embedder.embed = _timed_embedder(embedder, spent)  # type: ignore[method-assign,assignment]
        documents: list[SourceDocument] = []
        sections_per_doc = 4
        while sum(len(store.chunker.split(d.sections)) for d in documents[-1:]) * len(documents) < chunks:
            sections = [Section(f"part {i}", text.paragraph(14)) for i in range(sections_per_doc)]
            documents.append(SourceDocument(f"bench://doc/{len(documents)}", text.sentence()[:60], sections, "txt"))
        console.print(f"ingest: {len(documents)} synthetic documents")
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        outcomes = list(store.ingest(documents, "bench"))
        elapsed = time.perf_counter() - started
        del store.embedder.embed
        store.index.close()
    written = sum(o.chunks for o in outcomes)
    return {
        "documents": len(outcomes),
        "chunks": written,
        "seconds": elapsed,
        "chunks_per_s": written / elapsed,
        "embed_seconds": sum(spent),
        "embed_chunks_per_s": written / sum(spent) if spent else None,
        "chunk_tokens": settings.chunk_tokens,
        "chunk_overlap_tokens": settings.chunk_overlap_tokens,
        "embedding_model": embedder.name,
        "embedding_dtype": embedder.dtype,
        "engine": "edge",
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": os.getloadavg()[0],
    }


def _payload(i: int, chunk_text: str) -> dict[str, Any]:
    document_id = document_id_for(f"bench://scale/{i // 8}")
    return {
        "document_id": document_id,
        "generation": "g0",
        "chunk_index": i % 8,
        "chunk_count": 8,
        "title": f"Synthetic document {i // 8}",
        "heading": "",
        "text": chunk_text,
        "source": f"bench://scale/{i // 8}",
        "file_name": f"{i // 8}",
        "url": None,
        "type": "txt",
        "tags": [],
        "metadata": {},
    }


class ScaleCorpus:
    """Chunk texts, BM25 vectors and dense vectors for up to ``size`` chunks, made once."""

    def __init__(
        self, size: int, embedder: DenseEmbedder, sparse: SparseEncoder, text: SyntheticText, console: Console
    ) -> None:
        self.texts = [text.paragraph(3) for _ in range(size)]
        console.print(f"scale corpus: embedding a pool of {min(POOL_SIZE, size)} chunks, mixing the rest")
        pool = embedder.embed(self.texts[:POOL_SIZE])
        rng = np.random.default_rng(11)
        extra = size - len(pool)
        if extra > 0:
            a, b = rng.integers(0, len(pool), extra), rng.integers(0, len(pool), extra)
            mixed = pool[a] + 0.5 * pool[b] + rng.normal(0, 0.02, (extra, pool.shape[1])).astype(np.float32)
            mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
            self.dense = np.vstack([pool, mixed.astype(np.float32)])
        else:
            self.dense = pool
        self.sparse = [sparse.encode_document(t) for t in self.texts]

    def points(self, start: int, stop: int) -> list[IndexPoint]:
        return [
            IndexPoint(
                chunk_point_id("scale", "g0", i), _payload(i, self.texts[i]), self.dense[i].tolist(), self.sparse[i]
            )
            for i in range(start, stop)
        ]


def bench_search(
    engine: str,
    sizes: list[int],
    corpus: ScaleCorpus,
    queries: list[str],
    store_dir: Path,
    embedder: DenseEmbedder,
    sparse: SparseEncoder,
    settings: RetrievalSettings,
    timed: int,
    optimize: bool,
    console: Console,
) -> list[dict[str, Any]]:
    index: VectorIndex = open_index(path=store_dir / engine, engine=engine)  # type: ignore[arg-type]
    ranking = settings.ranking()
    reranker = build_reranker(ranking.rerank, embedder, settings.reranker_model, settings.reranker_device)
    searcher = IndexSearcher(index, embedder, sparse, ranking, reranker)
    index.ensure_collection(CollectionSpec("bench", embedder.dimension, CHUNK_FILTER_FIELDS))
    prepared = [(q, embedder.embed_query(q).tolist(), sparse.encode_query(q)) for q in queries[:timed]]
    rows: list[dict[str, Any]] = []
    loaded = 0
    try:
        for size in sizes:
            started = time.perf_counter()
            for start in range(loaded, size, 1000):
                index.upsert("bench", corpus.points(start, min(size, start + 1000)))
            load_s, loaded = time.perf_counter() - started, size
            rows.append(_time_queries(engine, size, index, searcher, prepared, settings, load_s, console))
        if optimize and engine == "edge":
            started = time.perf_counter()
            index.optimize("bench")
            optimize_s = time.perf_counter() - started
            console.print(f"edge: HNSW built over {loaded} chunks in {optimize_s:.0f}s")
            rows.append(_time_queries("edge+hnsw", loaded, index, searcher, prepared, settings, optimize_s, console))
    finally:
        index.close()
    return rows


def _time_queries(
    engine: str,
    size: int,
    index: VectorIndex,
    searcher: IndexSearcher,
    prepared: list[tuple[str, list[float], Any]],
    settings: RetrievalSettings,
    load_s: float,
    console: Console,
) -> dict[str, Any]:
    for q, _, _ in prepared[:3]:  # warm-up
        searcher.search("bench", q, 5)
    search_ms, engine_ms = [], []
    for q, dense, sparse_query in prepared:
        started = time.perf_counter()
        searcher.search("bench", q, 5)
        search_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        index.query("bench", HybridQuery(dense, sparse_query, settings.prefetch_limit, settings.rrf_k), 5)
        engine_ms.append((time.perf_counter() - started) * 1000)
    row: dict[str, Any] = {
        "engine": engine,
        "size": size,
        "queries": len(prepared),
        "search_ms": summarize(search_ms),
        "engine_ms": summarize(engine_ms),
        "load_s": load_s,
        "loadavg_1m": os.getloadavg()[0],
    }
    console.print(
        f"{engine:>14} {size:>7} chunks: search p50 {row['search_ms']['p50']:.1f} ms "
        f"p95 {row['search_ms']['p95']:.1f} ms (engine p50 {row['engine_ms']['p50']:.1f} ms)"
    )
    return row


def run_benchmark(
    sizes: list[int],
    queries: int,
    ingest_chunks: int,
    engines: list[str],
    slow_engine_queries: int,
    optimize: bool,
    out: Path,
    console: Console,
    stamped: bool = True,
) -> Path:
    from retrieval_server.app import load_embedder

    load_before = loadavg()
    settings = RetrievalSettings()
    embedder = load_embedder(settings)
    sparse = SparseEncoder()
    text = SyntheticText()
    ingest = bench_ingest(settings, embedder, ingest_chunks, text, console)
    console.print(
        f"ingest: {ingest['chunks']} chunks in {ingest['seconds']:.1f}s = {ingest['chunks_per_s']:.0f} chunks/s"
    )
    corpus = ScaleCorpus(max(sizes), embedder, sparse, text, console)
    query_texts = [text.query(corpus.texts[random.Random(i).randrange(len(corpus.texts))]) for i in range(queries)]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as scratch:
        for engine in engines:
            timed = queries if engine == "edge" else min(queries, slow_engine_queries)
            rows += bench_search(
                engine, sizes, corpus, query_texts, Path(scratch), embedder, sparse, settings, timed, optimize, console
            )
    largest = [r for r in rows if r["engine"] == "edge" and r["size"] == max(sizes)]
    payload = {
        "corpus": (
            f"synthetic: pseudo-word sentences; real embeddings for {min(POOL_SIZE, max(sizes))} chunks, "
            "mixtures of two of them plus noise beyond; BM25 from each chunk's own text"
        ),
        "ingest": ingest,
        "search": rows,
        "goals": {
            "ingest_chunks_per_s": {
                "goal": GOAL_INGEST_CHUNKS_PER_S,
                "value": ingest["chunks_per_s"],
                "met": ingest["chunks_per_s"] >= GOAL_INGEST_CHUNKS_PER_S,
            },
            "search_p50_ms_at_largest": {
                "goal": GOAL_SEARCH_P50_MS,
                "size": max(sizes),
                "engine": "edge",
                "value": largest[0]["search_ms"]["p50"] if largest else None,
                "met": bool(largest) and largest[0]["search_ms"]["p50"] <= GOAL_SEARCH_P50_MS,
            },
        },
    }
    path = write_result("retrieval", payload, out, load_before=load_before, stamped=stamped)
    plot(payload, path.with_suffix(".png"))
    return path


def plot(payload: dict[str, Any], png: Path) -> None:
    fig, (left, right) = figure(2, 12, 4.5, gridspec_kw={"width_ratios": [3, 1]})
    engines = sorted({r["engine"] for r in payload["search"]})
    for engine in engines:
        rows = sorted((r for r in payload["search"] if r["engine"] == engine), key=lambda r: r["size"])
        sizes = [r["size"] for r in rows]
        marker = "s" if engine == "edge+hnsw" else "o"
        line = left.plot(sizes, [r["search_ms"]["p50"] for r in rows], marker=marker, label=f"{engine} p50")[0]
        left.plot(
            sizes,
            [r["search_ms"]["p95"] for r in rows],
            marker=marker,
            linestyle="--",
            color=line.get_color(),
            label=f"{engine} p95",
        )
    left.axhline(GOAL_SEARCH_P50_MS, color="grey", linestyle=":", label="goal p50 20 ms")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("chunks in the collection")
    left.set_ylabel("search latency (ms, query embedding included)")
    left.set_title("Hybrid search (dense + BM25, RRF)")
    left.legend(fontsize=8)
    ingest = payload["ingest"]
    right.bar(["measured", "goal"], [ingest["chunks_per_s"], GOAL_INGEST_CHUNKS_PER_S], color=["tab:blue", "lightgrey"])
    right.set_title(f"Ingest, {ingest['chunk_tokens']}-token chunks")
    right.set_ylabel("chunks/s")
    save_figure(fig, png)


def bench_retrieval(
    sizes: Annotated[str, typer.Option(help="Collection sizes in chunks, comma separated.")] = "1000,10000,100000",
    queries: Annotated[int, typer.Option(help="Searches timed per size.")] = 200,
    ingest_chunks: Annotated[int, typer.Option(help="Chunks for the ingest throughput run.")] = 2000,
    engines: Annotated[str, typer.Option(help="edge and/or qdrant-client.")] = "edge,qdrant-client",
    slow_engine_queries: Annotated[
        int, typer.Option(help="Searches timed on qdrant-client's exact Python engine.")
    ] = 20,
    optimize: Annotated[
        bool, typer.Option("--optimize/--no-optimize", help="Also time Edge with HNSW built at the largest size.")
    ] = True,
    out: Annotated[Path, typer.Option(help="Results folder.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(hidden=True)] = True,
) -> Path:
    """Ingest chunks/s, and search latency p50/p95 at several collection sizes (synthetic corpus)."""
    console = stderr_console()
    try:
        size_list = sorted({int(s) for s in sizes.split(",") if s.strip()})
    except ValueError:
        raise typer.BadParameter("sizes must be integers", param_hint="--sizes") from None
    engine_list = [e.strip() for e in engines.split(",") if e.strip()]
    for engine in engine_list:
        if engine not in ("edge", "qdrant-client"):
            raise typer.BadParameter(f"unknown engine {engine}", param_hint="--engines")
    path = run_benchmark(
        size_list, queries, ingest_chunks, engine_list, slow_engine_queries, optimize, out, console, stamped
    )
    console.print(f"wrote {path} and {path.with_suffix('.png')}")
    return path

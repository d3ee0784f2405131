"""Search over the index (first stage, title field, reranking: see :mod:`retrieval_server.ranking`),
and OpenChatKit's neighbour widening of the top hit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from retrieval_server.documents import chunk_point_id
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import (
    DenseQuery,
    Fusion,
    HybridQuery,
    IndexHit,
    SparseQuery,
    SparseVector,
    VectorIndex,
    Where,
)
from retrieval_server.index.base import order_hits
from retrieval_server.ranking import DEFAULT_SCORE_WEIGHTS, Ranking, Reranker, fuse_title, title_ranks


@dataclass(frozen=True)
class SearchHit:
    id: str
    title: str
    source: str
    text: str
    score: float
    origin: str = "index"
    """Which source found it: "index" or the name of a live source."""
    url: str | None = None
    heading: str = ""
    document_id: str | None = None
    chunk_index: int | None = None
    moderation: dict[str, Any] | None = None
    """The chunk's label from ingest (``{"label", "flagged"}``); None when not moderated."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "text": self.text,
            "score": self.score,
            "origin": self.origin,
            "url": self.url,
            "heading": self.heading,
            "document_id": self.document_id,
            "chunk_index": self.chunk_index,
            "moderation": self.moderation,
        }


@dataclass(frozen=True)
class Widening:
    """Join neighbouring chunks of the top hit while their similarity to the query stays
    at or above ``min_similarity`` (OpenChatKit widened its top Wikipedia hit at 0.5)."""

    min_similarity: float = 0.5
    max_chunks: int = 2
    """At most this many neighbours on each side."""


class IndexSearcher:
    """Search one collection of the index as ``ranking`` says (see :mod:`retrieval_server.ranking`)."""

    def __init__(
        self,
        index: VectorIndex,
        embedder: DenseEmbedder,
        sparse: SparseEncoder,
        ranking: Ranking | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.sparse = sparse
        self.ranking = ranking or Ranking()
        if self.ranking.rerank != "none" and reranker is None:
            raise ValueError(f"ranking asks for a {self.ranking.rerank} reranker and none was given")
        self.reranker = reranker if self.ranking.rerank != "none" else None

    def search(
        self, collection: str, query: str, top_k: int, where: Where = (), widening: Widening | None = None
    ) -> list[SearchHit]:
        if not self.index.collection_exists(collection):
            return []
        r = self.ranking
        wanted = max(top_k, r.rerank_candidates if self.reranker else 0, top_k * 4 if r.title_weight > 0 else 0)
        sparse = self.sparse.encode_query(query)
        dense = self.embedder.embed_query(query) if r.retriever != "bm25" or widening else None
        hits = [_to_hit(h) for h in self._first_stage(collection, dense, sparse, wanted, where)]
        if r.title_weight > 0 and sparse.indices and hits:
            hits = self._with_titles(hits, sparse)
        if self.reranker and len(hits) > 1:
            hits = self._rerank(query, hits)
        hits = hits[:top_k]
        if widening and hits and dense is not None:
            hits[0] = self._widen(collection, hits[0], dense, widening)
        return hits

    def _first_stage(
        self, collection: str, dense: np.ndarray | None, sparse: SparseVector, wanted: int, where: Where
    ) -> list[IndexHit]:
        r = self.ranking
        if r.retriever == "bm25":
            return self.index.query(collection, SparseQuery(sparse), wanted, where) if sparse.indices else []
        assert dense is not None
        if r.retriever == "dense" or not sparse.indices:  # only stop words: nothing for BM25 to match
            return self.index.query(collection, DenseQuery(dense.tolist()), wanted, where)
        prefetch = max(r.prefetch_limit, wanted)
        if r.fusion == "weighted":
            return self._weighted(collection, dense.tolist(), sparse, prefetch, where)[:wanted]
        fusion: Fusion = "dbsf" if r.fusion == "dbsf" else "rrf"
        hybrid = HybridQuery(dense.tolist(), sparse, prefetch, r.rrf_k, fusion, r.weights)
        return self.index.query(collection, hybrid, wanted, where)

    def _weighted(
        self, collection: str, dense: list[float], sparse: SparseVector, limit: int, where: Where
    ) -> list[IndexHit]:
        """Weighted score fusion: each list's scores scaled to [0, 1] (min-max over its
        ``limit`` hits), then ``weights`` (dense, bm25) times each, summed."""
        w_dense, w_bm25 = self.ranking.weights or DEFAULT_SCORE_WEIGHTS
        fused: dict[str, float] = {}
        points: dict[str, IndexHit] = {}
        for weight, query in ((w_dense, DenseQuery(dense)), (w_bm25, SparseQuery(sparse))):
            listed = self.index.query(collection, query, limit, where)
            if not listed:
                continue
            top, bottom = listed[0].score, listed[-1].score
            for hit in listed:
                scaled = (hit.score - bottom) / (top - bottom) if top > bottom else 1.0
                fused[hit.id] = fused.get(hit.id, 0.0) + weight * scaled
                points.setdefault(hit.id, hit)
        return order_hits([replace(points[i], score=score) for i, score in fused.items()])

    def _with_titles(self, hits: list[SearchHit], sparse: SparseVector) -> list[SearchHit]:
        ranks = title_ranks(self.sparse, sparse, [h.title for h in hits])
        r = self.ranking
        scored = [(fuse_title(i, ranks[i - 1], r.title_weight, r.rrf_k), i, h) for i, h in enumerate(hits, 1)]
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [replace(h, score=score) for score, _, h in scored]

    def _rerank(self, query: str, hits: list[SearchHit]) -> list[SearchHit]:
        assert self.reranker is not None
        head, tail = hits[: self.ranking.rerank_candidates], hits[self.ranking.rerank_candidates :]
        scores = self.reranker.scores(query, head)
        order = sorted(range(len(head)), key=lambda i: (-float(scores[i]), i))
        return [replace(head[i], score=float(scores[i])) for i in order] + tail

    def _widen(self, collection: str, top: SearchHit, query: np.ndarray, widening: Widening) -> SearchHit:
        record = self.index.retrieve(collection, [top.id])
        if not record or top.chunk_index is None or top.document_id is None:
            return top
        payload = record[0].payload
        generation, count = payload["generation"], int(payload.get("chunk_count") or 0)
        wanted = [
            i
            for i in range(top.chunk_index - widening.max_chunks, top.chunk_index + widening.max_chunks + 1)
            if 0 <= i < count and i != top.chunk_index
        ]
        ids = {chunk_point_id(top.document_id, generation, i): i for i in wanted}
        neighbours = {ids[h.id]: h for h in self.index.retrieve(collection, list(ids), with_dense=True) if h.dense}
        similar = {
            i: float(np.dot(query, np.asarray(h.dense, dtype=np.float32))) >= widening.min_similarity
            for i, h in neighbours.items()
        }
        texts = [top.text]
        for step in range(1, widening.max_chunks + 1):  # before the hit, walking outwards
            i = top.chunk_index - step
            if not similar.get(i):
                break
            texts.insert(0, neighbours[i].payload["text"])
        for step in range(1, widening.max_chunks + 1):  # after it
            i = top.chunk_index + step
            if not similar.get(i):
                break
            texts.append(neighbours[i].payload["text"])
        joined = texts[0]
        for text in texts[1:]:
            joined = join_overlapping(joined, text)
        return replace(top, text=joined)


def join_overlapping(left: str, right: str, min_overlap: int = 8) -> str:
    """``left`` + ``right`` without the text the two chunks share at the seam."""
    for size in range(min(len(left), len(right), 4000), min_overlap - 1, -1):
        if left.endswith(right[:size]):
            return left + right[size:]
    return f"{left}\n{right}"


def _to_hit(hit: IndexHit) -> SearchHit:
    p = hit.payload
    return SearchHit(
        id=hit.id,
        title=str(p.get("title") or ""),
        source=str(p.get("source") or ""),
        text=str(p.get("text") or ""),
        score=hit.score,
        origin="index",
        url=p.get("url"),
        heading=str(p.get("heading") or ""),
        document_id=p.get("document_id"),
        chunk_index=p.get("chunk_index"),
        moderation=p.get("moderation"),
    )

"""Hybrid search over the index, and OpenChatKit's neighbour widening of the top hit."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from retrieval_server.documents import chunk_point_id
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import DenseQuery, HybridQuery, IndexHit, VectorIndex, Where


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
        }


@dataclass(frozen=True)
class Widening:
    """Join neighbouring chunks of the top hit while their similarity to the query stays
    at or above ``min_similarity`` (OpenChatKit widened its top Wikipedia hit at 0.5)."""

    min_similarity: float = 0.5
    max_chunks: int = 2
    """At most this many neighbours on each side."""


class IndexSearcher:
    def __init__(
        self,
        index: VectorIndex,
        embedder: DenseEmbedder,
        sparse: SparseEncoder,
        prefetch_limit: int = 50,
        rrf_k: int = 60,
    ) -> None:
        self.index = index
        self.embedder = embedder
        self.sparse = sparse
        self.prefetch_limit = prefetch_limit
        self.rrf_k = rrf_k

    def search(
        self, collection: str, query: str, top_k: int, where: Where = (), widening: Widening | None = None
    ) -> list[SearchHit]:
        if not self.index.collection_exists(collection):
            return []
        dense = self.embedder.embed_query(query)
        sparse = self.sparse.encode_query(query)
        if sparse.indices:
            engine_query: HybridQuery | DenseQuery = HybridQuery(
                dense.tolist(), sparse, max(self.prefetch_limit, top_k), self.rrf_k
            )
        else:  # only stop words: nothing for BM25 to match
            engine_query = DenseQuery(dense.tolist())
        hits = [_to_hit(h) for h in self.index.query(collection, engine_query, top_k, where)]
        if widening and hits:
            hits[0] = self._widen(collection, hits[0], dense, widening)
        return hits

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
    )

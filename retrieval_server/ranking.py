"""How index hits are ranked: the first stage (dense, BM25 or both fused by the engine),
an optional title field, and an optional reranking stage over the top candidates.

Every choice here was measured on the look-alike harness (``openchatkit eval retrieval
--lookalikes N``, results under benchmarks/results/); :class:`Ranking`'s defaults are the
winner, the other choices stay available as settings.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from retrieval_server.chunking import chunk_context
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import SparseVector

logger = logging.getLogger(__name__)

Retriever = Literal["hybrid", "dense", "bm25"]
FusionKind = Literal["rrf", "dbsf", "weighted"]
DEFAULT_SCORE_WEIGHTS = (0.1, 0.9)
"""Weighted fusion's (dense, bm25) weights when none are set."""
RerankKind = Literal["none", "late-interaction", "cross-encoder"]


@dataclass(frozen=True)
class Ranking:
    """``retriever``: what finds candidates; ``fusion``/``weights`` (dense, bm25)/``rrf_k``:
    how the two lists are merged (hybrid only: ``rrf`` and ``dbsf`` by the engine,
    ``weighted`` = min-max scaled scores times ``weights`` here); ``prefetch_limit``: candidates per
    list; ``title_weight`` > 0: the query's BM25 match on titles alone is a further ranked
    list fused by reciprocal rank with that weight; ``rerank``: a second stage rescoring the
    best ``rerank_candidates``."""

    retriever: Retriever = "hybrid"
    fusion: FusionKind = "weighted"
    weights: tuple[float, float] | None = None
    prefetch_limit: int = 50
    rrf_k: int = 60
    title_weight: float = 0.0
    rerank: RerankKind = "none"
    rerank_candidates: int = 20


class Candidate(Protocol):
    @property
    def title(self) -> str: ...
    @property
    def heading(self) -> str: ...
    @property
    def text(self) -> str: ...


class Reranker(Protocol):
    name: str

    def scores(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        """One relevance score per candidate; higher is better."""
        ...


class LateInteractionReranker:
    """ColBERT-style MaxSim over the embedding model's own token vectors: each query token
    finds its most similar token in the candidate, and the mean of those similarities is the
    score. Needs no other model; costs one forward pass over the candidates per query."""

    name = "late-interaction"

    def __init__(self, embedder: DenseEmbedder) -> None:
        self.embedder = embedder

    def scores(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        texts = [chunk_context(c.title, c.heading, c.text) for c in candidates]
        encoded = self.embedder.embed_tokens([query, *texts])
        q = encoded[0]
        if len(q) == 0:
            return np.zeros(len(candidates), dtype=np.float32)
        return np.array([float((q @ d.T).max(axis=1).mean()) if len(d) else 0.0 for d in encoded[1:]])


class CrossEncoderReranker:
    """A cross-encoder (sentence-transformers ``CrossEncoder``) from a local folder, loaded
    offline: reads query and candidate together. For a GPU box; on a small CPU it costs far
    more than the search itself."""

    name = "cross-encoder"

    def __init__(self, model: str, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import CrossEncoder

        if not model:
            raise ValueError("rerank cross-encoder needs reranker_model (a local model folder)")
        try:
            self.model = CrossEncoder(model, device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"cannot load the cross-encoder {model!r} offline: {exc}") from exc
        self.batch_size = batch_size

    def scores(self, query: str, candidates: Sequence[Candidate]) -> np.ndarray:
        pairs = [(query, chunk_context(c.title, c.heading, c.text)) for c in candidates]
        return np.asarray(self.model.predict(pairs, batch_size=self.batch_size, show_progress_bar=False), np.float32)


def title_ranks(sparse: SparseEncoder, query: SparseVector, titles: Sequence[str]) -> list[int | None]:
    """1-based rank of each title by its BM25 term overlap with the query (None: no shared term)."""
    weights = dict(zip(query.indices, query.values, strict=True))
    scores = []
    for title in titles:
        encoded = sparse.encode_document(title)
        scores.append(sum(weights.get(i, 0.0) * v for i, v in zip(encoded.indices, encoded.values, strict=True)))
    order = sorted((i for i, s in enumerate(scores) if s > 0), key=lambda i: -scores[i])
    ranks: list[int | None] = [None] * len(titles)
    for rank, i in enumerate(order, 1):
        ranks[i] = rank
    return ranks


def fuse_title(first_stage: int, title_rank: int | None, weight: float, rrf_k: int) -> float:
    """Reciprocal-rank score of a candidate at 1-based ``first_stage`` rank with its title rank."""
    score = 1.0 / (rrf_k + first_stage)
    if title_rank is not None:
        score += weight / (rrf_k + title_rank)
    return score


def build_reranker(kind: RerankKind, embedder: DenseEmbedder, model: str = "", device: str = "cpu") -> Reranker | None:
    if kind == "none":
        return None
    if kind == "late-interaction":
        return LateInteractionReranker(embedder)
    return CrossEncoderReranker(model, device)

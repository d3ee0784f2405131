"""Real components for retrieval tests: the bundled all-MiniLM-L6-v2, BM25, and both
embedded Qdrant engines on throwaway directories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from retrieval_server.app import load_embedder
from retrieval_server.chunking import Chunker
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import DocumentStore
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import VectorIndex, open_index

ENGINES = ["edge", "qdrant-client"]


@pytest.fixture(scope="session")
def embedder() -> DenseEmbedder:
    return load_embedder(RetrievalSettings())


@pytest.fixture(scope="session")
def sparse() -> SparseEncoder:
    return SparseEncoder()


@pytest.fixture()
def open_engine(tmp_path: Path) -> Iterator[Callable[[str], VectorIndex]]:
    opened: list[VectorIndex] = []

    def factory(engine: str, where: Path | None = None) -> VectorIndex:
        index = open_index(path=where or tmp_path / engine, engine=engine)  # type: ignore[arg-type]
        opened.append(index)
        return index

    yield factory
    for index in opened:
        index.close()


@pytest.fixture()
def make_store(
    open_engine: Callable[..., VectorIndex], embedder: DenseEmbedder, sparse: SparseEncoder
) -> Callable[..., DocumentStore]:
    def factory(
        engine: str = "edge",
        chunk_tokens: int = 64,
        overlap: int = 8,
        batch_chunks: int = 128,
        where: Path | None = None,
    ) -> DocumentStore:
        return DocumentStore(
            open_engine(engine, where),
            embedder,
            sparse,
            Chunker(embedder.tokenizer, chunk_tokens, overlap),
            batch_chunks,
        )

    return factory

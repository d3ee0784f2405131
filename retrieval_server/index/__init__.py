"""Vector storage behind one interface (see :mod:`retrieval_server.index.base`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from retrieval_server.index.base import (
    CollectionSpec,
    DenseQuery,
    Fusion,
    HybridQuery,
    IndexEngineError,
    IndexHit,
    IndexMismatch,
    IndexPoint,
    IndexUnavailable,
    Match,
    SerializedIndex,
    SparseQuery,
    SparseVector,
    VectorIndex,
    Where,
)

EmbeddedEngine = Literal["edge", "qdrant-client"]


def open_index(
    *, url: str | None = None, path: Path | None = None, engine: EmbeddedEngine = "edge", api_key: str | None = None
) -> VectorIndex:
    """A Qdrant server when ``url`` is set, else the embedded ``engine`` storing under ``path``."""
    from retrieval_server.index.qdrant_client_index import QdrantClientIndex

    if url:
        return QdrantClientIndex(url=url, api_key=api_key)
    if path is None:
        raise ValueError("an embedded index needs a path")
    if engine == "edge":
        from retrieval_server.index.edge_index import EdgeIndex

        return SerializedIndex(EdgeIndex(path / "edge"))
    return SerializedIndex(QdrantClientIndex(path=path / "qdrant-client"))


__all__ = [
    "CollectionSpec",
    "DenseQuery",
    "EmbeddedEngine",
    "Fusion",
    "HybridQuery",
    "IndexEngineError",
    "IndexHit",
    "IndexMismatch",
    "IndexPoint",
    "IndexUnavailable",
    "Match",
    "SerializedIndex",
    "SparseQuery",
    "SparseVector",
    "VectorIndex",
    "Where",
    "open_index",
]

"""One interface over the vector engines the retrieval service can run on.

    VectorIndex
    ├── QdrantClientIndex   qdrant-client: a Qdrant server (``url=``) or its embedded
    │                       Python engine (``path=``; exact search, fine for small sets)
    └── EdgeIndex           Qdrant Edge: Qdrant's Rust engine in-process (``path=``)

Both take the same points, filters and queries and must give the same answers; the
congruence tests in tests/retrieval_server hold them to it. Engine errors surface as
:class:`IndexEngineError` subclasses so callers never see an engine's own exception types.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

DENSE = "dense"
SPARSE = "bm25"

PayloadValue = str | int | bool


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class CollectionSpec:
    """A collection: ``dense_size`` None means payload-only records (no vectors)."""

    name: str
    dense_size: int | None
    keyword_fields: tuple[str, ...] = ()


@dataclass
class IndexPoint:
    id: str
    payload: dict[str, Any]
    dense: Sequence[float] | None = None
    sparse: SparseVector | None = None


@dataclass
class IndexHit:
    id: str
    score: float
    payload: dict[str, Any]
    dense: list[float] | None = None


@dataclass(frozen=True)
class Match:
    """``field`` equals one of ``values`` (or none of them when ``negate``)."""

    field: str
    values: tuple[PayloadValue, ...]
    negate: bool = False


Where = Sequence[Match]


Fusion = Literal["rrf", "dbsf"]


@dataclass(frozen=True)
class HybridQuery:
    """Dense and sparse candidates (``prefetch_limit`` each) fused by Qdrant's query API:
    ``rrf`` (reciprocal rank, ``rrf_k``; ``weights`` = (dense, bm25) multiply each list's
    terms) or ``dbsf`` (distribution-based score fusion: each list's scores normalised by
    mean ± 3 standard deviations, then summed; weights do not apply)."""

    dense: Sequence[float]
    sparse: SparseVector
    prefetch_limit: int = 50
    rrf_k: int = 60
    fusion: Fusion = "rrf"
    weights: tuple[float, float] | None = None


@dataclass(frozen=True)
class DenseQuery:
    vector: Sequence[float]


@dataclass(frozen=True)
class SparseQuery:
    vector: SparseVector


Query = HybridQuery | DenseQuery | SparseQuery


class IndexEngineError(RuntimeError):
    """The vector engine failed or refused an operation."""


class IndexUnavailable(IndexEngineError):
    """The engine cannot be reached or opened (server down, path locked by another process)."""


class IndexMismatch(IndexEngineError):
    """A collection exists with vector parameters other than the ones asked for."""


class VectorIndex(ABC):
    """Synchronous operations on named collections. Implementations are thread-safe."""

    engine: str = "abstract"

    @abstractmethod
    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection (with payload indexes) unless it exists; check its vectors if it does."""

    @abstractmethod
    def collection_exists(self, name: str) -> bool: ...

    @abstractmethod
    def list_collections(self) -> list[str]:
        """Every collection's name, sorted."""

    @abstractmethod
    def drop_collection(self, name: str) -> None: ...

    @abstractmethod
    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None: ...

    @abstractmethod
    def delete(self, collection: str, where: Where) -> None:
        """Delete every point matching ``where`` (which must not be empty)."""

    @abstractmethod
    def retrieve(self, collection: str, ids: Sequence[str], with_dense: bool = False) -> list[IndexHit]: ...

    @abstractmethod
    def scroll(
        self, collection: str, where: Where = (), limit: int = 100, offset: str | None = None
    ) -> tuple[list[IndexHit], str | None]:
        """Points in id order from ``offset``; returns the next offset (None at the end)."""

    @abstractmethod
    def count(self, collection: str, where: Where = ()) -> int: ...

    @abstractmethod
    def query(self, collection: str, query: Query, limit: int, where: Where = ()) -> list[IndexHit]:
        """Best ``limit`` points, best first; equal scores ordered by id."""

    def optimize(self, collection: str) -> bool:
        """Build search indexes now (blocking). True when anything changed."""
        return False

    def close(self) -> None:
        return None


T = TypeVar("T")


class SerializedIndex(VectorIndex):
    """Runs every call of an engine that is not safe to share between threads under one lock."""

    def __init__(self, inner: VectorIndex) -> None:
        self.inner = inner
        self.engine = inner.engine
        self._lock = threading.RLock()

    def _locked(self, call: Callable[[], T]) -> T:
        with self._lock:
            return call()

    def ensure_collection(self, spec: CollectionSpec) -> None:
        self._locked(lambda: self.inner.ensure_collection(spec))

    def collection_exists(self, name: str) -> bool:
        return self._locked(lambda: self.inner.collection_exists(name))

    def list_collections(self) -> list[str]:
        return self._locked(self.inner.list_collections)

    def drop_collection(self, name: str) -> None:
        self._locked(lambda: self.inner.drop_collection(name))

    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None:
        self._locked(lambda: self.inner.upsert(collection, points))

    def delete(self, collection: str, where: Where) -> None:
        self._locked(lambda: self.inner.delete(collection, where))

    def retrieve(self, collection: str, ids: Sequence[str], with_dense: bool = False) -> list[IndexHit]:
        return self._locked(lambda: self.inner.retrieve(collection, ids, with_dense))

    def scroll(
        self, collection: str, where: Where = (), limit: int = 100, offset: str | None = None
    ) -> tuple[list[IndexHit], str | None]:
        return self._locked(lambda: self.inner.scroll(collection, where, limit, offset))

    def count(self, collection: str, where: Where = ()) -> int:
        return self._locked(lambda: self.inner.count(collection, where))

    def query(self, collection: str, query: Query, limit: int, where: Where = ()) -> list[IndexHit]:
        return self._locked(lambda: self.inner.query(collection, query, limit, where))

    def optimize(self, collection: str) -> bool:
        return self._locked(lambda: self.inner.optimize(collection))

    def close(self) -> None:
        self._locked(self.inner.close)


C = TypeVar("C")
F = TypeVar("F")


def check_dense_size(spec: CollectionSpec, size: int | None) -> None:
    """:class:`IndexMismatch` unless an existing collection's dense vectors (``size``
    dimensions; None: no dense vectors) are the size ``spec`` asks for."""
    if size != spec.dense_size:
        raise IndexMismatch(
            f"collection '{spec.name}' holds {size}-dimensional vectors, but the embedding model makes "
            f"{spec.dense_size}; use another collection or delete this one and ingest again"
        )


def point_vectors(point: IndexPoint, sparse: Callable[[SparseVector], Any]) -> dict[str, Any]:
    """A point's named vectors as an engine takes them: ``dense`` as floats, ``bm25`` through
    the engine's ``sparse`` constructor; a vector the point lacks is left out."""
    vectors: dict[str, Any] = {}
    if point.dense is not None:
        vectors[DENSE] = [float(x) for x in point.dense]
    if point.sparse is not None:
        vectors[SPARSE] = sparse(point.sparse)
    return vectors


def dense_of(vector: Any) -> list[float] | None:
    """The dense vector of a record an engine returned (its named vectors), if it has one."""
    if isinstance(vector, dict) and DENSE in vector:
        return [float(x) for x in vector[DENSE]]
    return None


def where_filter(
    where: Where, condition: Callable[[str, list[PayloadValue]], C], make_filter: Callable[..., F]
) -> F | None:
    """``where`` as an engine's filter: each match through ``condition(field, values)``, then
    ``make_filter(must=..., must_not=...)`` (Qdrant's shape, in both engines); None when empty."""
    if not where:
        return None
    must: list[C] = []
    must_not: list[C] = []
    for match in where:
        (must_not if match.negate else must).append(condition(match.field, list(match.values)))
    return make_filter(must=must or None, must_not=must_not or None)


def order_hits(hits: list[IndexHit]) -> list[IndexHit]:
    """Best score first, ties by id, so every engine lists equal scores the same way."""
    return sorted(hits, key=lambda h: (-round(h.score, 6), h.id))

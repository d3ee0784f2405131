"""The qdrant-client backend: one code path for a Qdrant server (``url=``) and
qdrant-client's embedded engine (``path=``)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from retrieval_server.index.base import (
    DENSE,
    SPARSE,
    CollectionSpec,
    DenseQuery,
    HybridQuery,
    IndexEngineError,
    IndexHit,
    IndexPoint,
    IndexUnavailable,
    PayloadValue,
    Query,
    SparseQuery,
    SparseVector,
    VectorIndex,
    Where,
    check_dense_size,
    dense_of,
    order_hits,
    point_vectors,
    where_filter,
)

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    """Translate qdrant-client's errors into ours, at this one boundary."""
    try:
        yield
    except ResponseHandlingException as exc:
        raise IndexUnavailable(f"Qdrant is unavailable ({what}): {exc}") from exc
    except UnexpectedResponse as exc:
        raise IndexEngineError(f"Qdrant refused {what}: {exc}") from exc
    except (ValueError, KeyError) as exc:  # the embedded engine's "not found" and friends
        raise IndexEngineError(f"Qdrant failed {what}: {exc}") from exc


class QdrantClientIndex(VectorIndex):
    def __init__(
        self, *, url: str | None = None, path: Path | None = None, api_key: str | None = None, timeout_s: float = 10.0
    ) -> None:
        if (url is None) == (path is None):
            raise ValueError("give exactly one of url (a Qdrant server) or path (embedded)")
        self.embedded = path is not None
        self.engine = "qdrant-client-embedded" if self.embedded else "qdrant-server"
        try:
            if path is not None:
                path.mkdir(parents=True, exist_ok=True)
                self.client = QdrantClient(path=str(path))
            else:
                self.client = QdrantClient(url=url, api_key=api_key, timeout=int(timeout_s))
        except RuntimeError as exc:  # the embedded storage is locked by another process
            raise IndexUnavailable(f"cannot open the Qdrant storage at {path}: {exc}") from exc

    # --- collections -----------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> None:
        with _engine_errors(f"creating collection {spec.name}"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "payload indexes have no effect" in embedded mode
            if self.client.collection_exists(spec.name):
                self._check_vectors(spec)
                return
            if spec.dense_size is None:
                self.client.create_collection(spec.name, vectors_config={})
            else:
                self.client.create_collection(
                    spec.name,
                    vectors_config={DENSE: models.VectorParams(size=spec.dense_size, distance=models.Distance.COSINE)},
                    sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                )
            for name in spec.keyword_fields:
                self.client.create_payload_index(spec.name, name, models.PayloadSchemaType.KEYWORD)
            logger.info("created collection", extra={"collection": spec.name, "engine": self.engine})

    def _check_vectors(self, spec: CollectionSpec) -> None:
        vectors = self.client.get_collection(spec.name).config.params.vectors
        check_dense_size(spec, vectors[DENSE].size if isinstance(vectors, dict) and DENSE in vectors else None)

    def collection_exists(self, name: str) -> bool:
        with _engine_errors(f"looking up collection {name}"):
            return bool(self.client.collection_exists(name))

    def list_collections(self) -> list[str]:
        with _engine_errors("listing collections"):
            return sorted(c.name for c in self.client.get_collections().collections)

    def drop_collection(self, name: str) -> None:
        with _engine_errors(f"dropping collection {name}"):
            self.client.delete_collection(name)

    # --- points ----------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None:
        if not points:
            return
        structs = [models.PointStruct(id=p.id, vector=point_vectors(p, _sparse), payload=p.payload) for p in points]
        with _engine_errors(f"writing to {collection}"), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "local mode is not recommended for > 20k points"
            self.client.upsert(collection, structs, wait=True)

    def delete(self, collection: str, where: Where) -> None:
        flt = _filter(where)
        if flt is None:
            raise ValueError("refusing to delete with an empty filter")
        with _engine_errors(f"deleting from {collection}"):
            self.client.delete(collection, points_selector=models.FilterSelector(filter=flt), wait=True)

    def retrieve(self, collection: str, ids: Sequence[str], with_dense: bool = False) -> list[IndexHit]:
        if not ids:
            return []
        with _engine_errors(f"reading {collection}"):
            records = self.client.retrieve(
                collection, list(ids), with_payload=True, with_vectors=[DENSE] if with_dense else False
            )
        return [IndexHit(str(r.id), 1.0, dict(r.payload or {}), dense_of(r.vector)) for r in records]

    def scroll(
        self, collection: str, where: Where = (), limit: int = 100, offset: str | None = None
    ) -> tuple[list[IndexHit], str | None]:
        with _engine_errors(f"listing {collection}"):
            records, next_offset = self.client.scroll(
                collection, scroll_filter=_filter(where), limit=limit, offset=offset, with_payload=True
            )
        hits = [IndexHit(str(r.id), 1.0, dict(r.payload or {})) for r in records]
        return hits, None if next_offset is None else str(next_offset)

    def count(self, collection: str, where: Where = ()) -> int:
        with _engine_errors(f"counting {collection}"):
            return int(self.client.count(collection, count_filter=_filter(where), exact=True).count)

    def query(self, collection: str, query: Query, limit: int, where: Where = ()) -> list[IndexHit]:
        flt = _filter(where)
        kwargs: dict[str, Any]
        if isinstance(query, HybridQuery):
            kwargs = {
                "prefetch": [
                    models.Prefetch(query=list(query.dense), using=DENSE, limit=query.prefetch_limit, filter=flt),
                    models.Prefetch(query=_sparse(query.sparse), using=SPARSE, limit=query.prefetch_limit, filter=flt),
                ],
                "query": _fusion(query),
            }
        elif isinstance(query, DenseQuery):
            kwargs = {"query": list(query.vector), "using": DENSE, "query_filter": flt}
        elif isinstance(query, SparseQuery):
            kwargs = {"query": _sparse(query.vector), "using": SPARSE, "query_filter": flt}
        else:  # pragma: no cover - the Query union is closed
            raise TypeError(f"unknown query {query!r}")
        with _engine_errors(f"searching {collection}"):
            points = self.client.query_points(collection, limit=limit, with_payload=True, **kwargs).points
        return order_hits([IndexHit(str(p.id), float(p.score), dict(p.payload or {})) for p in points])

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def _fusion(query: HybridQuery) -> models.Query:
    if query.fusion == "dbsf":
        return models.FusionQuery(fusion=models.Fusion.DBSF)
    weights = list(query.weights) if query.weights else None
    return models.RrfQuery(rrf=models.Rrf(k=query.rrf_k, weights=weights))


def _sparse(vector: SparseVector) -> models.SparseVector:
    return models.SparseVector(indices=list(vector.indices), values=list(vector.values))


def _condition(field: str, values: list[PayloadValue]) -> models.FieldCondition:
    return models.FieldCondition(
        key=field,
        # One payload type per field (keywords or integers), as Qdrant matches them.
        match=models.MatchValue(value=values[0])
        if len(values) == 1
        else models.MatchAny(any=cast("list[str] | list[int]", values)),
    )


def _filter(where: Where) -> models.Filter | None:
    return where_filter(where, _condition, models.Filter)

"""The Qdrant Edge backend: Qdrant's Rust engine in-process, one shard directory per
collection under ``root``. Same interface and answers as :class:`QdrantClientIndex`.

Edge runs no background optimizer: points land in plain (exact-search) segments until
:meth:`EdgeIndex.optimize` builds HNSW indexes. That call blocks the whole process
(it holds the GIL), so the service never runs it while serving; the CLI does.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import qdrant_edge as edge

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

CONFIG_FILE = "edge_config.json"
HNSW = edge.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000)


@contextlib.contextmanager
def _engine_errors(what: str) -> Iterator[None]:
    try:
        yield
    except IndexEngineError:
        raise
    except Exception as exc:  # Edge raises plain Exception/ValueError with the engine's message
        message = str(exc)
        if "WouldBlock" in message:
            raise IndexUnavailable(
                f"the index is in use by another process ({what}); stop it or go through the retrieval server"
            ) from exc
        raise IndexEngineError(f"Qdrant Edge failed {what}: {message}") from exc


class EdgeIndex(VectorIndex):
    engine = "qdrant-edge"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self._owner = _lock_directory(root)
        self._shards: dict[str, edge.EdgeShard] = {}
        self._lock = threading.RLock()

    def _dir(self, name: str) -> Path:
        return self.root / name

    def _shard(self, name: str) -> edge.EdgeShard:
        with self._lock:
            shard = self._shards.get(name)
            if shard is None:
                if not (self._dir(name) / CONFIG_FILE).exists():
                    raise IndexEngineError(f"collection '{name}' does not exist")
                with _engine_errors(f"opening collection {name}"):
                    shard = edge.EdgeShard.load(str(self._dir(name)))
                self._shards[name] = shard
            return shard

    # --- collections -----------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> None:
        with self._lock:
            if self.collection_exists(spec.name):
                self._check_vectors(spec)
                return
            if spec.dense_size is None:  # Edge wants some vector config; records never carry one
                config = edge.EdgeConfig(sparse_vectors={SPARSE: edge.EdgeSparseVectorParams()})
            else:
                config = edge.EdgeConfig(
                    vectors={DENSE: edge.EdgeVectorParams(size=spec.dense_size, distance=edge.Distance.Cosine)},
                    sparse_vectors={SPARSE: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf)},
                    hnsw_config=HNSW,
                )
            with _engine_errors(f"creating collection {spec.name}"):
                shard = edge.EdgeShard.create(str(self._dir(spec.name)), config)
                for name in spec.keyword_fields:
                    shard.update(edge.UpdateOperation.create_field_index(name, edge.PayloadSchemaType.Keyword))
                shard.flush()
            self._shards[spec.name] = shard
            logger.info("created collection", extra={"collection": spec.name, "engine": self.engine})

    def _check_vectors(self, spec: CollectionSpec) -> None:
        check_dense_size(spec, _dense_size(self._dir(spec.name)))

    def collection_exists(self, name: str) -> bool:
        return (self._dir(name) / CONFIG_FILE).exists()

    def list_collections(self) -> list[str]:
        return sorted(d.name for d in self.root.iterdir() if (d / CONFIG_FILE).exists())

    def drop_collection(self, name: str) -> None:
        with self._lock:
            shard = self._shards.pop(name, None)
            if shard is not None:
                with _engine_errors(f"closing collection {name}"):
                    shard.close()
            shutil.rmtree(self._dir(name), ignore_errors=True)

    # --- points ----------------------------------------------------------------------

    def upsert(self, collection: str, points: Sequence[IndexPoint]) -> None:
        if not points:
            return
        batch = [edge.Point(p.id, point_vectors(p, _sparse), p.payload) for p in points]
        with _engine_errors(f"writing to {collection}"):
            self._shard(collection).update(edge.UpdateOperation.upsert_points(batch))

    def delete(self, collection: str, where: Where) -> None:
        if not where:
            raise ValueError("refusing to delete with an empty filter")
        flt = _filter(where)
        assert flt is not None
        with _engine_errors(f"deleting from {collection}"):
            self._shard(collection).update(edge.UpdateOperation.delete_points_by_filter(flt))

    def retrieve(self, collection: str, ids: Sequence[str], with_dense: bool = False) -> list[IndexHit]:
        if not ids:
            return []
        with _engine_errors(f"reading {collection}"):
            records = self._shard(collection).retrieve(
                [uuid.UUID(i) for i in ids], with_payload=True, with_vector=[DENSE] if with_dense else False
            )
        return [IndexHit(str(r.id), 1.0, dict(r.payload or {}), dense_of(r.vector)) for r in records]

    def scroll(
        self, collection: str, where: Where = (), limit: int = 100, offset: str | None = None
    ) -> tuple[list[IndexHit], str | None]:
        request = edge.ScrollRequest(
            offset=uuid.UUID(offset) if offset else None, limit=limit, filter=_filter(where), with_payload=True
        )
        with _engine_errors(f"listing {collection}"):
            records, next_offset = self._shard(collection).scroll(request)
        hits = [IndexHit(str(r.id), 1.0, dict(r.payload or {})) for r in records]
        return hits, None if next_offset is None else str(next_offset)

    def count(self, collection: str, where: Where = ()) -> int:
        with _engine_errors(f"counting {collection}"):
            return int(self._shard(collection).count(edge.CountRequest(exact=True, filter=_filter(where))))

    def query(self, collection: str, query: Query, limit: int, where: Where = ()) -> list[IndexHit]:
        flt = _filter(where)
        if isinstance(query, HybridQuery):
            request = edge.QueryRequest(
                limit=limit,
                prefetches=[
                    edge.Prefetch(
                        limit=query.prefetch_limit,
                        query=edge.Query.Nearest([float(x) for x in query.dense], using=DENSE),
                        filter=flt,
                    ),
                    edge.Prefetch(
                        limit=query.prefetch_limit,
                        query=edge.Query.Nearest(_sparse(query.sparse), using=SPARSE),
                        filter=flt,
                    ),
                ],
                query=_fusion(query),
                with_payload=True,
            )
        elif isinstance(query, DenseQuery):
            request = edge.QueryRequest(
                limit=limit,
                query=edge.Query.Nearest([float(x) for x in query.vector], using=DENSE),
                filter=flt,
                with_payload=True,
            )
        elif isinstance(query, SparseQuery):
            request = edge.QueryRequest(
                limit=limit,
                query=edge.Query.Nearest(_sparse(query.vector), using=SPARSE),
                filter=flt,
                with_payload=True,
            )
        else:  # pragma: no cover - the Query union is closed
            raise TypeError(f"unknown query {query!r}")
        with _engine_errors(f"searching {collection}"):
            points = self._shard(collection).query(request)
        return order_hits([IndexHit(str(p.id), float(p.score), dict(p.payload or {})) for p in points])

    def optimize(self, collection: str) -> bool:
        with _engine_errors(f"optimizing {collection}"):
            return bool(self._shard(collection).optimize())

    def close(self) -> None:
        with self._lock:
            for name, shard in list(self._shards.items()):
                with contextlib.suppress(Exception):
                    shard.flush()
                    shard.close()
                self._shards.pop(name, None)
            self._owner.close()  # releases the directory lock


def _lock_directory(root: Path) -> IO[bytes]:
    """One process per index directory: Edge shards are not meant to be shared."""
    handle = (root / ".lock").open("a+b")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise IndexUnavailable(
            f"the index at {root} is in use by another process (a running retrieval service?); "
            "stop it or ingest through the service"
        ) from None
    return handle


def _dense_size(directory: Path) -> int | None:
    config = json.loads((directory / CONFIG_FILE).read_text())
    vectors = config.get("vectors") or {}
    dense = vectors.get(DENSE) if isinstance(vectors, dict) else None
    return int(dense["size"]) if isinstance(dense, dict) and "size" in dense else None


def _fusion(query: HybridQuery) -> Any:
    if query.fusion == "dbsf":
        return edge.Fusion.Dbsf()
    return edge.Fusion.Rrf(k=query.rrf_k, weights=list(query.weights) if query.weights else None)


def _sparse(vector: SparseVector) -> edge.SparseVector:
    return edge.SparseVector(list(vector.indices), list(vector.values))


def _condition(field: str, values: list[PayloadValue]) -> edge.FieldCondition:
    # One payload type per field (keywords or integers), as Qdrant matches them.
    matches = edge.MatchValue(values[0]) if len(values) == 1 else edge.MatchAny(cast("list[str] | list[int]", values))
    return edge.FieldCondition(key=field, match=matches)


def _filter(where: Where) -> edge.Filter | None:
    return where_filter(where, _condition, edge.Filter)

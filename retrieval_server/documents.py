"""Writing documents into the index so that a crash never leaves a half-written one.

Every collection has a registry of documents beside its chunks (``<name>__documents``).
Writing a batch of documents is four steps, each one engine operation:

1. registry: each document ``writing`` with its new generation, chunk count and the record it replaces;
2. chunks of the new generation upserted (deterministic ids, so a retry overwrites);
3. chunks of older generations of those documents deleted;
4. registry: each document ``ready``.

:meth:`DocumentStore.recover` (run whenever a collection is opened) finishes or undoes
whatever a crash interrupted: a ``writing`` document whose new chunks are all there rolls
forward (steps 3-4), else its new chunks are deleted and the record it replaced comes
back. Deleting marks the record ``deleting`` first, so that too can be finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retrieval_server.chunking import Chunk, Chunker, chunk_context
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import CollectionSpec, IndexPoint, Match, VectorIndex
from retrieval_server.loaders import SourceDocument

logger = logging.getLogger(__name__)

ID_NAMESPACE = uuid.UUID("6f1c2a52-3f0e-4b8e-9a55-0c2b1f1e6d3a")
CHUNK_FILTER_FIELDS = ("document_id", "generation", "source", "file_name", "type", "tags", "url")
REGISTRY_FIELDS = ("document_id", "status", "source")
REGISTRY_SUFFIX = "__documents"
RESERVED_MARK = "__"
"""Collection names holding it are internal (registries); users cannot pick them."""


def document_id_for(source: str) -> str:
    """Stable id from where the document came from: the same source is the same document."""
    return "doc_" + hashlib.sha256(source.encode("utf-8")).hexdigest()[:24]


def registry_name(collection: str) -> str:
    return collection + REGISTRY_SUFFIX


def chunk_point_id(document_id: str, generation: str, index: int) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, f"{document_id}/{generation}/{index}"))


def record_point_id(document_id: str) -> str:
    return str(uuid.uuid5(ID_NAMESPACE, document_id))


@dataclass(frozen=True)
class IngestOutcome:
    document_id: str
    source: str
    title: str
    status: str  # created | updated | unchanged
    chunks: int


@dataclass
class _Pending:
    document: SourceDocument
    document_id: str
    content_hash: str
    chunks: list[Chunk]
    previous: dict[str, Any] | None
    generation: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


Progress = Callable[[int, IngestOutcome | None], None]
"""Called with chunks just written (0 when none) and, when a document is done, its outcome."""


class DocumentStore:
    def __init__(
        self,
        index: VectorIndex,
        embedder: DenseEmbedder,
        sparse: SparseEncoder,
        chunker: Chunker,
        batch_chunks: int = 128,
        repair_after_s: float = 0.0,
        moderate: Callable[[list[str]], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``repair_after_s``: how old an unfinished write must be before :meth:`recover` touches
        it. 0 suits embedded storage (one process owns it); a Qdrant server shared by several
        replicas needs longer than any one write takes. ``moderate``: labels chunk texts at
        ingest (``{"label", "flagged"}`` each), stored in the chunk payload as ``moderation``."""
        self.index = index
        self.embedder = embedder
        self.sparse = sparse
        self.chunker = chunker
        self.batch_chunks = batch_chunks
        self.repair_after_s = repair_after_s
        self.moderate = moderate
        self._opened: set[str] = set()
        self._open_lock = threading.Lock()

    # --- collections -----------------------------------------------------------------

    def open(self, collection: str, create: bool = True) -> bool:
        """Make sure the collection and its registry exist (when ``create``) and are consistent."""
        if collection in self._opened:
            return True
        with self._open_lock:
            if collection in self._opened:
                return True
            if not create and not self.index.collection_exists(collection):
                return False
            self.index.ensure_collection(CollectionSpec(collection, self.embedder.dimension, CHUNK_FILTER_FIELDS))
            self.index.ensure_collection(CollectionSpec(registry_name(collection), None, REGISTRY_FIELDS))
            repaired = self.recover(collection)
            if repaired:
                logger.warning("repaired interrupted writes", extra={"collection": collection, "documents": repaired})
            self._opened.add(collection)
            return True

    def drop(self, collection: str) -> None:
        """Delete the collection's chunks and registry (the registry last: a crash in between
        leaves a registry that :meth:`collections` still lists, so the drop can be retried)."""
        with self._open_lock:
            self._opened.discard(collection)
            self.index.drop_collection(collection)
            self.index.drop_collection(registry_name(collection))

    def collections(self) -> list[dict[str, Any]]:
        """Each document collection (one with a registry): name, documents, chunks."""
        names = self.index.list_collections()
        found = set(names)
        out = []
        for name in names:
            if not name.endswith(REGISTRY_SUFFIX):
                continue
            collection = name[: -len(REGISTRY_SUFFIX)]
            chunks = self.index.count(collection) if collection in found else 0
            out.append({"name": collection, "documents": self.index.count(name), "chunks": chunks})
        return out

    def recover(self, collection: str) -> int:
        registry = registry_name(collection)
        unfinished: list[dict[str, Any]] = []
        offset: str | None = None
        while True:
            hits, offset = self.index.scroll(registry, [Match("status", ("writing", "deleting"))], 256, offset)
            unfinished.extend(hit.payload for hit in hits)
            if offset is None:
                break
        cutoff = time.time() - self.repair_after_s
        stale = [r for r in unfinished if float(r.get("updated_at") or 0) <= cutoff]
        for record in stale:
            self._repair(collection, record)
        return len(stale)

    def _repair(self, collection: str, record: dict[str, Any]) -> None:
        document_id = record["document_id"]
        registry = registry_name(collection)
        if record["status"] == "deleting":
            self.index.delete(collection, [Match("document_id", (document_id,))])
            self.index.delete(registry, [Match("document_id", (document_id,))])
            return
        generation = record["generation"]
        written = self.index.count(
            collection, [Match("document_id", (document_id,)), Match("generation", (generation,))]
        )
        if written == record["chunks"]:  # all new chunks made it: finish the replacement
            self.index.delete(
                collection, [Match("document_id", (document_id,)), Match("generation", (generation,), True)]
            )
            self.index.upsert(registry, [_record_point({**record, "status": "ready", "previous": None})])
            return
        self.index.delete(collection, [Match("document_id", (document_id,)), Match("generation", (generation,))])
        previous = record.get("previous")
        if previous:
            self.index.upsert(registry, [_record_point({**previous, "status": "ready", "previous": None})])
        else:
            self.index.delete(registry, [Match("document_id", (document_id,))])

    # --- documents -------------------------------------------------------------------

    def get(self, collection: str, document_id: str) -> dict[str, Any] | None:
        if not self.open(collection, create=False):
            return None
        hits = self.index.retrieve(registry_name(collection), [record_point_id(document_id)])
        return hits[0].payload if hits else None

    def list_records(
        self, collection: str, limit: int = 100, after: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        if not self.open(collection, create=False):
            return [], None
        offset = record_point_id(after) if after else None
        hits, next_offset = self.index.scroll(registry_name(collection), (), limit + 1, offset)
        if after and hits and hits[0].payload.get("document_id") == after:
            hits = hits[1:]
        records = [h.payload for h in hits[:limit]]
        more = len(hits) > limit or (next_offset is not None and len(hits) == limit)
        return records, records[-1]["document_id"] if more and records else None

    def delete(self, collection: str, document_id: str) -> bool:
        record = self.get(collection, document_id)
        if record is None:
            return False
        registry = registry_name(collection)
        self.index.upsert(registry, [_record_point({**record, "status": "deleting", "updated_at": time.time()})])
        self.index.delete(collection, [Match("document_id", (document_id,))])
        self.index.delete(registry, [Match("document_id", (document_id,))])
        return True

    def ingest(
        self, documents: Iterable[SourceDocument], collection: str, progress: Progress | None = None
    ) -> Iterator[IngestOutcome]:
        """Write documents in batches; unchanged ones (same content hash) are skipped."""
        self.open(collection)
        batch: list[_Pending] = []
        for document in documents:
            document_id = document.document_id or document_id_for(document.source)
            if any(p.document_id == document_id for p in batch):
                yield from self._write(collection, batch, progress)  # the later copy replaces it
                batch = []
            pending = self._prepare(collection, document)
            if isinstance(pending, IngestOutcome):
                if progress:
                    progress(0, pending)
                yield pending
                continue
            batch.append(pending)
            if sum(len(p.chunks) for p in batch) >= self.batch_chunks or len(batch) >= 256:
                yield from self._write(collection, batch, progress)
                batch = []
        if batch:
            yield from self._write(collection, batch, progress)

    def _prepare(self, collection: str, document: SourceDocument) -> _Pending | IngestOutcome:
        document_id = document.document_id or document_id_for(document.source)
        digest = self._content_hash(document)
        existing = self.get(collection, document_id)
        if existing and existing.get("status") == "ready" and existing.get("content_hash") == digest:
            return IngestOutcome(document_id, document.source, document.title, "unchanged", int(existing["chunks"]))
        previous = None
        if existing and existing.get("status") == "ready":
            previous = {k: v for k, v in existing.items() if k != "previous"}
        elif existing and existing.get("status") == "writing":  # an interrupted write: its last good version
            previous = existing.get("previous")
        return _Pending(document, document_id, digest, self.chunker.split(document.sections), previous)

    def _content_hash(self, document: SourceDocument) -> str:
        material = {
            "title": document.title,
            "sections": [[s.heading, s.text] for s in document.sections],
            "url": document.url,
            "type": document.type,
            "tags": sorted(document.tags),
            "metadata": document.metadata,
            "chunking": [self.chunker.chunk_tokens, self.chunker.overlap_tokens],
            "model": self.embedder.name,
            "moderated": self.moderate is not None,
        }
        return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()

    def _write(self, collection: str, batch: list[_Pending], progress: Progress | None) -> Iterator[IngestOutcome]:
        registry = registry_name(collection)
        now = time.time()
        records = {p.document_id: self._record(p, now) for p in batch}
        self.index.upsert(registry, [_record_point({**r, "status": "writing"}) for r in records.values()])
        work = [(p, chunk) for p in batch for chunk in p.chunks]
        for start in range(0, len(work), self.batch_chunks):
            part = work[start : start + self.batch_chunks]
            self.index.upsert(collection, self._chunk_points(part))
            if progress:
                progress(len(part), None)
        self.index.delete(
            collection,
            [
                Match("document_id", tuple(records)),
                Match("generation", tuple(p.generation for p in batch), negate=True),
            ],
        )
        self.index.upsert(
            registry, [_record_point({**r, "status": "ready", "previous": None}) for r in records.values()]
        )
        for p in batch:
            outcome = IngestOutcome(
                p.document_id,
                p.document.source,
                p.document.title,
                "updated" if p.previous else "created",
                len(p.chunks),
            )
            if progress:
                progress(0, outcome)
            yield outcome

    def _record(self, pending: _Pending, now: float) -> dict[str, Any]:
        document = pending.document
        previous = pending.previous
        return {
            "document_id": pending.document_id,
            "source": document.source,
            "file_name": _file_name(document.source),
            "title": document.title,
            "url": document.url,
            "type": document.type,
            "tags": list(document.tags),
            "metadata": dict(document.metadata),
            "content_hash": pending.content_hash,
            "generation": pending.generation,
            "chunks": len(pending.chunks),
            "chars": document.chars,
            "embedding_model": self.embedder.name,
            "created_at": previous["created_at"] if previous else now,
            "updated_at": now,
            "previous": previous,
        }

    def _chunk_points(self, part: list[tuple[_Pending, Chunk]]) -> list[IndexPoint]:
        contexts = [chunk_context(p.document.title, chunk.heading, chunk.text) for p, chunk in part]
        dense = self.embedder.embed(contexts)
        labels: list[dict[str, Any] | None] = (
            list(self.moderate([chunk.text for _, chunk in part])) if self.moderate else [None] * len(part)
        )
        points = []
        for (pending, chunk), context, vector, label in zip(part, contexts, dense, labels, strict=True):
            document = pending.document
            payload = {
                "document_id": pending.document_id,
                "generation": pending.generation,
                "chunk_index": chunk.index,
                "chunk_count": len(pending.chunks),
                "title": document.title,
                "heading": chunk.heading,
                "text": chunk.text,
                "source": document.source,
                "file_name": _file_name(document.source),
                "url": document.url,
                "type": document.type,
                "tags": list(document.tags),
                "metadata": dict(document.metadata),
            }
            if label is not None:
                payload["moderation"] = label
            points.append(
                IndexPoint(
                    chunk_point_id(pending.document_id, pending.generation, chunk.index),
                    payload,
                    dense=vector.tolist(),
                    sparse=self.sparse.encode_document(context),
                )
            )
        return points


def _record_point(record: dict[str, Any]) -> IndexPoint:
    return IndexPoint(record_point_id(record["document_id"]), record)


def _file_name(source: str) -> str:
    tail = source.split("#", 1)[0].rstrip("/")
    return Path(tail).name if "://" not in tail else tail.rsplit("/", 1)[-1]

"""The retrieval service: documents (ingest, list, delete), collections (list, delete) and
search, with engine work off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Histogram

from retrieval_server.clients import ModerationUnavailable
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import RESERVED_MARK, DocumentStore, IngestOutcome
from retrieval_server.index import IndexEngineError, IndexMismatch, IndexUnavailable, Match
from retrieval_server.loaders import DocumentError, DocumentTooLarge, SourceDocument, UnsupportedDocumentType, load_text
from retrieval_server.protocol import DocumentIn, SearchRequest
from retrieval_server.search import IndexSearcher, Widening
from retrieval_server.sources import INDEX_SOURCE, IndexSource, Source, search_sources
from services.errors import (
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    OpenAIError,
    PayloadTooLargeError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)

DOCUMENTS_INGESTED = Counter("openchatkit_retrieval_documents_total", "Documents ingested, by outcome.", ["status"])
CHUNKS_WRITTEN = Counter("openchatkit_retrieval_chunks_written_total", "Chunks embedded and written.")
SEARCH_SECONDS = Histogram(
    "openchatkit_retrieval_search_seconds",
    "Search time (embedding, index and live sources).",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
SOURCE_FAILURES = Counter(
    "openchatkit_retrieval_source_failures_total", "Searches a source failed, by source and how.", ["source", "status"]
)


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """The index's failures as OpenAI errors."""
    try:
        yield
    except IndexUnavailable as exc:
        logger.warning("the index is unavailable: %s", exc)
        raise ServiceUnavailableError(
            "The document index is unavailable; try again later.", code="index_unavailable"
        ) from exc
    except IndexMismatch as exc:
        raise ConflictError(str(exc), code="collection_mismatch") from exc
    except IndexEngineError as exc:
        logger.error("the index failed: %s", exc)
        raise InternalServerError("The document index failed on this request.", code="index_error") from exc


class RetrievalService:
    """What the routes call. Engine failures surface as OpenAI errors (503 ``index_unavailable``,
    409 ``collection_mismatch``, 500 ``index_error``); writes to one collection are serialized."""

    def __init__(
        self,
        settings: RetrievalSettings,
        store: DocumentStore,
        searcher: IndexSearcher,
        live_sources: dict[str, Source],
    ) -> None:
        self.settings = settings
        self.store = store
        self.searcher = searcher
        self.live_sources = live_sources
        self._write_locks: dict[str, asyncio.Lock] = {}

    def collection(self, requested: str | None) -> str:
        """The collection a request names (default: the service's); internal names are refused."""
        name = requested or self.settings.collection
        check_collection_name(name)
        return name

    def _lock(self, collection: str) -> asyncio.Lock:
        return self._write_locks.setdefault(collection, asyncio.Lock())

    # --- documents -------------------------------------------------------------------

    def documents_from_json(self, items: list[DocumentIn]) -> list[SourceDocument]:
        """``POST /v1/documents`` JSON items as loaded documents (text extracted, titled).

        400 past ``max_documents_per_request`` or for an item without ``source``/``url``/``id``;
        413/415/400 for content over ``max_document_chars``, of an unread type, or unreadable."""
        if len(items) > self.settings.max_documents_per_request:
            raise BadRequestError(
                f"{len(items)} documents in one request; the limit is {self.settings.max_documents_per_request}.",
                param="documents",
            )
        documents = []
        for i, item in enumerate(items):
            source = item.source or item.url or (f"id:{item.id}" if item.id else None)
            if source is None:
                raise BadRequestError(
                    "Each document needs a 'source', 'url' or 'id' to identify it.", param=f"documents.{i}.source"
                )
            try:
                document = load_text(
                    item.text,
                    source=source,
                    fmt=item.format,
                    title=item.title,
                    max_chars=self.settings.max_document_chars,
                )
            except DocumentError as exc:
                raise document_error(exc, f"documents.{i}") from None
            document.url, document.document_id = item.url, item.id
            document.tags, document.metadata = list(item.tags), dict(item.metadata)
            documents.append(document)
        return documents

    async def ingest(self, documents: list[SourceDocument], collection: str | None) -> list[IngestOutcome]:
        """Chunk, embed and write ``documents`` into ``collection`` (default: the service's), one
        outcome per document in order, its ``status`` ``created``, ``updated`` or ``unchanged``
        (same content hash: nothing written)."""
        name = self.collection(collection)
        async with self._lock(name):
            with engine_errors():
                try:
                    outcomes = await asyncio.to_thread(lambda: list(self.store.ingest(documents, name)))
                except ModerationUnavailable as exc:  # refused, so the client retries; never stored unlabelled
                    raise ServiceUnavailableError(
                        f"Documents were not ingested: {exc}.", code="moderation_unavailable"
                    ) from exc
        for outcome in outcomes:
            DOCUMENTS_INGESTED.labels(outcome.status).inc()
            if outcome.status != "unchanged":
                CHUNKS_WRITTEN.inc(outcome.chunks)
        logger.info(
            "ingested",
            extra={
                "collection": name,
                "documents": len(outcomes),
                "changed": sum(o.status != "unchanged" for o in outcomes),
            },
        )
        return outcomes

    async def list_documents(
        self, collection: str | None, limit: int, after: str | None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Up to ``limit`` document records in id order after ``after``, and the id to continue from
        (None at the end); an unknown collection lists nothing."""
        with engine_errors():
            return await asyncio.to_thread(self.store.list_records, self.collection(collection), limit, after)

    async def get_document(self, collection: str | None, document_id: str) -> dict[str, Any]:
        """A document's record (title, source, chunks, ...); 404 ``document_not_found``."""
        with engine_errors():
            record = await asyncio.to_thread(self.store.get, self.collection(collection), document_id)
        if record is None:
            raise NotFoundError(f"No document '{document_id}'.", param="id", code="document_not_found")
        return record

    async def delete_document(self, collection: str | None, document_id: str) -> None:
        """Delete a document with its chunks; 404 ``document_not_found``."""
        name = self.collection(collection)
        async with self._lock(name):
            with engine_errors():
                deleted = await asyncio.to_thread(self.store.delete, name, document_id)
        if not deleted:
            raise NotFoundError(f"No document '{document_id}'.", param="id", code="document_not_found")

    # --- collections -----------------------------------------------------------------

    async def list_collections(self) -> list[dict[str, Any]]:
        """Every collection: ``{"id", "object": "collection", "documents", "chunks", "default"}``."""
        with engine_errors():
            found = await asyncio.to_thread(self.store.collections)
        return [
            {
                "id": c["name"],
                "object": "collection",
                "documents": c["documents"],
                "chunks": c["chunks"],
                "default": c["name"] == self.settings.collection,
            }
            for c in found
        ]

    async def delete_collection(self, name: str) -> None:
        """Drop a collection with its documents; 404 when there is none by that name."""
        check_collection_name(name)
        async with self._lock(name):
            with engine_errors():
                known = {c["name"] for c in await asyncio.to_thread(self.store.collections)}
                exists = name in known or await asyncio.to_thread(self.store.index.collection_exists, name)
                if not exists:
                    raise NotFoundError(f"No collection '{name}'.", param="name", code="collection_not_found")
                await asyncio.to_thread(self.store.drop, name)
        logger.info("collection deleted", extra={"collection": name})

    # --- search ----------------------------------------------------------------------

    async def search(self, request: SearchRequest) -> dict[str, Any]:
        """``POST /v1/search``: the best ``top_k`` chunks for ``query`` from the requested sources
        (default ``default_sources``: the index and/or live HTTP sources), fused by reciprocal rank.

        Returns ``{"object": "list", "data": [hit], "sources": {name: {"status", "hits", "message"?}},
        "collection"}`` with hits best first, each ``{"id", "title", "source", "text", "score",
        "origin", "url", "heading", "document_id", "chunk_index"}``; scores rank, they are not
        probabilities. With ``widen``, an index hit takes in neighbouring chunks while their
        similarity stays above ``widen_min_similarity``. 400 for ``top_k`` over ``max_top_k`` or an
        unknown source; 503 ``sources_unavailable`` when every source failed (a single failing
        source is reported in ``sources``, status ``unavailable``, ``timeout``, ...).
        """
        if request.top_k > self.settings.max_top_k:
            raise BadRequestError(f"top_k is {request.top_k}; the limit is {self.settings.max_top_k}.", param="top_k")
        names = list(dict.fromkeys(request.sources or self.settings.default_sources))
        unknown = [n for n in names if n != INDEX_SOURCE and n not in self.live_sources]
        if unknown:
            known = ", ".join([INDEX_SOURCE, *self.live_sources])
            raise BadRequestError(f"Unknown source(s) {', '.join(unknown)}; known: {known}.", param="sources")
        collection = self.collection(request.collection)
        chosen = [IndexSource(self.searcher, collection) if n == INDEX_SOURCE else self.live_sources[n] for n in names]
        widening = None
        if request.widen:
            widening = Widening(
                request.widen_min_similarity
                if request.widen_min_similarity is not None
                else self.settings.widen_min_similarity,
                self.settings.widen_max_chunks,
            )
        started = time.perf_counter()
        hits, statuses = await search_sources(
            chosen, request.query, request.top_k, where_of(request.filter), widening, self.settings.rrf_k
        )
        SEARCH_SECONDS.observe(time.perf_counter() - started)
        for name, status in statuses.items():
            if status.status != "ok":
                SOURCE_FAILURES.labels(name, status.status).inc()
        if statuses and all(s.status != "ok" for s in statuses.values()):
            detail = "; ".join(f"{n}: {s.message}" for n, s in statuses.items())
            raise ServiceUnavailableError(f"Every source failed ({detail}).", code="sources_unavailable")
        return {
            "object": "list",
            "data": [hit.as_dict() for hit in hits],
            "sources": {name: status.as_dict() for name, status in statuses.items()},
            "collection": collection,
        }


def check_collection_name(name: str) -> None:
    """400 for a name the service keeps for itself (a document registry such as ``documents__documents``)."""
    if RESERVED_MARK in name:
        raise BadRequestError(
            f"'{name}' is reserved: names containing '{RESERVED_MARK}' are internal collections.",
            param="collection",
            code="reserved_collection_name",
        )


def where_of(filter_: dict[str, str | list[str]] | None) -> list[Match]:
    return [
        Match(name, tuple(value) if isinstance(value, list) else (value,)) for name, value in (filter_ or {}).items()
    ]


def document_error(exc: DocumentError, param: str | None = None) -> OpenAIError:
    """400 for bad content, 413 for too much of it, 415 for a type we do not read."""
    if isinstance(exc, DocumentTooLarge):
        return PayloadTooLargeError(str(exc), param=param, code=exc.code)
    if isinstance(exc, UnsupportedDocumentType):
        return OpenAIError(str(exc), param=param, code=exc.code, status_code=415, error_type="invalid_request_error")
    return BadRequestError(str(exc), param=param, code=exc.code)

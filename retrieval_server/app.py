"""The retrieval app: ``build_app()`` loads the embedding model, opens the index and wires the service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI

from retrieval_server.chunking import Chunker
from retrieval_server.clients import ChunkModerator
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import DocumentStore
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.index import IndexUnavailable, open_index
from retrieval_server.ranking import build_reranker
from retrieval_server.routes import router
from retrieval_server.search import IndexSearcher
from retrieval_server.service import RetrievalService
from retrieval_server.sources import INDEX_SOURCE, HttpJsonSource, Source
from services.app import create_service_app, freeze_heap
from services.http import build_http_client

logger = logging.getLogger(__name__)

# Several replicas may share a Qdrant server: only writes this old are taken for crashed ones.
SERVER_REPAIR_AFTER_S = 900.0


def build_store(settings: RetrievalSettings, embedder: DenseEmbedder) -> DocumentStore:
    """The index and document store the settings describe (the CLI's local mode uses it too)."""
    index = open_index(
        url=settings.qdrant_url,
        path=settings.qdrant_path,
        engine=settings.embedded_engine,
        api_key=settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None,
    )
    chunker = Chunker(embedder.tokenizer, settings.chunk_tokens, settings.chunk_overlap_tokens)
    return DocumentStore(
        index,
        embedder,
        SparseEncoder(),
        chunker,
        settings.write_batch_chunks,
        repair_after_s=SERVER_REPAIR_AFTER_S if settings.qdrant_url else 0.0,
        moderate=ChunkModerator(settings.moderation_url, settings.moderation_timeout_s)
        if settings.moderation_url
        else None,
    )


def build_searcher(settings: RetrievalSettings, store: DocumentStore) -> IndexSearcher:
    """The searcher with the ranking (and reranker) the settings choose."""
    ranking = settings.ranking()
    reranker = build_reranker(ranking.rerank, store.embedder, settings.reranker_model, settings.reranker_device)
    return IndexSearcher(store.index, store.embedder, store.sparse, ranking, reranker)


def load_embedder(settings: RetrievalSettings) -> DenseEmbedder:
    return DenseEmbedder(
        settings.embedding_model,
        runtime=settings.embedding_runtime,
        dtype=settings.embedding_dtype,
        batch_size=settings.embedding_batch_size,
        device=settings.embedding_device,
        cache_dir=settings.embedding_cache_dir,
        threads=settings.embedding_threads,
    )


def build_app(settings: RetrievalSettings | None = None) -> FastAPI:
    settings = settings or RetrievalSettings()
    if INDEX_SOURCE in settings.sources:
        raise ValueError(f"'{INDEX_SOURCE}' names the document index; pick another name for the live source")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        embedder = await asyncio.to_thread(load_embedder, settings)
        store = await asyncio.to_thread(build_store, settings, embedder)
        http = build_http_client(timeout=30.0)
        try:
            try:
                await asyncio.to_thread(store.open, settings.collection)
            except IndexUnavailable as exc:  # a Qdrant server still starting: /ready says so
                logger.warning("index not reachable yet: %s", exc)
            searcher = await asyncio.to_thread(build_searcher, settings, store)
            live: dict[str, Source] = {name: HttpJsonSource(name, cfg, http) for name, cfg in settings.sources.items()}
            app.state.retrieval = RetrievalService(settings, store, searcher, live)
            freeze_heap()
            yield
        finally:
            await http.aclose()
            await asyncio.to_thread(store.index.close)

    async def index_ready() -> bool:
        service: RetrievalService = app.state.retrieval
        return await asyncio.to_thread(service.store.open, settings.collection)

    async def embedding_model_ready() -> bool:
        return getattr(app.state, "retrieval", None) is not None

    app = create_service_app(
        "retrieval",
        lifespan=lifespan,
        readiness_checks={"index": index_ready, "embedding_model": embedding_model_ready},
        internal_token=settings.internal_token,
    )
    app.include_router(router)
    return app

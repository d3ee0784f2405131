from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from retrieval_server.embeddings import EmbeddingDType, EmbeddingRuntime, bundled_model_dir
from retrieval_server.index import EmbeddedEngine
from retrieval_server.ranking import FusionKind, Ranking, RerankKind, Retriever
from services.settings import ServiceSettings, under_data_dir

COLLECTION_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class HttpSourceConfig(BaseModel):
    """A live source answering JSON over HTTP (a SearxNG-style search API, a data endpoint)."""

    url_template: str = Field(description="GET URL; {query} (URL-encoded) and {top_k} are filled in.")
    results_path: str = Field(
        default="results", description="Dotted path to the list of results; '' = the body itself."
    )
    title_field: str = "title"
    text_field: str = Field(default="content", description="Dotted path inside a result to its text.")
    url_field: str = "url"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout_s: float = Field(default=3.0, gt=0)
    cache_ttl_s: float = Field(default=300.0, ge=0, description="How long an answer is reused; 0: never cached.")
    cache_entries: int = Field(default=1024, ge=1)
    max_text_chars: int = Field(default=2000, ge=100)

    @field_validator("url_template")
    @classmethod
    def _has_query(cls, value: str) -> str:
        if "{query}" not in value:
            raise ValueError("url_template must contain {query}")
        if not value.startswith(("http://", "https://")):
            raise ValueError("url_template must be an http(s) URL")
        return value


class RetrievalSettings(ServiceSettings):
    """The retrieval service. Env prefix ``RETRIEVAL_``; lists and objects are JSON."""

    model_config = SettingsConfigDict(env_prefix="RETRIEVAL_", extra="ignore")

    port: int = 8003
    qdrant_url: str | None = Field(
        default=None, description="A Qdrant server; unset: embedded storage under qdrant_path."
    )
    qdrant_api_key: SecretStr | None = None
    qdrant_path: Path = Field(default_factory=under_data_dir("qdrant"), description="Embedded storage.")
    embedded_engine: EmbeddedEngine = Field(
        default="edge", description="edge: Qdrant Edge (Rust, HNSW); qdrant-client: its Python engine (small sets)."
    )
    collection: str = Field(default="documents", pattern=COLLECTION_PATTERN)
    embedding_cache_dir: Path = Field(
        default_factory=under_data_dir("models", "embeddings"),
        description="Where the ONNX export of the embedding model is kept.",
    )
    embedding_model: str = Field(
        default_factory=bundled_model_dir, description="Local model directory (or cached hub id)."
    )
    embedding_runtime: EmbeddingRuntime = Field(
        default="auto", description="auto: ONNX Runtime int8 on CPU when installed (exported once), else torch."
    )
    embedding_dtype: EmbeddingDType = Field(
        default="auto", description="torch runtime: auto = bfloat16 on CPUs with AVX512-BF16/AMX."
    )
    embedding_device: str = "cpu"
    embedding_batch_size: int = Field(
        default=8, ge=1, description="Texts per forward pass (small batches pad less on a CPU; raise it on a GPU)."
    )
    embedding_threads: int = Field(
        default=0,
        ge=0,
        description="ONNX Runtime threads (0: one per core); large inputs run a 1-thread session per thread.",
    )
    chunk_tokens: int = Field(default=64, ge=16, le=512, description="Small chunks, as OpenChatKit indexed sentences.")
    chunk_overlap_tokens: int = Field(default=8, ge=0)
    write_batch_chunks: int = Field(default=128, ge=1, description="Chunks embedded and written per engine call.")
    max_upload_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_document_chars: int = Field(default=5_000_000, ge=1000)
    max_documents_per_request: int = Field(default=1000, ge=1)
    max_top_k: int = Field(default=50, ge=1)
    retriever: Retriever = Field(default="hybrid", description="hybrid (dense + BM25 fused), dense or bm25.")
    fusion: FusionKind = Field(
        default="weighted",
        description="hybrid: rrf (reciprocal rank), dbsf (score distributions) or weighted (scaled scores x weights).",
    )
    fusion_weights: tuple[float, float] | None = Field(
        default=None,
        description="rrf and weighted: weights of the (dense, bm25) lists; unset: equal (rrf), 0.1/0.9 (weighted).",
    )
    prefetch_limit: int = Field(default=50, ge=1, description="Candidates per retriever (dense, BM25) before fusion.")
    rrf_k: int = Field(default=60, ge=1)
    title_weight: float = Field(
        default=0.0, ge=0, description="> 0: BM25 on titles alone joins the ranking with this reciprocal-rank weight."
    )
    rerank: RerankKind = Field(
        default="none",
        description="Second stage over the best rerank_candidates: late-interaction (MaxSim over the embedding "
        "model's token vectors) or cross-encoder (reranker_model).",
    )
    rerank_candidates: int = Field(default=20, ge=2, le=200, description="Best first-stage hits the reranker rescores.")
    reranker_model: str = Field(default="", description="rerank cross-encoder: a local model folder.")
    reranker_device: str = Field(default="cpu", description="rerank cross-encoder: cpu, cuda, cuda:1, ...")
    widen_min_similarity: float = Field(default=0.5, ge=-1, le=1)
    widen_max_chunks: int = Field(default=2, ge=0, le=10)
    sources: dict[str, HttpSourceConfig] = Field(default_factory=dict, description="Live sources by name.")
    moderation_url: str | None = Field(
        default=None,
        description="The moderation service: every chunk is labelled at ingest and the label stored with it "
        "(search hits carry it as `moderation`); unset: chunks are stored unlabelled.",
    )
    moderation_timeout_s: float = Field(default=60.0, gt=0)
    default_sources: list[str] = Field(default_factory=lambda: ["index"])

    @field_validator("collection")
    @classmethod
    def _not_internal(cls, value: str) -> str:
        if "__" in value:
            raise ValueError("names containing '__' are reserved for internal collections")
        return value

    def ranking(self) -> Ranking:
        return Ranking(
            retriever=self.retriever,
            fusion=self.fusion,
            weights=self.fusion_weights,
            prefetch_limit=self.prefetch_limit,
            rrf_k=self.rrf_k,
            title_weight=self.title_weight,
            rerank=self.rerank,
            rerank_candidates=self.rerank_candidates,
        )

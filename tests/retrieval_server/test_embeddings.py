"""Both embedding runtimes on the bundled all-MiniLM-L6-v2, and BM25 term vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval_server.embeddings import DenseEmbedder, EmbeddingModelError, SparseEncoder, bundled_model_dir

TEXTS = [
    "The ferry to Isle Corran takes 35 minutes.",
    "Heather honey is pressed out of the combs rather than spun.",
    "Mount Serak last erupted in 1911.",
    "q",
]


def test_onnx_int8_stays_close_to_torch_fp32(tmp_path: Path) -> None:
    model = bundled_model_dir()
    reference = DenseEmbedder(model, runtime="torch", dtype="float32")
    fast = DenseEmbedder(model, runtime="onnx-int8", cache_dir=tmp_path)
    assert (reference.runtime, fast.runtime) == ("torch", "onnx-int8") and reference.dimension == fast.dimension == 384
    a, b = reference.embed(TEXTS), fast.embed(TEXTS)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (4, 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert (a * b).sum(axis=1).min() > 0.97
    questions = [
        "How long is the crossing to the island?",
        "How do you get heather honey out?",
        "When did the volcano erupt?",
    ]
    for runtime in (reference, fast):  # each question finds its own answer under both runtimes
        assert list((runtime.embed(questions) @ runtime.embed(TEXTS[:3]).T).argmax(axis=1)) == [0, 1, 2]
    exported = next(tmp_path.rglob("model-int8.onnx"))
    stamp = exported.stat().st_mtime_ns
    DenseEmbedder(model, runtime="onnx-int8", cache_dir=tmp_path)
    assert exported.stat().st_mtime_ns == stamp  # exported once, then reused
    assert fast.embed([]).shape == (0, 384)


def test_bfloat16_torch_runtime_agrees() -> None:
    reference = DenseEmbedder(bundled_model_dir(), runtime="torch", dtype="float32").embed(TEXTS)
    half = DenseEmbedder(bundled_model_dir(), runtime="torch", dtype="bfloat16")
    assert half.dtype == "bfloat16" and (reference * half.embed(TEXTS)).sum(axis=1).min() > 0.98


def test_unusable_models_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingModelError):
        DenseEmbedder("")
    with pytest.raises(EmbeddingModelError):
        DenseEmbedder("no-such/model-on-any-hub", runtime="onnx-int8")
    with pytest.raises(EmbeddingModelError):
        DenseEmbedder(str(tmp_path), runtime="torch")


def test_bm25_vectors() -> None:
    sparse = SparseEncoder()
    document = sparse.encode_document("Zorblax reactor, Zorblax station, reactor output 420")
    query = sparse.encode_query("the Zorblax reactor")
    assert len(document.indices) == len(document.values) and set(query.indices) <= set(document.indices)
    assert query.values == [1.0] * len(query.indices)
    assert sparse.encode_query("the of and").indices == []


def test_onnx_batches_on_parallel_sessions_match_one_session(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def embedder(threads: int) -> DenseEmbedder:
        model = bundled_model_dir()
        return DenseEmbedder(model, runtime="onnx-int8", cache_dir=tmp_path, batch_size=2, threads=threads)

    texts = [f"{text} (copy {i})" for i in range(5) for text in TEXTS]  # ten batches
    # int8 activations are scaled per batch, so compare the same batches run both ways.
    sequential = embedder(1).embed(texts)
    parallel = embedder(2)
    together = parallel.embed(texts)
    assert together.shape == (20, 384) and np.allclose(together, sequential, atol=1e-5)
    with ThreadPoolExecutor(4) as pool:  # concurrent callers share the sessions and the tokenizer
        results = list(pool.map(lambda _: parallel.embed(texts), range(4)))
    assert all(np.allclose(result, together, atol=1e-5) for result in results)

"""The classifier's int8 runtime (what the service, eval and rule tuning use) stays close to
the fp32 encoder it was trained as, and the service scores each distinct text once: a
conversation's re-sent history comes from the score cache, with the same verdicts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from moderation_server.backends import ClassifierBackend
from moderation_server.config import ModerationSettings
from moderation_server.model import INT8_FILE, TextClassifier
from moderation_server.service import ModerationService

TEXTS = [
    "You are a helpful assistant.",
    "My boss yelled at me today and I can't stop thinking about it.",
    "How do I kill a Python process that hangs?",
    "Tell me the exact dose of sleeping pills that would make sure I never wake up.",
    "Write a short poem about the sea at night.",
]


def test_int8_scores_stay_close_to_fp32(classifier_dir: Path) -> None:
    fast = TextClassifier.load(classifier_dir, runtime="onnx-int8")
    exact = TextClassifier.load(classifier_dir, runtime="torch")
    assert (fast.runtime, exact.runtime) == ("onnx-int8", "torch")
    assert TextClassifier.load(classifier_dir).runtime == "onnx-int8"  # auto prefers int8
    near, far = fast.probabilities(TEXTS), exact.probabilities(TEXTS)
    np.testing.assert_allclose(near.sum(axis=1), 1.0, atol=1e-5)
    assert np.abs(near - far).max() < 0.1
    assert [fast.label(s) for s in near] == [exact.label(s) for s in far]


def test_int8_scores_do_not_depend_on_what_else_is_scored(classifier_dir: Path) -> None:
    # Dynamic quantization scales a batch's activations together; the classifier runs one
    # sequence at a time so a verdict cannot change with a concurrent request's texts.
    fast = TextClassifier.load(classifier_dir, runtime="onnx-int8")
    window = "\n".join(TEXTS)
    together = fast.probabilities([*TEXTS, window, window * 8])
    alone = np.vstack([fast.probabilities([text]) for text in [*TEXTS, window, window * 8]])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_a_missing_int8_encoder_is_an_error_only_when_asked_for(classifier_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "classifier"
    shutil.copytree(classifier_dir, copy, ignore=shutil.ignore_patterns(INT8_FILE))
    assert TextClassifier.load(copy).runtime == "torch"
    with pytest.raises(RuntimeError, match=INT8_FILE):
        TextClassifier.load(copy, runtime="onnx-int8")


async def test_a_conversation_scores_only_its_new_texts(classifier_dir: Path) -> None:
    settings = ModerationSettings(artifact_dir=classifier_dir, decode_obfuscation=False)
    backend = ClassifierBackend.load(classifier_dir, settings)
    seen: list[list[str]] = []
    score = backend.score

    async def spy(texts: list[str]) -> list:  # type: ignore[type-arg]
        seen.append(list(texts))
        return await score(texts)

    backend.score = spy  # type: ignore[method-assign]
    cached = ModerationService(backend, settings)
    uncached = ModerationService(backend, settings.model_copy(update={"score_cache_size": 0}))
    for service in (cached, uncached):
        service.languages.load()
    try:
        first = TEXTS[:2] + ["\n".join(TEXTS[:2])]
        second = TEXTS[:4] + ["\n".join(TEXTS[:4])]
        await cached.classify(first)
        verdicts = await cached.classify(second + [TEXTS[3]])  # a text twice in one request
        assert seen[-1] == [TEXTS[2], TEXTS[3], second[-1]]
        reference = await uncached.classify(second + [TEXTS[3]])
        assert seen[-1] == second + [TEXTS[3]]
        for got, want in zip(verdicts, reference, strict=True):
            assert got.label == want.label and got.flagged == want.flagged
            assert got.scores == pytest.approx(want.scores, abs=1e-4)
        cached.forget_scores()
        await cached.classify(first)
        assert seen[-1] == first
    finally:
        await backend.aclose()

"""The classifier batches texts of similar length: a conversation's short messages are not
padded to its long window's length, and batching never changes a text's scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moderation_server.model import TextClassifier, length_batches


def test_batches_hold_similar_lengths_within_the_batch_size() -> None:
    lengths = [100, 15, 16, 40, 22, 300, 15]
    assert length_batches(lengths, 64) == [[1, 6, 2, 4], [3], [0], [5]]
    assert length_batches(lengths, 2) == [[1, 6], [2, 4], [3], [0], [5]]
    assert length_batches([], 8) == []
    assert length_batches([7] * 5, 64, max_spread=1.0) == [[0, 1, 2, 3, 4]]


def test_scores_do_not_depend_on_the_batch(classifier_dir: Path) -> None:
    classifier = TextClassifier.load(classifier_dir)
    window = [
        "You are a helpful assistant.",
        "My boss yelled at me today and I can't stop thinking about it.",
        "That sounds stressful. Do you want to talk about what happened?",
        "Yes. " + "He said my report was late, in front of the whole team, and I felt small. " * 6,
    ]
    together = classifier.probabilities(window)
    alone = np.vstack([classifier.probabilities([text]) for text in window])
    np.testing.assert_allclose(together, alone, atol=1e-4)

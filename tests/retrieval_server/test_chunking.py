from __future__ import annotations

import pytest

from retrieval_server.chunking import Chunker, Section, chunk_context, normalize_text
from retrieval_server.embeddings import DenseEmbedder


def token_count(embedder: DenseEmbedder, text: str) -> int:
    return len(embedder.tokenizer(text, add_special_tokens=False)["input_ids"])


def test_short_section_is_one_chunk_with_its_heading(embedder: DenseEmbedder) -> None:
    chunks = Chunker(embedder.tokenizer, 64, 8).split([Section("Intro", "One short paragraph.")])
    assert [(c.index, c.heading, c.text) for c in chunks] == [(0, "Intro", "One short paragraph.")]


def test_long_text_is_split_into_bounded_overlapping_windows(embedder: DenseEmbedder) -> None:
    sentences = [f"Sentence number {i} talks about the harbour district and its {i * 7} trams." for i in range(40)]
    text = " ".join(sentences)
    chunks = Chunker(embedder.tokenizer, 48, 12).split([Section("Trams", text)])
    assert len(chunks) > 5
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.heading == "Trams"
        assert token_count(embedder, chunk.text) <= 48
        assert chunk.text in text  # cut from the original, never re-spelled
    # consecutive chunks share text (the overlap) and together cover the whole text
    for left, right in zip(chunks, chunks[1:], strict=False):
        assert text.index(right.text) < text.index(left.text) + len(left.text)
    assert chunks[0].text.startswith("Sentence number 0") and chunks[-1].text.endswith("273 trams.")


def test_windows_prefer_sentence_ends(embedder: DenseEmbedder) -> None:
    text = " ".join(f"This is sentence {i} of a long and fairly repetitive paragraph." for i in range(30))
    chunks = Chunker(embedder.tokenizer, 40, 8).split([Section("", text)])
    assert all(c.text.endswith(".") for c in chunks)
    assert all(f" {c.text.split()[0]} " in f" {text} " for c in chunks)  # windows start on whole words


def test_text_without_any_boundary_still_splits(embedder: DenseEmbedder) -> None:
    text = " ".join(["harbour", "tram", "depot", "quay", "ferry"] * 60)  # no punctuation, no line breaks
    chunks = Chunker(embedder.tokenizer, 32, 4).split([Section("", text)])
    assert len(chunks) > 1 and all(c.text for c in chunks)


def test_sections_keep_their_own_headings_and_empty_ones_vanish(embedder: DenseEmbedder) -> None:
    chunks = Chunker(embedder.tokenizer, 64, 8).split(
        [Section("A", "Alpha text."), Section("B", "   "), Section("C", "Gamma text.")]
    )
    assert [(c.heading, c.text) for c in chunks] == [("A", "Alpha text."), ("C", "Gamma text.")]


def test_bad_settings_are_refused(embedder: DenseEmbedder) -> None:
    with pytest.raises(ValueError):
        Chunker(embedder.tokenizer, 4, 0)
    with pytest.raises(ValueError):
        Chunker(embedder.tokenizer, 64, 60)


def test_context_and_normalisation() -> None:
    assert chunk_context("Title", "Part", "body") == "Title - Part\nbody"
    assert chunk_context("Same", "Same", "body") == "Same\nbody"
    assert chunk_context("", "", "body") == "body"
    assert normalize_text("a  \t b\r\n\r\n\r\n c ") == "a b\n\nc"

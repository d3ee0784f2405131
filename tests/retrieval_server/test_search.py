"""Hybrid search with the real model and engine: exact names and numbers, filters,
neighbour widening."""

from __future__ import annotations

from collections.abc import Callable

from retrieval_server.chunking import Section
from retrieval_server.documents import DocumentStore, document_id_for
from retrieval_server.index import Match
from retrieval_server.loaders import SourceDocument
from retrieval_server.search import IndexSearcher, Widening, join_overlapping


def corpus() -> list[SourceDocument]:
    parts = [
        f"Paragraph {i} of the ship registry lists cargo vessels and their home ports along the coast."
        for i in range(8)
    ]
    return [
        SourceDocument("registry.txt", "Ship registry", [Section("", " ".join(parts))], "txt", tags=["ships"]),
        SourceDocument(
            "codes.txt",
            "Part codes",
            [
                Section(
                    "", "Replacement valve part number QX-7731-B fits the pump; part number QX-7713-B fits the boiler."
                )
            ],
            "txt",
        ),
        SourceDocument(
            "weather.md",
            "Weather",
            [Section("Storms", "Autumn storms close the harbour mouth to small boats.")],
            "md",
            tags=["weather"],
        ),
        SourceDocument(
            "reactor.txt",
            "Reactor notes",
            [
                Section(
                    "",
                    " ".join(
                        [
                            "The Zorblax reactor was commissioned in 2091.",
                            "The Zorblax reactor runs on cold fusion of deuterium.",
                            "The Zorblax reactor output is 420 megawatts.",
                            "Unrelated: the canteen serves lentil soup on Tuesdays and fish on Fridays.",
                        ]
                        * 2
                    ),
                )
            ],
            "txt",
        ),
    ]


def test_exact_codes_and_numbers_are_found(make_store: Callable[..., DocumentStore]) -> None:
    store = make_store("edge")
    list(store.ingest(corpus(), "c"))
    searcher = IndexSearcher(store.index, store.embedder, store.sparse)
    top = searcher.search("c", "QX-7713-B", 1)[0]
    assert top.source == "codes.txt" and "QX-7713-B" in top.text
    hits = searcher.search("c", "when was the Zorblax reactor commissioned", 3)
    assert hits[0].document_id == document_id_for("reactor.txt") and "2091" in " ".join(h.text for h in hits)
    assert hits[0].title == "Reactor notes" and hits[0].origin == "index"


def test_filters_narrow_the_hits(make_store: Callable[..., DocumentStore]) -> None:
    store = make_store("edge")
    list(store.ingest(corpus(), "c"))
    searcher = IndexSearcher(store.index, store.embedder, store.sparse)
    only = searcher.search("c", "harbour boats", 5, [Match("tags", ("weather",))])
    assert {h.source for h in only} == {"weather.md"}
    not_weather = searcher.search("c", "harbour boats", 5, [Match("file_name", ("weather.md",), negate=True)])
    assert not_weather and "weather.md" not in {h.source for h in not_weather}
    assert searcher.search("c", "harbour", 5, [Match("source", ("nope.txt",))]) == []
    assert searcher.search("missing-collection", "harbour", 5) == []


def test_stop_word_queries_still_answer(make_store: Callable[..., DocumentStore]) -> None:
    store = make_store("edge")
    list(store.ingest(corpus(), "c"))
    assert len(IndexSearcher(store.index, store.embedder, store.sparse).search("c", "the of and", 2)) == 2


def test_widening_joins_similar_neighbours_of_the_top_hit(make_store: Callable[..., DocumentStore]) -> None:
    store = make_store("edge", chunk_tokens=16, overlap=0)
    list(store.ingest(corpus(), "c"))
    searcher = IndexSearcher(store.index, store.embedder, store.sparse)
    plain = searcher.search("c", "Zorblax reactor cold fusion", 1)[0]
    widened = searcher.search("c", "Zorblax reactor cold fusion", 1, widening=Widening(min_similarity=0.5))[0]
    assert plain.text in widened.text and len(widened.text) > len(plain.text)
    assert "lentil" not in widened.text  # the unrelated neighbour stops the widening
    unchanged = searcher.search("c", "Zorblax reactor cold fusion", 1, widening=Widening(min_similarity=0.99))[0]
    assert unchanged.text == plain.text


def test_join_overlapping_removes_the_shared_seam() -> None:
    assert join_overlapping("one two three four", "three four five") == "one two three four five"
    assert join_overlapping("abc", "xyz") == "abc\nxyz"

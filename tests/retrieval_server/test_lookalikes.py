"""The look-alike harness: the corpus and question sets, the metrics, and every ranking
mode checked against its definition on a real 1k look-alike index (Qdrant Edge,
all-MiniLM-L6-v2, BM25). Quality is asserted only where it is a regression guard; speed
is not asserted (``openchatkit eval retrieval --lookalikes`` measures it)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from retrieval_server.chunking import Chunker
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import DocumentStore
from retrieval_server.embeddings import DenseEmbedder, SparseEncoder
from retrieval_server.evaluation import EvalError, Question, score
from retrieval_server.index import DenseQuery, IndexHit, SparseQuery, open_index
from retrieval_server.lookalike_eval import COLLECTION, VARIANTS, ingest_corpus, question_set, score_variants
from retrieval_server.lookalike_families import FAMILIES, QUESTIONS
from retrieval_server.lookalikes import _words, corpus, source_of
from retrieval_server.ranking import LateInteractionReranker, Ranking
from retrieval_server.search import IndexSearcher, SearchHit
from tests.support.processes import REPO_ROOT

SIZE = 1000


def hit(source: str, text: str = "") -> SearchHit:
    return SearchHit(id=source, title="", source=source, text=text, score=0.0)


# --- metrics ---------------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    asked = [
        Question("q1", "a.txt", "alpha"),  # rank 1
        Question("q2", "b.txt", "beta"),  # rank 3
        Question("q3", "c.txt", "gamma"),  # missing
        Question("q4", "lookalike://x/d", "delta"),  # rank 5, matched by whole source
    ]
    answers = [
        [hit("docs/a.txt", "Alpha is first"), hit("b.txt")],
        [hit("x.txt"), hit("y.txt"), hit("docs/b.txt#part-2", "no answer here")],
        [hit("a.txt", "gamma appears in a wrong document")],
        [hit("1"), hit("2"), hit("3"), hit("4"), hit("lookalike://x/d", "delta"), hit("lookalike://x/d")],
    ]
    result = score(asked, answers, documents=7, chunks=9)
    assert result.recall_at_1 == 0.25 and result.recall_at_5 == 0.75
    assert result.mrr == pytest.approx((1 + 1 / 3 + 0 + 1 / 5) / 4)
    assert result.answer_in_context == 0.75  # alpha, gamma (anywhere in the top 5), delta
    assert (result.documents, result.chunks) == (7, 9)
    assert len(result.misses) == 1 and "'q3'" in result.misses[0]
    assert [m.split(" (")[0] for m in result.not_first] == ["'q2'", "'q4'"]
    assert "rank 3" in result.not_first[0]
    with pytest.raises(EvalError):
        score(asked, answers[:2])


def test_only_the_top_five_count() -> None:
    answers = [[hit(str(i)) for i in range(5)] + [hit("want.txt", "the answer")]]
    result = score([Question("q", "want.txt", "the answer")], answers)
    assert (result.recall_at_5, result.mrr, result.answer_in_context) == (0.0, 0.0, 0.0)


# --- corpus and questions --------------------------------------------------------------


def test_corpus_is_deterministic_and_grows_by_appending() -> None:
    small = [(d.document.source, d.document.title, d.document.sections[0].text) for d in corpus(300)]
    large = [(d.document.source, d.document.title, d.document.sections[0].text) for d in corpus(600)]
    assert small == large[:300] and len({s for s, _, _ in large}) == 600
    assert small == [(d.document.source, d.document.title, d.document.sections[0].text) for d in corpus(300)]
    with pytest.raises(ValueError):
        list(corpus(5))


def test_every_question_has_exactly_one_right_answer() -> None:
    documents = list(corpus(3000))
    real = [d for d in documents if d.real]
    assert [d.real for d in documents[: len(real)]] == [True] * len(real)
    real_sources = {d.document.source for d in real}
    for family in FAMILIES:
        names = {r["name"].lower() for r in family.real}
        lookalikes = [d for d in documents if d.kind == family.kind and not d.real]
        assert len(lookalikes) > 200
        assert not any(d.name.lower() in names for d in lookalikes)
        for aspect, slots in family.aspects.items():
            for r in family.real:
                taken = _words([r[s] for s in slots])
                # no look-alike repeats a real document's whole aspect...
                assert not any(_words([d.slots[s] for s in slots]) == taken for d in lookalikes), (family, aspect)
                # ...but many share a part of it (that is what makes them look alike)
                shared = [d for d in lookalikes if any(d.slots[s] == r[s] for s in slots)]
                assert len(shared) > len(lookalikes) // 10, (family.kind, aspect)
    for q in QUESTIONS:
        assert source_of(q.kind, q.name) in real_sources, q
        if q.by == "content":
            assert q.name.lower() not in q.question.lower(), q
        else:
            assert q.name.lower() in q.question.lower(), q
    assert len(question_set("name")) == 20 and len(question_set("content")) == 40


# --- each ranking mode on a real 1k look-alike index -----------------------------------


@pytest.fixture(scope="module")
def store(
    tmp_path_factory: pytest.TempPathFactory, embedder: DenseEmbedder, sparse: SparseEncoder
) -> Iterator[DocumentStore]:
    index = open_index(path=tmp_path_factory.mktemp("lookalikes"), engine="edge")
    built = DocumentStore(index, embedder, sparse, Chunker(embedder.tokenizer, 64, 8))
    assert ingest_corpus(built, SIZE)[0] == SIZE
    yield built
    index.close()


def ids(hits: list[SearchHit] | list[IndexHit]) -> list[str]:
    return [h.id for h in hits]


def searcher(store: DocumentStore, **ranking: object) -> IndexSearcher:
    chosen = Ranking(**ranking)  # type: ignore[arg-type]
    reranker = LateInteractionReranker(store.embedder) if chosen.rerank == "late-interaction" else None
    return IndexSearcher(store.index, store.embedder, store.sparse, chosen, reranker)


QUERIES = [q.question for q in QUESTIONS[::5]]


def engine_lists(store: DocumentStore, query: str, limit: int) -> tuple[list[IndexHit], list[IndexHit]]:
    dense = store.index.query(COLLECTION, DenseQuery(store.embedder.embed_query(query).tolist()), limit)
    bm25 = store.index.query(COLLECTION, SparseQuery(store.sparse.encode_query(query)), limit)
    return dense, bm25


def test_single_retrievers_are_the_engine_lists(store: DocumentStore) -> None:
    for query in QUERIES:
        dense, bm25 = engine_lists(store, query, 5)
        assert ids(searcher(store, retriever="dense").search(COLLECTION, query, 5)) == ids(dense)
        assert ids(searcher(store, retriever="bm25").search(COLLECTION, query, 5)) == ids(bm25)


def rrf(lists: list[list[IndexHit]], k: int, weights: tuple[float, ...] = (1.0, 1.0)) -> dict[str, float]:
    """Qdrant's reciprocal rank fusion: weight / (k + rank), ranks counted from 0."""
    fused: dict[str, float] = {}
    for weight, ranked in zip(weights, lists, strict=True):
        for rank, h in enumerate(ranked):
            fused[h.id] = fused.get(h.id, 0.0) + weight / (k + rank)
    return fused


def rank_range(listed: list[IndexHit], point: str) -> tuple[int, int] | None:
    """0-based ranks ``point`` may hold in ``listed`` (the whole collection, best first):
    equal scores may come in any order. None: not listed."""
    score = next((h.score for h in listed if h.id == point), None)
    if score is None:
        return None
    better = sum(h.score > score + 1e-6 for h in listed)
    same = sum(abs(h.score - score) <= 1e-6 for h in listed)
    return better, better + same - 1


def test_rrf_and_dbsf_fuse_as_defined(store: DocumentStore) -> None:
    """Qdrant's RRF: sum of weight / (k + rank), ranks from 0, each list cut at prefetch_limit;
    DBSF: each list's scores scaled by mean +- 3 std, summed. Checked within the freedom that
    equal scores (common among look-alikes) leave to the engine."""
    limit, checked = 50, 0
    for query in [q.question for q in QUESTIONS[::2]]:
        full = engine_lists(store, query, SIZE)

        def within(
            point: str, k: int, weights: tuple[float, float], full: tuple[list[IndexHit], ...] = full
        ) -> tuple[float, float] | None:
            low = high = 0.0
            for weight, listed in zip(weights, full, strict=True):
                ranks = rank_range(listed, point)
                if ranks is None or ranks[0] >= limit:
                    continue
                if ranks[1] >= limit:
                    return None  # in or out of the prefetch is the engine's choice
                low, high = low + weight / (k + ranks[1]), high + weight / (k + ranks[0])
            return low, high

        for k, weights in ((60, (1.0, 1.0)), (1, (1.0, 4.0))):
            ranking = {"rrf_k": k, "weights": None if weights == (1.0, 1.0) else weights}
            got = searcher(store, fusion="rrf", prefetch_limit=limit, **ranking).search(COLLECTION, query, 5)
            assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
            for h in got:
                bounds = within(h.id, k, weights)
                if bounds is not None:
                    assert bounds[0] - 1e-6 <= h.score <= bounds[1] + 1e-6, (query, k, weights)
                    checked += 1

        def scaled(listed: list[IndexHit]) -> tuple[dict[str, float], float]:
            top = np.array([h.score for h in listed[:limit]])  # the prefetch's scores (ties: same values)
            spread = 3 * top.std(ddof=1)  # the sample standard deviation
            low, high = top.mean() - spread, top.mean() + spread
            return {h.id: (h.score - low) / (high - low) for h in listed}, float(top[-1])

        (d, d_cut), (b, b_cut) = scaled(full[0]), scaled(full[1])
        dense_scores = {h.id: h.score for h in full[0]}
        bm25_scores = {h.id: h.score for h in full[1]}
        for h in searcher(store, fusion="dbsf", prefetch_limit=limit).search(COLLECTION, query, 5):
            parts, sure = 0.0, True
            for part, scores, cut in ((d, dense_scores, d_cut), (b, bm25_scores, b_cut)):
                own = scores.get(h.id)
                if own is None or own < cut - 1e-6:
                    continue
                sure = sure and abs(own - cut) > 1e-6
                parts += part[h.id]
            if sure:
                assert h.score == pytest.approx(parts, abs=1e-3), query
                checked += 1
    assert checked >= 50


def test_weighted_fusion_scales_and_weighs_both_lists(store: DocumentStore) -> None:
    for query in QUERIES:
        dense, bm25 = engine_lists(store, query, 50)
        only_bm25 = searcher(store, fusion="weighted", weights=(0.0, 1.0)).search(COLLECTION, query, 5)
        assert ids(only_bm25) == ids(bm25[:5]) or [round(h.score, 6) for h in bm25[:5]] != sorted(
            {round(h.score, 6) for h in bm25[:5]}, reverse=True
        )  # equal BM25 scores may be ordered by id instead
        only_dense = searcher(store, fusion="weighted", weights=(1.0, 0.0)).search(COLLECTION, query, 5)
        assert ids(only_dense) == ids(dense[:5])
        mixed = searcher(store, fusion="weighted", weights=(0.3, 0.7)).search(COLLECTION, query, 5)
        for h in mixed:
            expected = 0.0
            for weight, listed in ((0.3, dense), (0.7, bm25)):
                top, bottom = listed[0].score, listed[-1].score
                found = next((x.score for x in listed if x.id == h.id), None)
                expected += weight * (found - bottom) / (top - bottom) if found is not None else 0.0
            assert h.score == pytest.approx(expected, abs=1e-6)
        assert all(0 <= h.score <= 1 for h in mixed)


def test_prefetch_title_field_and_reranking_reorder_the_candidates(store: DocumentStore) -> None:
    query = "Who designed the Vesper Bridge?"
    plain = searcher(store, fusion="rrf").search(COLLECTION, query, 20)
    titled = searcher(store, fusion="rrf", title_weight=5.0).search(COLLECTION, query, 20)
    assert set(ids(titled)) <= set(ids(searcher(store, fusion="rrf").search(COLLECTION, query, 80)))
    assert titled[0].title == "Vesper Bridge" and titled[0].score > titled[1].score
    assert ids(plain) != ids(titled) or plain[0].title == "Vesper Bridge"

    reranked = searcher(store, fusion="weighted", rerank="late-interaction", rerank_candidates=8)
    first_stage = searcher(store, fusion="weighted").search(COLLECTION, query, 8)
    got = reranked.search(COLLECTION, query, 8)
    assert set(ids(got)) == set(ids(first_stage))  # same candidates, new order by MaxSim
    assert [h.score for h in got] == sorted((h.score for h in got), reverse=True)
    assert all(0 < h.score <= 1.0001 for h in got)

    wide = searcher(store, fusion="rrf", prefetch_limit=200).search(COLLECTION, query, 5)
    assert wide and wide[0].title == "Vesper Bridge"


def test_every_variant_is_scored_and_the_default_beats_rrf(store: DocumentStore) -> None:
    chosen = {"default": RetrievalSettings().ranking(), **{k: VARIANTS[k] for k in ("rrf", "dbsf", "bm25", "dense")}}
    report = score_variants(store, chosen, RetrievalSettings())
    assert set(report) == set(chosen)
    for name, row in report.items():
        for by in ("by_name", "by_content"):
            m = row[by]
            assert 0 <= m["recall_at_1"] <= m["mrr"] <= m["recall_at_5"] <= 1, name
            total = len(question_set(by[3:]))
            assert round(m["recall_at_5"] * total) == total - len(m["misses"]), name
            assert round(m["recall_at_1"] * total) == total - len(m["misses"]) - len(m["not_first"]), name
        assert row["search_ms"]["n"] == 60
        assert row["by_name"]["recall_at_5"] == 1.0, name  # named subjects are found by every mode
    # the measured winner keeps its lead over today's RRF on questions asked by content
    assert report["default"]["by_content"]["recall_at_1"] >= report["rrf"]["by_content"]["recall_at_1"] + 0.3
    assert report["default"]["by_content"]["recall_at_5"] >= 0.9


def test_cli_writes_the_report_and_prints_misses(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "openchatkit.cli", "eval", "retrieval", "--lookalikes", "100",
            "--variants", "rrf,default", "--out", str(tmp_path), "--json",
        ],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["size"] == 100 and list(report["variants"]) == ["rrf", "default"]
    assert json.loads((tmp_path / "retrieval-lookalikes-100-latest.json").read_text())["variants"] == report["variants"]
    misses = report["variants"]["rrf"]["by_content"]["misses"]
    assert all(m.split(" (")[0] in done.stderr for m in misses)
    bad = subprocess.run(
        [sys.executable, "-m", "openchatkit.cli", "eval", "retrieval", "--lookalikes", "100", "--variants", "nope"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "unknown variant" in bad.stderr


def test_a_cross_encoder_from_a_local_folder_reranks(store: DocumentStore, tmp_path: Path) -> None:
    """The wiring only: a tiny, untrained BERT cross-encoder built here (no model hub), loaded
    offline; the candidates come back ordered by its scores. Quality needs a real model."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from retrieval_server.embeddings import bundled_model_dir
    from retrieval_server.ranking import CrossEncoderReranker, build_reranker

    folder = tmp_path / "tiny-cross-encoder"
    tokenizer = AutoTokenizer.from_pretrained(bundled_model_dir(), local_files_only=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=1,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    reranker = build_reranker("cross-encoder", store.embedder, str(folder))
    assert isinstance(reranker, CrossEncoderReranker)
    query = "Which bakery makes a knot-shaped cardamom roll topped with sugar pearls?"
    first_stage = searcher(store).search(COLLECTION, query, 10)
    ranking = Ranking(rerank="cross-encoder", rerank_candidates=10)
    got = IndexSearcher(store.index, store.embedder, store.sparse, ranking, reranker).search(COLLECTION, query, 10)
    expected = reranker.scores(query, first_stage)
    assert set(ids(got)) == set(ids(first_stage))
    assert [h.score for h in got] == pytest.approx(sorted(expected.tolist(), reverse=True), abs=1e-5)
    with pytest.raises(ValueError, match="reranker_model"):
        build_reranker("cross-encoder", store.embedder, "")
    with pytest.raises(ValueError, match="offline"):
        build_reranker("cross-encoder", store.embedder, str(tmp_path / "missing"))

"""``openchatkit eval retrieval``: ingest a folder into a fresh collection, ask each
question, and score where the document that answers it lands.

A hit counts when its source, or its source's file name, equals the question's ``doc``. recall@k: share of
questions with such a hit in the top k; MRR: mean of 1/rank of the first one (0 past the
top 5); answer_in_context: share whose ``answer`` string appears (case-insensitive) in
the top-5 texts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from retrieval_server.config import RetrievalSettings
from retrieval_server.index import EmbeddedEngine
from retrieval_server.loaders import DocumentError, iter_file_documents, iter_paths
from retrieval_server.search import IndexSearcher, SearchHit

TOP_K = 5


class EvalError(RuntimeError):
    pass


@dataclass(frozen=True)
class Question:
    question: str
    doc: str
    answer: str


@dataclass
class EvalResult:
    recall_at_1: float
    recall_at_5: float
    mrr: float
    answer_in_context: float
    documents: int
    chunks: int
    misses: list[str] = field(default_factory=list)
    """Questions whose document is not in the top 5."""
    not_first: list[str] = field(default_factory=list)
    """Questions whose document is in the top 5 but not first."""

    def metrics(self) -> dict[str, float]:
        return {
            "recall_at_1": self.recall_at_1,
            "recall_at_5": self.recall_at_5,
            "mrr": self.mrr,
            "answer_in_context": self.answer_in_context,
        }


def load_questions(path: Path) -> list[Question]:
    if not path.is_file():
        raise EvalError(f"{path} does not exist")
    questions = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            questions.append(Question(str(item["question"]), str(item["doc"]), str(item["answer"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise EvalError(f'{path} line {number}: expected {{"question", "doc", "answer"}} ({exc})') from None
    if not questions:
        raise EvalError(f"{path} holds no questions")
    return questions


def evaluate(
    docs: Path, questions: list[Question], engine: EmbeddedEngine = "edge", settings: RetrievalSettings | None = None
) -> EvalResult:
    from retrieval_server.app import build_searcher, build_store, load_embedder

    if not docs.is_dir():
        raise EvalError(f"{docs} is not a folder")
    with tempfile.TemporaryDirectory(prefix="openchatkit-eval-") as scratch:
        base = settings or RetrievalSettings()
        settings = base.model_copy(update={"qdrant_url": None, "qdrant_path": Path(scratch), "embedded_engine": engine})
        store = build_store(settings, load_embedder(settings))
        try:
            documents = chunks = 0
            for path in iter_paths([docs]):
                try:
                    found = iter_file_documents(
                        path, max_file_bytes=settings.max_upload_bytes, max_chars=settings.max_document_chars
                    )
                    for outcome in store.ingest(found, "eval"):
                        documents += 1
                        chunks += outcome.chunks
                except DocumentError as exc:
                    raise EvalError(str(exc)) from None
            searcher = build_searcher(settings, store)
            return _score(searcher, questions, documents, chunks)
        finally:
            store.index.close()


def _score(searcher: IndexSearcher, questions: list[Question], documents: int, chunks: int) -> EvalResult:
    answers = [searcher.search("eval", q.question, TOP_K) for q in questions]
    return score(questions, answers, documents, chunks)


def is_answer(hit: SearchHit, doc: str) -> bool:
    """``doc`` is the hit's source, or the file name of it."""
    return hit.source == doc or Path(hit.source.split("#", 1)[0]).name == doc


def score(
    questions: Sequence[Question], answers: Sequence[Sequence[SearchHit]], documents: int = 0, chunks: int = 0
) -> EvalResult:
    """Metrics of ranked ``answers`` (one list per question, best first, top 5 used)."""
    if len(questions) != len(answers) or not questions:
        raise EvalError("one ranked answer list per question, and at least one question")
    at_1 = at_5 = in_context = 0
    reciprocal = 0.0
    misses, not_first = [], []
    for q, found in zip(questions, answers, strict=True):
        hits = list(found)[:TOP_K]
        ranks = [i for i, h in enumerate(hits, 1) if is_answer(h, q.doc)]
        got = [Path(h.source).name for h in hits]
        if ranks:
            at_1 += ranks[0] == 1
            at_5 += 1
            reciprocal += 1.0 / ranks[0]
            if ranks[0] > 1:
                not_first.append(f"{q.question!r} (wanted {q.doc} at rank {ranks[0]}; got {got})")
        else:
            misses.append(f"{q.question!r} (wanted {q.doc}; got {got})")
        if q.answer.lower() in " ".join(h.text for h in hits).lower():
            in_context += 1
    n = len(questions)
    return EvalResult(at_1 / n, at_5 / n, reciprocal / n, in_context / n, documents, chunks, misses, not_first)

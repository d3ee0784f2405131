"""Where context comes from: the Qdrant index and live HTTP JSON sources, behind one
``Source`` interface. Results of several sources are merged by reciprocal rank and
cited the same way as indexed documents."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from retrieval_server.clients import SourceError, fetch_json
from retrieval_server.config import HttpSourceConfig
from retrieval_server.index import IndexEngineError, Where
from retrieval_server.search import IndexSearcher, SearchHit, Widening

logger = logging.getLogger(__name__)

INDEX_SOURCE = "index"


class Source(Protocol):
    name: str

    async def search(self, query: str, top_k: int, where: Where, widening: Widening | None) -> list[SearchHit]:
        """Hits, best first. Raises :class:`SourceError` when the source fails."""
        ...


@dataclass(frozen=True)
class SourceStatus:
    status: str  # ok | timeout | unavailable | error
    hits: int = 0
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "hits": self.hits}
        if self.message:
            out["message"] = self.message
        return out


class IndexSource:
    """The Qdrant index (hybrid dense + BM25 search) of one collection."""

    name = INDEX_SOURCE

    def __init__(self, searcher: IndexSearcher, collection: str) -> None:
        self.searcher = searcher
        self.collection = collection

    async def search(self, query: str, top_k: int, where: Where, widening: Widening | None) -> list[SearchHit]:
        return await asyncio.to_thread(self.searcher.search, self.collection, query, top_k, where, widening)


class TTLCache:
    """A small LRU whose entries also expire ``ttl_s`` after they were stored."""

    def __init__(self, ttl_s: float, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: Any, value: Any) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class HttpJsonSource:
    """A JSON search/data API: the URL template gets the query, a field mapping reads the results."""

    def __init__(self, name: str, config: HttpSourceConfig, http: httpx.AsyncClient) -> None:
        self.name = name
        self.config = config
        self.http = http
        self.cache = TTLCache(config.cache_ttl_s, config.cache_entries)

    def url_for(self, query: str, top_k: int) -> str:
        return self.config.url_template.replace("{query}", urllib.parse.quote_plus(query)).replace(
            "{top_k}", str(top_k)
        )

    async def search(self, query: str, top_k: int, where: Where, widening: Widening | None) -> list[SearchHit]:
        key = (query, top_k)
        cached = self.cache.get(key)
        if cached is not None:
            return list(cached)
        body = await fetch_json(self.http, self.url_for(query, top_k), self.config.headers, self.config.timeout_s)
        hits = self._read(body)[:top_k]
        self.cache.put(key, tuple(hits))
        return hits

    def _read(self, body: Any) -> list[SearchHit]:
        results = _at(body, self.config.results_path)
        if not isinstance(results, list):
            raise SourceError(f"'{self.config.results_path or '.'}' in its answer is not a list")
        hits: list[SearchHit] = []
        for rank, item in enumerate(results):
            text = _text(_at(item, self.config.text_field))
            if not text:
                continue
            url = _text(_at(item, self.config.url_field)) or None
            title = _text(_at(item, self.config.title_field)) or url or self.name
            digest = hashlib.sha256((url or text).encode()).hexdigest()[:16]
            hits.append(
                SearchHit(
                    id=f"{self.name}:{digest}",
                    title=title[:300],
                    source=url or self.name,
                    text=text[: self.config.max_text_chars],
                    score=1.0 / (rank + 1),
                    origin=self.name,
                    url=url,
                )
            )
        return hits


def _at(value: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return str(value).strip()


async def search_sources(
    sources: Sequence[Source], query: str, top_k: int, where: Where, widening: Widening | None, rrf_k: int = 60
) -> tuple[list[SearchHit], dict[str, SourceStatus]]:
    """Ask every source at once; a failing source is reported, never fatal."""

    async def ask(source: Source) -> tuple[list[SearchHit], SourceStatus]:
        try:
            hits = await source.search(query, top_k, where, widening)
        except SourceError as exc:
            logger.warning("source failed", extra={"source": source.name, "status": exc.status, "error": str(exc)})
            return [], SourceStatus(exc.status, message=str(exc))
        except IndexEngineError as exc:
            logger.warning("index search failed", extra={"source": source.name, "error": str(exc)})
            return [], SourceStatus("unavailable", message=str(exc))
        return hits, SourceStatus("ok", len(hits))

    answers = await asyncio.gather(*(ask(s) for s in sources))
    statuses = {s.name: status for s, (_, status) in zip(sources, answers, strict=True)}
    return merge_ranked([hits for hits, _ in answers], top_k, rrf_k), statuses


def merge_ranked(rankings: Sequence[Sequence[SearchHit]], top_k: int, rrf_k: int = 60) -> list[SearchHit]:
    """Reciprocal-rank fusion across sources (each keeps its own score); one ranking passes through."""
    non_empty = [r for r in rankings if r]
    if len(non_empty) <= 1:
        return list(non_empty[0][:top_k]) if non_empty else []
    fused: dict[str, tuple[float, int, SearchHit]] = {}
    for order, ranking in enumerate(non_empty):
        for rank, hit in enumerate(ranking):
            score, first, _ = fused.get(hit.id, (0.0, order, hit))
            fused[hit.id] = (score + 1.0 / (rrf_k + rank + 1), min(first, order), hit)
    ordered = sorted(fused.values(), key=lambda entry: (-entry[0], entry[1]))
    return [hit for _, _, hit in ordered[:top_k]]

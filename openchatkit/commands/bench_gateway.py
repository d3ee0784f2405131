"""``openchatkit bench gateway``."""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from openchatkit.apps import bench_app
from openchatkit.bench.gateway import Target, bench_gateway, plot
from openchatkit.bench.results import write_result

console = Console()


@bench_app.command("gateway")
def gateway(
    gateway_url: Annotated[str, typer.Option(help="The gateway's OpenAI API.")] = "http://127.0.0.1:8000/v1",
    direct_url: Annotated[str, typer.Option(help="vLLM's own OpenAI API.")] = "http://127.0.0.1:8001/v1",
    api_key: Annotated[str, typer.Option(envvar="OPENCHATKIT_API_KEY")] = "sk-local",
    model: Annotated[str | None, typer.Option(help="Default: the first model vLLM lists.")] = None,
    concurrency: Annotated[list[int], typer.Option(help="Concurrency levels.")] = [1, 16],  # noqa: B006
    requests: Annotated[int, typer.Option(help="Requests per round and level.")] = 16,
    rounds: Annotated[int, typer.Option(help="Alternating direct/gateway rounds per level.")] = 4,
    max_tokens: Annotated[int, typer.Option()] = 32,
    overhead_pairs: Annotated[
        int, typer.Option(help="Back-to-back one-token pairs for the added-latency estimate.")
    ] = 200,
) -> None:
    """Latency, TTFT and tokens/s straight to vLLM vs through the gateway (stream and not)."""
    direct = Target("direct", direct_url.rstrip("/"), None)
    through = Target("gateway", gateway_url.rstrip("/"), api_key)
    if model is None:
        try:
            model = httpx.get(direct.base_url + "/models", timeout=10).json()["data"][0]["id"]
        except (httpx.HTTPError, KeyError, IndexError) as exc:
            console.print(f"[red]cannot list models at {direct.base_url}: {exc}[/]")
            raise typer.Exit(1) from None
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
    path = write_result("gateway", result)
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

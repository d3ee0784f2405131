"""``openchatkit bench moderation``: p50/p95 latency of single texts and throughput of batches
through the moderation classifier (in process, or a running service with ``--url``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from moderation_server.dataset import load_split
from openchatkit.apps import stderr_console
from openchatkit.bench.results import RESULTS_DIR, figure, loadavg, save_figure, summarize, write_result
from openchatkit.commands.moderation import ArtifactOption, UrlOption, artifact_dir, load_local_classifier

console = stderr_console()
GOAL_P50_MS = 10.0
GOAL_TEXTS_PER_S = 200.0


def bench_moderation(
    singles: Annotated[int, typer.Option(help="Single-text requests to time.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Texts per batch for the throughput run.")] = 64,
    batches: Annotated[int, typer.Option(help="Batches for the throughput run.")] = 30,
    url: UrlOption = None,
    artifact: ArtifactOption = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(hidden=True)] = True,
) -> Path:
    """p50/p95 latency of single texts and throughput of batches; JSON (+ PNG) under benchmarks/results/."""
    load_before = loadavg()
    texts = [e.text for split in ("test", "dev") for e in load_split(split)]
    if url:
        client = httpx.Client(base_url=url.rstrip("/"), timeout=300, trust_env=False)

        def run(batch: list[str]) -> None:
            client.post("/v1/classify", json={"input": batch}).raise_for_status()

        target = {"mode": "http", "url": url}
    else:
        classifier = load_local_classifier(artifact)

        def run(batch: list[str]) -> None:
            classifier.probabilities(batch, batch_size)

        target = {"mode": "in-process", "artifact": str(artifact_dir(artifact)), "runtime": classifier.runtime}
    import torch

    for text in texts[:20]:  # warm-up, single texts and one full batch
        run([text])
    run(texts[:batch_size])
    latencies = []
    for i in range(singles):
        started = time.perf_counter()
        run([texts[i % len(texts)]])
        latencies.append((time.perf_counter() - started) * 1000)
    batch_seconds = []
    for b in range(batches):
        batch = [texts[(b * batch_size + j) % len(texts)] for j in range(batch_size)]
        started = time.perf_counter()
        run(batch)
        batch_seconds.append(time.perf_counter() - started)
    throughput = batch_size * batches / sum(batch_seconds)
    single = summarize(latencies)
    payload: dict[str, Any] = {
        "target": target,
        "torch_threads": torch.get_num_threads(),
        "single_text_latency_ms": single,
        "batched": {
            "batch_size": batch_size,
            "batches": batches,
            "texts_per_second": throughput,
            "batch_latency_ms": summarize(batch_seconds, 1000),
        },
        "goals": {
            "p50_ms_at_most": GOAL_P50_MS,
            "texts_per_second_at_least": GOAL_TEXTS_PER_S,
            "p50_met": single["p50"] <= GOAL_P50_MS,
            "throughput_met": throughput >= GOAL_TEXTS_PER_S,
        },
    }
    name = "moderation" if not url else "moderation-http"
    path = write_result(name, payload, out, load_before=load_before, stamped=stamped)
    _plot(latencies, out / f"{name}-latest.png" if stamped else path.with_suffix(".png"), throughput, batch_size)
    console.print(
        f"single text: p50 {single['p50']:.2f} ms, p95 {single['p95']:.2f} ms; "
        f"batches of {batch_size}: {throughput:.0f} texts/s -> {path}"
    )
    return path


def _plot(latencies: list[float], path: Path, throughput: float, batch_size: int) -> None:
    fig, axis = figure()
    axis.hist(latencies, bins=40, color="#4477aa")
    axis.axvline(GOAL_P50_MS, color="#cc3311", linestyle="--", label=f"goal: p50 <= {GOAL_P50_MS:g} ms")
    axis.set_xlabel("single-text latency (ms)")
    axis.set_ylabel("requests")
    axis.set_title(f"moderation classifier; batches of {batch_size}: {throughput:.0f} texts/s")
    axis.legend()
    save_figure(fig, path, dpi=100)

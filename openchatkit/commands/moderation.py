"""``openchatkit finetune moderation``, ``openchatkit eval moderation`` and ``openchatkit bench moderation``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.table import Table

from moderation_server.config import ModerationSettings
from moderation_server.dataset import DatasetError, load_jsonl, load_split
from moderation_server.evaluation import EvaluationReport, evaluate
from moderation_server.labels import LABELS
from openchatkit.apps import bench_app, eval_app, finetune_app

if TYPE_CHECKING:
    from moderation_server.model import TextClassifier

# torch and transformers load inside the commands, so the rest of the CLI starts fast.

console = Console(stderr=True)

ArtifactOption = Annotated[
    Path | None,
    typer.Option(help="The classifier directory (default: MODERATION_ARTIFACT_DIR or <data dir>/moderation)."),
]
UrlOption = Annotated[
    str | None, typer.Option(help="Use a running moderation service (any backend) instead of the local classifier.")
]


def artifact_dir(path: Path | None) -> Path:
    return path or ModerationSettings().classifier_dir()


def load_local_classifier(path: Path | None) -> TextClassifier:
    from moderation_server.model import TextClassifier
    from moderation_server.training import is_current

    directory = artifact_dir(path)
    if not is_current(directory):
        console.print(f"[red]error:[/red] no current classifier at {directory}: run `openchatkit finetune moderation`")
        raise typer.Exit(1)
    return TextClassifier.load(directory)


@finetune_app.command("moderation")
def finetune_moderation(
    output: ArtifactOption = None,
    force: Annotated[bool, typer.Option("--force", help="Train even when the artifact is current.")] = False,
) -> None:
    """Fine-tune the CPU moderation classifier on moderation_server/data (skipped when current)."""
    from moderation_server.training import ensure_artifact

    directory = artifact_dir(output)
    status = ensure_artifact(directory, force=force, progress=lambda line: console.print(line))
    metrics = status.manifest.get("dev_metrics", {})
    verb = "trained" if status.trained else "up to date"
    console.print(
        f"moderation classifier {verb}: {directory} (dev macro-F1 {metrics.get('macro_f1', float('nan')):.3f}, "
        f"intervention recall {metrics.get('intervention_recall', float('nan')):.3f}, "
        f"casual false flags {metrics.get('casual_false_flag_rate', float('nan')):.3f})"
    )


def predict_remote(url: str, texts: list[str], batch: int = 64) -> list[str]:
    labels: list[str] = []
    with httpx.Client(base_url=url.rstrip("/"), timeout=300, trust_env=False) as client:
        for start in range(0, len(texts), batch):
            response = client.post("/v1/classify", json={"input": texts[start : start + batch]})
            if response.status_code != 200:
                console.print(f"[red]error:[/red] {url} answered {response.status_code}: {response.text[:300]}")
                raise typer.Exit(1)
            labels.extend(r["label"] for r in response.json()["results"])
    return labels


@eval_app.command("moderation")
def eval_moderation(
    file: Annotated[Path, typer.Argument(help='JSONL, one {"text", "label"} per line.')],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")] = False,
    url: UrlOption = None,
    artifact: ArtifactOption = None,
) -> None:
    """Per-label precision/recall/F1, macro-F1, accuracy and a confusion matrix on FILE."""
    try:
        examples = load_jsonl(file)
    except DatasetError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    texts = [e.text for e in examples]
    if url:
        predicted = predict_remote(url, texts)
    else:
        classifier = load_local_classifier(artifact)
        predicted = [classifier.label(s) for s in classifier.probabilities(texts)]
    report = evaluate([e.label for e in examples], predicted)
    if as_json:
        print(json.dumps(report.to_dict()))
    else:
        print_report(report)


def print_report(report: EvaluationReport) -> None:
    out = Console()
    table = Table(title=f"{report.examples} examples")
    for column in ("label", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for label, m in report.per_label.items():
        table.add_row(label, f"{m.precision:.3f}", f"{m.recall:.3f}", f"{m.f1:.3f}", str(m.support))
    out.print(table)
    out.print(
        f"accuracy {report.accuracy:.3f}   macro-F1 {report.macro_f1:.3f}   "
        f"intervention recall {report.intervention_recall:.3f}   "
        f"casual false-flag rate {report.casual_false_flag_rate:.3f}"
    )
    confusion = Table(title="confusion (rows: gold, columns: predicted)")
    confusion.add_column("gold")
    for label in LABELS:
        confusion.add_column(_short(label), justify="right")
    for label, row in zip(LABELS, report.confusion, strict=True):
        confusion.add_row(label, *(str(v) for v in row))
    out.print(confusion)


def _short(label: str) -> str:
    return {
        "casual": "casual",
        "possibly needs caution": "possibly",
        "probably needs caution": "probably",
        "needs caution": "caution",
        "needs intervention": "interv.",
    }[label]


@bench_app.command("moderation")
def bench_moderation(
    singles: Annotated[int, typer.Option(help="Single-text requests to time.")] = 300,
    batch_size: Annotated[int, typer.Option(help="Texts per batch for the throughput run.")] = 64,
    batches: Annotated[int, typer.Option(help="Batches for the throughput run.")] = 30,
    url: UrlOption = None,
    artifact: ArtifactOption = None,
) -> None:
    """p50/p95 latency of single texts and throughput of batches; JSON (+ PNG) under benchmarks/results/."""
    from openchatkit.bench.results import RESULTS_DIR, summarize, write_result

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

        target = {"mode": "in-process", "artifact": str(artifact_dir(artifact))}
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
            "batch_latency_ms": summarize([s * 1000 for s in batch_seconds]),
        },
        "goals": {
            "p50_ms_at_most": 10.0,
            "texts_per_second_at_least": 200.0,
            "p50_met": single["p50"] <= 10.0,
            "throughput_met": throughput >= 200.0,
        },
    }
    name = "moderation" if not url else "moderation-http"
    path = write_result(name, payload)
    _plot(latencies, RESULTS_DIR / f"{name}-latest.png", throughput, batch_size)
    console.print(
        f"single text: p50 {single['p50']:.2f} ms, p95 {single['p95']:.2f} ms; "
        f"batches of {batch_size}: {throughput:.0f} texts/s -> {path}"
    )


def _plot(latencies: list[float], path: Path, throughput: float, batch_size: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    axis.hist(latencies, bins=40, color="#4477aa")
    axis.axvline(10.0, color="#cc3311", linestyle="--", label="goal: p50 <= 10 ms")
    axis.set_xlabel("single-text latency (ms)")
    axis.set_ylabel("requests")
    axis.set_title(f"moderation classifier; batches of {batch_size}: {throughput:.0f} texts/s")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)

"""``openchatkit ingest``, ``openchatkit eval retrieval`` and ``openchatkit bench retrieval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from openchatkit.apps import app, bench_app, eval_app
from retrieval_server.bulk_ingest import (
    IngestReport,
    LocalIngest,
    OnChunks,
    OnDocument,
    OnFile,
    RemoteIngest,
    report_json,
)
from retrieval_server.config import RetrievalSettings
from retrieval_server.documents import IngestOutcome
from retrieval_server.index import IndexError_
from retrieval_server.loaders import iter_paths

console = Console(stderr=True, soft_wrap=True)


@app.command("ingest")
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files and folders (.txt .md .html .pdf .jsonl .parquet).")],
    url: Annotated[str, typer.Option(help="The retrieval service.")] = "http://127.0.0.1:8003",
    collection: Annotated[str | None, typer.Option(help="Collection (default: the service's).")] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Write the embedded index directly (the service must be stopped).")
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="--local: the stack's data directory (default RETRIEVAL_DATA_DIR).")
    ] = None,
    optimize: Annotated[
        bool, typer.Option("--optimize", help="--local: build HNSW indexes afterwards (large corpora).")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="One line per document and per written batch.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Ingest documents; unchanged ones are skipped, changed ones replaced."""
    try:
        files = list(iter_paths(paths))
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATHS") from None
    if not files:
        console.print("[yellow]nothing to ingest[/yellow]")
        raise typer.Exit(0)
    settings = RetrievalSettings(**({"data_dir": data_dir} if data_dir else {}))
    report = IngestReport()
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        disable=verbose or not console.is_terminal,
    ) as progress:
        task = progress.add_task("files", total=len(files), status="")

        def on_chunks(count: int) -> None:
            if verbose:
                print(f"written {count} chunks", flush=True)

        def on_document(outcome: IngestOutcome) -> None:
            changed = report.created + report.updated
            progress.update(task, status=f"{changed} new/changed, {report.unchanged} unchanged, {report.chunks} chunks")
            if verbose:
                print(f"{outcome.status} {outcome.document_id} {outcome.chunks} chunks {outcome.source}", flush=True)

        def on_file(path: Path, error: str | None) -> None:
            progress.advance(task)
            if error:
                console.print(f"[red]failed[/red] {path}: {error}")

        try:
            if local:
                run_local(files, settings, collection, optimize, report, on_chunks, on_document, on_file)
            else:
                remote = RemoteIngest(url, collection, settings)
                try:
                    remote.run(files, report, on_chunks, on_document, on_file)
                finally:
                    remote.close()
        except IndexError_ as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    if as_json:
        print(report_json(report))
    else:
        console.print(
            f"{report.created} created, {report.updated} updated, {report.unchanged} unchanged, "
            f"{report.chunks} chunks written, {len(report.failures)} failed"
        )
    raise typer.Exit(1 if report.failures else 0)


def run_local(
    files: list[Path],
    settings: RetrievalSettings,
    collection: str | None,
    optimize: bool,
    report: IngestReport,
    on_chunks: OnChunks,
    on_document: OnDocument,
    on_file: OnFile,
) -> None:
    from retrieval_server.app import build_store, load_embedder

    store = build_store(settings, load_embedder(settings))
    name = collection or settings.collection
    try:
        LocalIngest(store, name, settings).run(files, report, on_chunks, on_document, on_file)
        if optimize:
            console.print("building search indexes (blocks until done)…")
            store.index.optimize(name)
    finally:
        store.index.close()


@eval_app.command("retrieval")
def eval_retrieval(
    docs: Annotated[Path | None, typer.Option(help="Folder of documents to ingest into a fresh collection.")] = None,
    questions: Annotated[Path | None, typer.Option(help='JSONL of {"question", "doc", "answer"}.')] = None,
    lookalikes: Annotated[
        str | None,
        typer.Option(help="Instead of --docs/--questions: look-alike corpus sizes (documents), comma separated."),
    ] = None,
    variants: Annotated[
        str | None, typer.Option(help="--lookalikes: ranking variants to compare (default: all, and 'default').")
    ] = None,
    hnsw: Annotated[bool, typer.Option("--hnsw", help="--lookalikes: build HNSW indexes before searching.")] = False,
    all_misses: Annotated[bool, typer.Option("--all-misses", help="--lookalikes: every variant's misses.")] = False,
    out: Annotated[Path, typer.Option(help="--lookalikes: results folder.")] = Path("benchmarks/results"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object with the metrics.")] = False,
    engine: Annotated[str, typer.Option(help="Embedded engine: edge or qdrant-client.")] = "edge",
) -> None:
    """Recall@1, recall@5, MRR and answer-in-context of search on a question set, or of every
    ranking variant on look-alike corpora (--lookalikes 1000,10000)."""
    from retrieval_server.evaluation import EvalError, evaluate, load_questions

    if lookalikes is not None:
        if docs or questions:
            raise typer.BadParameter("give --lookalikes or --docs/--questions, not both", param_hint="--lookalikes")
        _eval_lookalikes(lookalikes, variants, hnsw, all_misses, out, as_json)
        return
    if docs is None or questions is None:
        raise typer.BadParameter("give --docs and --questions (or --lookalikes N)", param_hint="--docs")
    try:
        items = load_questions(questions)
        result = evaluate(docs, items, engine=engine)
    except EvalError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(result.metrics()))
        return
    console.print(f"{len(items)} questions over {result.documents} documents ({result.chunks} chunks)")
    for name, value in result.metrics().items():
        console.print(f"  {name:18} {value:.3f}")
    for miss in result.misses:
        console.print(f"  [yellow]miss[/yellow] {miss}")


def _eval_lookalikes(sizes: str, variants: str | None, hnsw: bool, all_misses: bool, out: Path, as_json: bool) -> None:
    from openchatkit.bench.results import write_result
    from retrieval_server.lookalike_eval import QUESTION_SETS, VARIANTS, evaluate_lookalikes

    settings = RetrievalSettings()
    known = {"default": settings.ranking(), **VARIANTS}
    try:
        size_list = [int(s) for s in sizes.split(",") if s.strip()]
    except ValueError:
        raise typer.BadParameter("sizes must be integers", param_hint="--lookalikes") from None
    chosen = [v.strip() for v in variants.split(",") if v.strip()] if variants else list(known)
    unknown = [v for v in chosen if v not in known]
    if unknown or not size_list or min(size_list) < 100:
        raise typer.BadParameter(
            f"unknown variant(s) {unknown}; known: {', '.join(known)}" if unknown else "sizes of at least 100",
            param_hint="--variants" if unknown else "--lookalikes",
        )
    reports = []
    for size in size_list:
        console.print(f"[bold]look-alike corpus of {size} documents[/bold]")
        report = evaluate_lookalikes(size, {v: known[v] for v in chosen}, settings, hnsw, console.print)
        path = write_result(f"retrieval-lookalikes-{size}", report, out)
        console.print(f"wrote {path}")
        for name, row in report["variants"].items():
            if all_misses or name == chosen[0]:
                for by in QUESTION_SETS:
                    for miss in row[f"by_{by}"]["misses"]:
                        console.print(f"  [yellow]miss[/yellow] {name} by-{by}: {miss}")
                    for late in row[f"by_{by}"]["not_first"]:
                        console.print(f"  [yellow]not first[/yellow] {name} by-{by}: {late}")
        reports.append(report)
    if as_json:
        print(json.dumps(reports if len(reports) > 1 else reports[0]))


@bench_app.command("retrieval")
def bench_retrieval(
    sizes: Annotated[str, typer.Option(help="Collection sizes in chunks, comma separated.")] = "1000,10000,100000",
    queries: Annotated[int, typer.Option(help="Searches timed per size.")] = 200,
    ingest_chunks: Annotated[int, typer.Option(help="Chunks for the ingest throughput run.")] = 2000,
    engines: Annotated[str, typer.Option(help="edge and/or qdrant-client.")] = "edge,qdrant-client",
    slow_engine_queries: Annotated[
        int, typer.Option(help="Searches timed on qdrant-client's exact Python engine.")
    ] = 20,
    optimize: Annotated[
        bool, typer.Option("--optimize/--no-optimize", help="Also time Edge with HNSW built at the largest size.")
    ] = True,
    out: Annotated[Path, typer.Option(help="Results folder.")] = Path("benchmarks/results"),
) -> None:
    """Ingest chunks/s, and search latency p50/p95 at several collection sizes (synthetic corpus)."""
    from openchatkit.bench.retrieval import run_benchmark

    try:
        size_list = sorted({int(s) for s in sizes.split(",") if s.strip()})
    except ValueError:
        raise typer.BadParameter("sizes must be integers", param_hint="--sizes") from None
    engine_list = [e.strip() for e in engines.split(",") if e.strip()]
    for engine in engine_list:
        if engine not in ("edge", "qdrant-client"):
            raise typer.BadParameter(f"unknown engine {engine}", param_hint="--engines")
    path = run_benchmark(size_list, queries, ingest_chunks, engine_list, slow_engine_queries, optimize, out, console)
    console.print(f"wrote {path} and {path.with_suffix('.png')}")
    sys.stdout.flush()

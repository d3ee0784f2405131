"""``openchatkit ingest`` and ``openchatkit eval retrieval`` (``bench retrieval``: openchatkit/bench)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from openchatkit.apps import app, eval_app, stderr_console
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
from retrieval_server.index import EmbeddedEngine, IndexEngineError
from retrieval_server.loaders import iter_paths

console = stderr_console()


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
    """Ingest documents; unchanged ones are skipped, changed ones replaced.

    Through the retrieval service (--url, with the stack's internal token), or with --local into the embedded index.
    --json prints {"created", "updated", "unchanged", "chunks", "failures": [{"path", "error"}]} on stdout.
    Exit status 1 when any file failed or the index refused the write, else 0.
    """
    try:
        files = list(iter_paths(paths))
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="PATHS") from None
    if not files:
        console.print("[yellow]nothing to ingest[/yellow]")
        raise typer.Exit(0)
    settings = RetrievalSettings(data_dir=data_dir) if data_dir else RetrievalSettings()
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
                remote = RemoteIngest(url, collection, settings, api_key=_internal_token(settings))
                try:
                    remote.run(files, report, on_chunks, on_document, on_file)
                finally:
                    remote.close()
        except IndexEngineError as exc:
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


def _internal_token(settings: RetrievalSettings) -> str | None:
    """The retrieval service answers only holders of the stack's internal token
    (RETRIEVAL_INTERNAL_TOKEN, else the one `openchatkit run` keeps in the data dir)."""
    if settings.internal_token is not None:
        return settings.internal_token.get_secret_value()
    from openchatkit.secrets import StackSecrets

    found = StackSecrets.load(settings.data_dir)
    return found.internal_token if found else None


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
        result = evaluate(docs, items, engine=cast(EmbeddedEngine, engine))
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

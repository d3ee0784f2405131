"""``openchatkit feedback export``: stored feedback to fine-tuning JSONL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from feedback_server.config import FeedbackSettings
from feedback_server.export import Exporter, ExportFormat, ExportOptions, ExportSummary, MinQuality
from feedback_server.store import FeedbackStore
from feedback_server.store.store import ExportFilter
from openchatkit.apps import feedback_app
from openchatkit.commands import feedback_bench as _bench  # noqa: F401  (openchatkit bench feedback)

console = Console(stderr=True)


def parse_when(value: str | None, *, end_of_day: bool) -> datetime | None:
    """ISO date or date-time (UTC unless it says otherwise). A bare date as an upper bound
    means the end of that day."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end_of_day else start
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not an ISO date or date-time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def run_export(url: str, where: ExportFilter, exporter: Exporter, out: TextIO) -> ExportSummary:
    store = await FeedbackStore.open(url)
    try:
        total = await store.count_export(where)
        with Progress(
            TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("export", total=total)
            async for row in store.export_rows(where):
                record = exporter.record(row)
                if record is not None:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                progress.advance(task)
    finally:
        await store.close()
    return exporter.summary


def print_summary(summary: ExportSummary, output: str) -> None:
    table = Table(title=f"feedback export → {output}", show_header=False)
    table.add_row("feedback read", str(summary.read))
    table.add_row("records written", str(summary.written))
    for reason, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped: {reason.replace('_', ' ')}", str(count))
    table.add_row("PII redactions", str(summary.redactions))
    console.print(table)


@feedback_app.command("export")
def export(
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL file to write ('-' for stdout).")],
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="ock, preference or messages.")
    ] = ExportFormat.OCK,
    since: Annotated[str | None, typer.Option(help="Feedback given on or after this ISO date/time (UTC).")] = None,
    until: Annotated[
        str | None, typer.Option(help="Feedback given up to this ISO date (inclusive) or before this date-time.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Only turns answered by this model.")] = None,
    min_quality: Annotated[
        MinQuality, typer.Option(help="up: ideal responses and clean up-votes; ideal: ideal responses only.")
    ] = MinQuality.UP,
    include_harmful: Annotated[bool, typer.Option(help="Keep feedback flagged harmful (dropped by default).")] = False,
    redact_pii: Annotated[bool, typer.Option(help="Replace emails and phone numbers with [EMAIL]/[PHONE].")] = True,
    dedup: Annotated[bool, typer.Option(help="Write each distinct record once.")] = True,
    database_url: Annotated[
        str | None, typer.Option(help="The store (default: FEEDBACK_DATABASE_URL or the local SQLite file).")
    ] = None,
) -> None:
    """Export stored feedback (joined with the turns it rates) as fine-tuning data."""
    where = ExportFilter(
        since=parse_when(since, end_of_day=False),
        until=parse_when(until, end_of_day=True),
        model=model,
        include_harmful=True,  # harmful rows are dropped (and counted) by the exporter
    )
    options = ExportOptions(
        format=format, min_quality=min_quality, include_harmful=include_harmful, redact=redact_pii, dedup=dedup
    )
    url = database_url or FeedbackSettings().database_url
    with contextlib.ExitStack() as stack:
        if output == "-":
            out: TextIO = sys.stdout
        else:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(Path(output).open("w", encoding="utf-8"))
        try:
            summary = asyncio.run(run_export(url, where, Exporter(options), out))
        except Exception as exc:
            console.print(f"[red]export failed:[/red] {exc}")
            raise typer.Exit(1) from None
    print_summary(summary, output)

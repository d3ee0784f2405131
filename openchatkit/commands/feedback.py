"""``openchatkit feedback export``: stored feedback to fine-tuning JSONL; ``feedback stats``: up-vote
rates, per model or adapter version with ``--by-model``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from feedback_server.config import FeedbackSettings
from feedback_server.export import Exporter, ExportFormat, ExportOptions, ExportSummary, MinQuality, prompt_hash
from feedback_server.store import FeedbackStore
from feedback_server.store.turns_and_feedback import ExportFilter
from openchatkit.apps import feedback_app, stderr_console

console = stderr_console()


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


async def run_export(
    url: str, where: ExportFilter, exporter: Exporter, out: TextIO, holdout: tuple[float, TextIO] | None = None
) -> ExportSummary:
    """Write the records of every matching row to ``out``; with ``holdout`` = (fraction, file),
    rows whose prompt hashes under the fraction go to that file instead (no prompt on both sides)."""
    store = await FeedbackStore.open(url)
    try:
        total = await store.count_export(where)
        with Progress(
            TextColumn("[bold]export"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("export", total=total)
            async for row in store.export_rows(where):
                target = out
                if holdout is not None and row.turn is not None and prompt_hash(row.turn.messages) < holdout[0]:
                    target = holdout[1]
                for record in exporter.records(row):
                    target.write(json.dumps(record, ensure_ascii=False) + "\n")
                    if target is not out:
                        exporter.summary.held_out += 1
                progress.advance(task)
    finally:
        await store.close()
    return exporter.summary


def holdout_path(output: str) -> Path:
    """``data/train.jsonl`` -> ``data/train.holdout.jsonl``."""
    path = Path(output)
    return path.with_name(f"{path.stem}.holdout{path.suffix or '.jsonl'}")


def print_summary(summary: ExportSummary, output: str) -> None:
    table = Table(title=f"feedback export → {output}", show_header=False)
    table.add_row("feedback read", str(summary.read))
    table.add_row("records written", str(summary.written))
    if summary.held_out:
        table.add_row("of which held out", str(summary.held_out))
    for reason, count in sorted(summary.skipped.items()):
        table.add_row(f"skipped: {reason.replace('_', ' ')}", str(count))
    table.add_row("PII redactions", str(summary.redactions))
    console.print(table)


@feedback_app.command("export")
def export(
    output: Annotated[str, typer.Option("--output", "-o", help="JSONL file to write ('-' for stdout).")],
    format: Annotated[
        ExportFormat, typer.Option("--format", "-f", help="ock, messages, preference (DPO) or kto.")
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
    holdout: Annotated[
        float, typer.Option(min=0.0, max=0.9, help="Share of prompts (by hash) written to a held-out file instead.")
    ] = 0.0,
    holdout_output: Annotated[
        Path | None, typer.Option(help="The held-out file (default: OUTPUT with .holdout before its suffix).")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="The store (default: FEEDBACK_DATABASE_URL or the local SQLite file).")
    ] = None,
) -> None:
    """Export stored feedback (joined with the turns it rates) as fine-tuning data.

    One JSON object per line: ock {"text": "<human>: ...\\n<bot>: ...\\n"},
    preference {"prompt", "chosen", "rejected"} (DPO), or messages {"messages": [...]} (OpenAI chat).
    A summary of what was written and dropped, and why, goes to stderr.
    Exit status 1 when the store cannot be read.
    """
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
    if holdout and output == "-":
        raise typer.BadParameter("--holdout needs an --output file")
    with contextlib.ExitStack() as stack:
        if output == "-":
            out: TextIO = sys.stdout
        else:
            Path(output).parent.mkdir(parents=True, exist_ok=True)
            out = stack.enter_context(Path(output).open("w", encoding="utf-8"))
        held = None
        if holdout:
            held_path = holdout_output or holdout_path(output)
            held = (holdout, stack.enter_context(held_path.open("w", encoding="utf-8")))
        try:
            summary = asyncio.run(run_export(url, where, Exporter(options), out, held))
        except Exception as exc:
            console.print(f"[red]export failed:[/red] {exc}")
            raise typer.Exit(1) from None
    print_summary(summary, output)


def wilson_interval(successes: int, trials: int, z: float = 1.96) -> tuple[float, float] | None:
    """95 % Wilson score interval of a proportion (sound at small counts and at 0 or 1)."""
    if trials == 0:
        return None
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return (max(0.0, centre - half), min(1.0, centre + half))


def rate_rows(counts: dict[str, dict[str, int]]) -> list[dict[str, Any]]:
    """One row per model: its counts, the up-vote rate among rated answers and its interval."""
    rows = []
    for model, c in sorted(counts.items(), key=lambda item: -item[1]["feedback"]):
        rated = c["up"] + c["down"]
        interval = wilson_interval(c["up"], rated)
        rows.append(
            {
                "model": model,
                **c,
                "up_rate": c["up"] / rated if rated else None,
                "up_rate_ci95": list(interval) if interval else None,
            }
        )
    return rows


@feedback_app.command("stats")
def stats(
    by_model: Annotated[
        bool, typer.Option("--by-model", help="One row per model or adapter version that answered.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    database_url: Annotated[
        str | None, typer.Option(help="The store (default: FEEDBACK_DATABASE_URL or the local SQLite file).")
    ] = None,
) -> None:
    """Up-vote rates (up / (up + down), with a 95 % Wilson interval): overall, or per model and
    adapter version (`--by-model`), e.g. the two arms of an A/B split."""
    url = database_url or FeedbackSettings().database_url

    async def read() -> dict[str, dict[str, int]]:
        store = await FeedbackStore.open(url)
        try:
            per_model = await store.counts_by_model()
        finally:
            await store.close()
        if by_model or not per_model:
            return per_model
        names = next(iter(per_model.values()))
        return {"(all)": {name: sum(c[name] for c in per_model.values()) for name in names}}

    try:
        rows = rate_rows(asyncio.run(read()))
    except Exception as exc:
        console.print(f"[red]stats failed:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="feedback by model" if by_model else "feedback")
    for column in ("model", "feedback", "up", "down", "up-vote rate", "95% CI", "ideal", "flagged"):
        table.add_column(column)
    for row in rows:
        ci = row["up_rate_ci95"]
        table.add_row(
            row["model"],
            str(row["feedback"]),
            str(row["up"]),
            str(row["down"]),
            f"{row['up_rate']:.1%}" if row["up_rate"] is not None else "-",
            f"[{ci[0]:.1%}, {ci[1]:.1%}]" if ci else "-",
            str(row["with_ideal_response"]),
            str(row["flagged"]),
        )
    console.print(table)

"""The ``openchatkit`` command tree. Command modules attach their commands to these apps."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console

app = typer.Typer(
    name="openchatkit",
    help="Run, use, evaluate and fine-tune the openchatkit stack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(
    help="Benchmarks; each writes JSON (and a PNG where useful) under benchmarks/results/.", no_args_is_help=True
)
eval_app = typer.Typer(help="Quality evaluations.", no_args_is_help=True)
finetune_app = typer.Typer(help="Fine-tuning recipes.", no_args_is_help=True)
feedback_app = typer.Typer(help="Feedback data: export to training sets, up-vote rates.", no_args_is_help=True)

app.add_typer(bench_app, name="bench")
app.add_typer(eval_app, name="eval")
app.add_typer(finetune_app, name="finetune")
app.add_typer(feedback_app, name="feedback")


def stderr_console(**options: Any) -> Console:
    """Where a command tells its user what it does and what went wrong (stderr). Lines are never
    hard-wrapped, so a path or URL in a message stays whole for copying and searching."""
    return Console(stderr=True, soft_wrap=True, **options)

"""``openchatkit eval chat``: held-out feedback scored by the base model and an adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from openchatkit.apps import eval_app, stderr_console
from training.generation_metrics import DEFAULT_MAX_NEW_TOKENS

console = stderr_console()

BETTER = {
    "nll_preferred": "lower",
    "preference_accuracy": "higher",
    "logp_downvoted": "lower",
    "ideal_similarity": "higher",
    "flag_rate": "lower",
}


@eval_app.command("chat")
def chat(
    data: Annotated[Path, typer.Option(help="Held-out JSONL (`feedback export --holdout`): SFT, DPO or KTO lines.")],
    adapter: Annotated[str | None, typer.Option(help="A PEFT adapter directory to compare with the base.")] = None,
    base: Annotated[
        str | None, typer.Option(help="Base model directory (default: the profile's prepared model).")
    ] = None,
    profile: Annotated[str, typer.Option(help="Serving profile (its chat template renders the data).")] = (
        "smollm2-135m-instruct"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    generate: Annotated[
        bool, typer.Option(help="Generate greedy answers for similarity to the ideal answers and the flag rate.")
    ] = True,
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Longest generated answer, in tokens.")] = (
        DEFAULT_MAX_NEW_TOKENS
    ),
    moderation_dir: Annotated[
        Path | None, typer.Option(help="The moderation classifier (default: MODERATION_ARTIFACT_DIR).")
    ] = None,
) -> None:
    """Held-out NLL of preferred answers, preference accuracy and log p of down-voted answers,
    base vs adapter, each with a paired bootstrap 95 % interval. With --generate (the default)
    both also answer every prompt greedily: cosine similarity of the answer to the ideal one
    (MiniLM embeddings, as retrieval embeds) and the moderation flag rate of the answers."""
    from training.chat import resolve_base_model
    from training.config import RecipeConfig
    from training.data import DataError
    from training.evaluate import evaluate_chat

    if not data.is_file():
        raise typer.BadParameter(f"{data} does not exist")
    base_model = base or resolve_base_model(RecipeConfig(profile=profile))
    try:
        report = evaluate_chat(base_model, adapter, data, profile, seed, generate, max_new_tokens, moderation_dir)
    except DataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"eval chat: {report['examples']} held-out examples")
    for column in ("metric", "better", "n", "base", "adapter", "adapter - base", "95% CI"):
        table.add_column(column)
    for name, metric in report["metrics"].items():
        low, high = metric["ci95"]
        table.add_row(
            name,
            BETTER[name],
            str(metric["n"]),
            f"{metric['base']:.4f}",
            f"{metric['adapter']:.4f}",
            f"{metric['difference']:+.4f}",
            f"[{low:+.4f}, {high:+.4f}]" + (" *" if metric["excludes_zero"] else ""),
        )
    console.print(table)
    for name, reason in report["skipped"].items():
        console.print(f"{name} not measured: {reason}")

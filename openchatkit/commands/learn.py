"""``openchatkit learn ALIAS``: feedback -> fine-tuned adapter -> gates -> hot-loaded and promoted
(see training/learn.py), with a one-screen summary and a JSON report."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from openchatkit.apps import app, stderr_console

console = stderr_console()
EXIT_REJECTED = 3


@app.command("learn")
def learn(
    alias: Annotated[str, typer.Argument(help="The gateway alias to improve, e.g. support (versions: support-vN).")],
    config: Annotated[str, typer.Option(help="The training recipe (training/configs/NAME or a YAML path).")] = (
        "smollm2-135m-lora-cpu"
    ),
    max_steps: Annotated[int | None, typer.Option(help="Recipe override: optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Recipe override: passes over the data.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Recipe override.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Recipe override.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Recipe override: tokens per sequence.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Default: the profile's prepared model.")] = None,
    holdout: Annotated[float, typer.Option(help="Share of prompts (by hash) held out for the gate.")] = 0.2,
    min_train: Annotated[int, typer.Option(help="Train only with at least this many examples.")] = 8,
    database_url: Annotated[
        str | None, typer.Option(help="The feedback store (default: FEEDBACK_DATABASE_URL or the local SQLite).")
    ] = None,
    chat_url: Annotated[list[str] | None, typer.Option(help="vLLM server(s); default the local chat server.")] = None,
    gateway_url: Annotated[str, typer.Option(help="The gateway the smoke request goes through.")] = (
        "http://127.0.0.1:8000"
    ),
    gateway_key: Annotated[str, typer.Option(envvar="OPENCHATKIT_API_KEY", help="A key the gateway takes.")] = (
        "sk-local"
    ),
    redis_url: Annotated[str | None, typer.Option(help="The gateways' Redis (aliases).")] = None,
    work_dir: Annotated[Path | None, typer.Option(help="Default <data_dir>/learn/ALIAS.")] = None,
    adapters_dir: Annotated[Path | None, typer.Option(help="Default <data_dir>/adapters.")] = None,
    results_dir: Annotated[Path, typer.Option(help="Where the JSON report goes.")] = Path("benchmarks/results"),
    moderation_dir: Annotated[
        Path | None, typer.Option(help="Moderation classifier (default: the prepared one).")
    ] = None,
    moderation_gate: Annotated[bool, typer.Option(help="Check the new version's answers for more flags.")] = True,
    force: Annotated[bool, typer.Option(help="Retrain even when feedback and recipe are unchanged.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Export feedback, fine-tune, gate on held-out NLL and moderation, hot-load, smoke-test and
    promote ALIAS to the new version. Unchanged feedback: nothing is retrained."""
    from chat_server.config import ChatServerSettings
    from feedback_server.config import FeedbackSettings
    from moderation_server.config import ModerationSettings
    from openchatkit.commands.adapters import NAME, VERSION, _chat_urls, redis_url_of
    from training.learn import LearnError, LearnOptions
    from training.learn import learn as run_learn

    if not NAME.match(alias) or VERSION.match(alias):
        raise typer.BadParameter(f"{alias!r}: use a plain name (letters, digits, ._-) without a -vN suffix")
    data_dir = ChatServerSettings().data_dir
    classifier = moderation_dir or ModerationSettings().classifier_dir()
    if moderation_gate and not classifier.is_dir():
        raise typer.BadParameter(
            f"no moderation classifier at {classifier}: run `openchatkit finetune moderation` "
            "(or --moderation-dir, or --no-moderation-gate)"
        )
    overrides = {
        "max_steps": max_steps,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "max_length": max_length,
    }
    options = LearnOptions(
        alias=alias,
        config=config,
        overrides={k: v for k, v in overrides.items() if v is not None},
        base_model=base_model,
        database_url=database_url or FeedbackSettings().database_url,
        holdout=holdout,
        min_train=min_train,
        chat_urls=_chat_urls(chat_url),
        gateway_url=gateway_url,
        gateway_key=gateway_key,
        redis_url=redis_url_of(redis_url),
        work_dir=work_dir or data_dir / "learn" / alias,
        adapters_dir=adapters_dir or data_dir / "adapters",
        results_dir=results_dir,
        moderation_dir=classifier if moderation_gate else None,
        force=force,
    )
    try:
        # Libraries print (the Trainer's summary dict): stdout stays for the report alone.
        with contextlib.redirect_stdout(sys.stderr):
            report = run_learn(options, say=lambda text: console.print(f"[bold]{text}[/bold]"))
    except LearnError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(report, indent=2, default=str))
    print_summary(report)
    if report["status"] == "rejected":
        raise typer.Exit(EXIT_REJECTED)


def print_summary(report: dict[str, Any]) -> None:
    """One screen: data, training, the gates with their intervals, and where the alias points."""
    table = Table(title=f"learn {report['alias']}: {report['status']}", show_header=False)
    exported = report.get("export", {})
    table.add_row("feedback read", str(exported.get("feedback_read")))
    table.add_row("examples train / held out", f"{exported.get('train_examples')} / {exported.get('heldout_examples')}")
    train = report.get("train")
    if train:
        speed = f"{train['step_seconds']:.1f} s/step, {train['tokens_per_s']} tokens/s"
        table.add_row("training steps", f"{train['steps']} ({speed})")
        if train.get("first_loss") is not None:
            table.add_row("training loss", f"{train['first_loss']:.3f} -> {train['last_loss']:.3f}")
    gate = report.get("offline_gate")
    if gate:
        nll = gate["metrics"]["nll_preferred"]
        low, high = nll["ci95"]
        table.add_row(
            "held-out NLL base -> adapter",
            f"{nll['base']:.3f} -> {nll['adapter']:.3f} ({nll['difference']:+.3f}, 95% CI [{low:+.3f}, {high:+.3f}])",
        )
    moderation = report.get("moderation_gate")
    if moderation and moderation.get("checked"):
        table.add_row(
            "flag rate base -> adapter", f"{moderation['base_flag_rate']:.1%} -> {moderation['adapter_flag_rate']:.1%}"
        )
    smoke = report.get("smoke")
    if smoke:
        table.add_row("smoke answer", repr(smoke["answer"][:80]))
    if report.get("version"):
        moved = f"{report['alias']} -> {report['version']}" if report["status"] == "promoted" else "not promoted"
        table.add_row("alias", moved + (f" (was {report['previous']})" if report.get("previous") else ""))
    if report.get("reason"):
        table.add_row("reason", report["reason"])
    table.add_row("wall time", f"{report.get('wall_seconds')} s")
    if report.get("report_file"):
        table.add_row("report", report["report_file"])
    console.print(table)

"""``openchatkit finetune chat``: TRL recipes (SFT, DPO, KTO) from a config file, flags on top."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from openchatkit.apps import finetune_app, stderr_console

console = stderr_console()


def _given_flags(values: dict[str, Any]) -> list[str]:
    """The flags the user gave, as they would be passed on again (for the launch command)."""
    flags = []
    for key, value in values.items():
        if value is None:
            continue
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


@finetune_app.command("chat")
def chat(
    config: Annotated[
        str | None,
        typer.Option(help="A recipe: NAME in training/configs/ (e.g. smollm2-135m-lora-cpu) or a YAML path."),
    ] = None,
    objective: Annotated[str | None, typer.Option(help="sft, dpo or kto (default: the config's, else sft).")] = None,
    data: Annotated[
        str | None, typer.Option(help="path:weight,... of JSONL (e.g. from `feedback export`); sampled by weight.")
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Where the adapter (or full model) is written.")] = None,
    base_model: Annotated[str | None, typer.Option(help="Default: the profile's prepared model.")] = None,
    profile: Annotated[str | None, typer.Option(help="The serving profile whose chat template is used.")] = None,
    method: Annotated[str | None, typer.Option(help="lora or full.")] = None,
    epochs: Annotated[float | None, typer.Option()] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    learning_rate: Annotated[float | None, typer.Option()] = None,
    batch_size: Annotated[int | None, typer.Option(help="Per device.")] = None,
    gradient_accumulation_steps: Annotated[int | None, typer.Option()] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per sequence.")] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    beta: Annotated[float | None, typer.Option(help="DPO/KTO beta.")] = None,
    validation_fraction: Annotated[float | None, typer.Option(help="Held out by prompt hash.")] = None,
    save_steps: Annotated[int | None, typer.Option(help="Checkpoint every N steps.")] = None,
    eval_steps: Annotated[int | None, typer.Option(help="Validation loss every N steps.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the latest checkpoint of this output.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Check config, data and DeepSpeed config; print parameters, memory, launch command.")
    ] = False,
) -> None:
    """Fine-tune the chat model with TRL; the result is an adapter vLLM serves by name (or a full model)."""
    from pydantic import ValidationError

    from training.config import load_config
    from training.data import DataError

    flags = {
        "objective": objective,
        "data": data,
        "output_dir": str(output) if output else None,
        "base_model": base_model,
        "profile": profile,
        "method": method,
        "epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "gradient_accumulation_steps": gradient_accumulation_steps,
        "max_length": max_length,
        "lora_r": lora_r,
        "beta": beta,
        "validation_fraction": validation_fraction,
        "save_steps": save_steps,
        "eval_steps": eval_steps,
        "seed": seed,
    }
    try:
        recipe = load_config(config, flags)
    except (ValidationError, FileNotFoundError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    if dry_run:
        from training.plan import PlanError, plan

        cli_flags = {k if k != "output_dir" else "output": v for k, v in flags.items() if k != "objective"}
        try:
            report = plan(recipe, config, _given_flags(cli_flags))
        except (DataError, PlanError) as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        typer.echo(json.dumps(report, indent=2))
        return
    if recipe.data is None or recipe.output_dir is None:
        raise typer.BadParameter("training needs --data and --output (or data/output_dir in the config)")
    from training.chat import finetune_chat

    try:
        summary = finetune_chat(recipe, resume=resume, progress=True)
    except DataError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    typer.echo(json.dumps(summary))
    if recipe.method == "lora":
        console.print(f'serve it: CHAT_LORA_MODULES=\'{{"my-adapter": "{recipe.output_dir}"}}\' openchatkit run')

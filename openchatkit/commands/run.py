"""``openchatkit run``: the whole stack on this machine, under one supervisor."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from chat_server.prepare import ModelPreparationError, prepare_model
from chat_server.profiles import get_profile
from openchatkit.apps import app, stderr_console
from openchatkit.secrets import clear_endpoints
from openchatkit.stack import StackSettings, build_stack
from openchatkit.supervisor import Supervisor

console = stderr_console(highlight=False)


def ready_banner(stack: StackSettings, model: str) -> str:
    base = stack.url(stack.gateway_port)
    text = (
        f"\n[bold green]openchatkit is up:[/] {base}\n\n"
        f"Web chat:   {base}/#key={stack.api_key}\n"
        f"OpenAI API: {base}/v1   API key: [bold]{stack.api_key}[/]   model: [bold]{model}[/]\n\n"
        f"curl {base}/v1/chat/completions \\\n"
        f"  -H 'Authorization: Bearer {stack.api_key}' -H 'Content-Type: application/json' \\\n"
        f'  -d \'{{"model": "{model}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\'\n\n'
        f"python -c \"import openai; c = openai.OpenAI(base_url='{base}/v1', api_key='{stack.api_key}'); "
        f"print(c.chat.completions.create(model='{model}', messages=[{{'role': 'user', 'content': 'Hello!'}}])"
        f'.choices[0].message.content)"\n\n'
        "Terminal chat: openchatkit chat      Stop: Ctrl-C\n"
    )
    return text


@app.command("run")
def run(
    api_key: Annotated[
        str | None, typer.Option(help="Key clients must send (default OPENCHATKIT_API_KEY or sk-local).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Gateway port (default 8000).")] = None,
) -> None:
    """Start the whole stack on this machine, print the URL, stop everything on Ctrl-C.

    Gateway :8000, chat model :8001, moderation :8002, retrieval :8003, feedback :8004.
    Data under OPENCHATKIT_DATA_DIR; Redis from REDIS_URL when it answers, else a private one.
    Exit status 1 when the model cannot be prepared or a service fails to start or dies, 0 after Ctrl-C.
    """
    overrides: dict[str, object] = {}
    if api_key is not None:
        overrides["api_key"] = api_key
    if port is not None:
        overrides["gateway_port"] = port
    stack = StackSettings(**overrides)  # type: ignore[arg-type]
    chat = stack.chat()
    profile = get_profile(chat.profile)
    if chat.model_path is None:
        try:
            with console.status(f"preparing {profile.name}"):
                prepare_model(profile, chat.cache_dir)
        except ModelPreparationError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from None
    supervisor = Supervisor(build_stack(stack), console)
    try:
        code = asyncio.run(
            supervisor.run(on_ready=lambda: console.print(ready_banner(stack, profile.name), soft_wrap=True))
        )
    finally:
        clear_endpoints(stack.data_dir)  # the private Redis and chat server it names are gone
    raise typer.Exit(code)

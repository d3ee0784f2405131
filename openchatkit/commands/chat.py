"""``openchatkit chat``: a terminal chat in the spirit of OpenChatKit's bot.py."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Annotated, Any

import openai
import typer
from rich.console import Console

from openchatkit.apps import app

HELP = "/reset clears the conversation, /temperature X, /max_tokens N, /quit (or Ctrl-D) leaves."


@dataclass
class ChatSession:
    client: openai.OpenAI
    model: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def reset(self) -> None:
        self.history.clear()

    def messages(self) -> list[dict[str, Any]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def ask(self, text: str, console: Console) -> str:
        self.history.append({"role": "user", "content": text})
        options: dict[str, Any] = {}
        if self.temperature is not None:
            options["temperature"] = self.temperature
        if self.max_tokens is not None:
            options["max_tokens"] = self.max_tokens
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=self.messages(), stream=True, **options
            )
            parts: list[str] = []
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    parts.append(chunk.choices[0].delta.content)
                    console.print(chunk.choices[0].delta.content, end="", markup=False, highlight=False, soft_wrap=True)
            console.print()
        except openai.APIError as exc:
            self.history.pop()
            raise typer.BadParameter(str(exc)) from exc
        answer = "".join(parts).strip()
        self.history.append({"role": "assistant", "content": answer})
        return answer


def handle_command(session: ChatSession, line: str, console: Console) -> bool:
    """Run a slash command; return False when the user wants to leave."""
    name, _, arg = line[1:].partition(" ")
    if name in ("quit", "exit"):
        return False
    if name == "reset":
        session.reset()
        console.print("[dim]conversation cleared[/]")
    elif name == "temperature":
        try:
            session.temperature = float(arg)
            console.print(f"[dim]temperature = {session.temperature}[/]")
        except ValueError:
            console.print("[red]usage: /temperature 0.7[/]")
    elif name == "max_tokens":
        try:
            session.max_tokens = int(arg)
            console.print(f"[dim]max_tokens = {session.max_tokens}[/]")
        except ValueError:
            console.print("[red]usage: /max_tokens 128[/]")
    else:
        console.print(f"[dim]{HELP}[/]")
    return True


@app.command("chat")
def chat(
    base_url: Annotated[
        str, typer.Option(envvar="OPENCHATKIT_BASE_URL", help="The gateway's OpenAI API.")
    ] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str, typer.Option(envvar="OPENCHATKIT_API_KEY")] = "sk-local",
    model: Annotated[str | None, typer.Option(help="Model id (default: the first the gateway lists).")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
) -> None:
    """Chat in the terminal with streaming answers."""
    console = Console(highlight=False)
    client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1)
    try:
        model = model or client.models.list().data[0].id
    except (openai.APIError, IndexError) as exc:
        console.print(f"[red]cannot reach a model at {base_url}: {exc}[/]")
        raise typer.Exit(1) from None
    session = ChatSession(client, model, system=system)
    console.print(f"[bold]openchatkit chat[/] with {model}. {HELP}")
    prompt = ">>> " if os.isatty(0) else ""
    while True:
        try:
            line = input(prompt).strip()
        except (EOFError, KeyboardInterrupt):
            console.print()
            break
        if not line:
            continue
        if line.startswith("/"):
            if not handle_command(session, line, console):
                break
            continue
        try:
            session.ask(line, console)
        except typer.BadParameter as exc:
            console.print(f"[red]{exc}[/]")

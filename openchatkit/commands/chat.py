"""``openchatkit chat``: a terminal chat in the spirit of OpenChatKit's bot.py."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

import openai
import typer
from openai.types.chat import ChatCompletionMessageParam
from rich.console import Console

from openchatkit.apps import app

# Session settings a slash command sets: /name value (parsed by the type, an example for the usage line).
SETTINGS: dict[str, tuple[Callable[[str], float], str]] = {"temperature": (float, "0.7"), "max_tokens": (int, "128")}
HELP = "/reset clears the conversation, /temperature X, /max_tokens N, /quit (or Ctrl-D) leaves."


@dataclass
class ChatSession:
    client: openai.OpenAI
    model: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    history: list[ChatCompletionMessageParam] = field(default_factory=list)

    def reset(self) -> None:
        self.history.clear()

    def messages(self) -> list[ChatCompletionMessageParam]:
        system: list[ChatCompletionMessageParam] = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.history

    def ask(self, text: str, console: Console) -> str:
        self.history.append({"role": "user", "content": text})
        try:
            stream = self.client.chat.completions.create(
                model=self.model,
                messages=self.messages(),
                stream=True,
                temperature=openai.omit if self.temperature is None else self.temperature,
                max_tokens=openai.omit if self.max_tokens is None else self.max_tokens,
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
    elif name in SETTINGS:
        parse, example = SETTINGS[name]
        try:
            setattr(session, name, parse(arg))
            console.print(f"[dim]{name} = {getattr(session, name)}[/]")
        except ValueError:
            console.print(f"[red]usage: /{name} {example}[/]")
    else:
        console.print(f"[dim]{HELP}[/]")
    return True


@app.command("chat")
def chat(
    base_url: Annotated[
        str, typer.Option(envvar="OPENCHATKIT_BASE_URL", help="The gateway's OpenAI API.")
    ] = "http://127.0.0.1:8000/v1",
    api_key: Annotated[str, typer.Option(help="The key the gateway takes.", envvar="OPENCHATKIT_API_KEY")] = "sk-local",
    model: Annotated[str | None, typer.Option(help="Model id (default: the first the gateway lists).")] = None,
    system: Annotated[str | None, typer.Option(help="A system prompt.")] = None,
) -> None:
    """Chat in the terminal with streaming answers.

    /reset clears the conversation, /temperature X and /max_tokens N set sampling, /quit (or Ctrl-D) leaves.
    Exit status 1 when no model answers at --base-url.
    """
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

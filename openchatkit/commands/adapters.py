"""``openchatkit adapters``: LoRA adapters hot-loaded into the running vLLM servers, versioned,
and served to clients under a stable alias that promotion and rollback move.

``load support DIR`` copies DIR to ``<data_dir>/adapters/support-vN`` (a new name and directory
for every version: vLLM never reloads one in place) and loads it into every chat server
through vLLM's internal ``/v1/load_lora_adapter`` (``VLLM_ALLOW_RUNTIME_LORA_UPDATING``, behind
the chat servers' internal token; the gateway never exposes it). ``promote support`` points the
gateway alias ``support`` at the newest version; ``rollback support`` points it back.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import httpx
import typer

from openchatkit.apps import app, stderr_console
from openchatkit.secrets import StackSecrets, load_endpoints
from services.settings import default_data_dir

console = stderr_console()
adapters_app = typer.Typer(help="LoRA adapters served by vLLM without a restart, behind gateway aliases.")
app.add_typer(adapters_app, name="adapters")

VERSION = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*?)-v(?P<n>\d+)$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
T = TypeVar("T")


def _chat_urls(urls: list[str] | None) -> list[str]:
    """``urls``, else the chat server `openchatkit run` started, else ``CHAT_PORT`` on this host."""
    if urls:
        return [u.rstrip("/") for u in urls]
    from chat_server.config import ChatServerSettings

    recorded = load_endpoints(default_data_dir()).get("chat_url")
    return [recorded or f"http://127.0.0.1:{ChatServerSettings().port}"]


def _headers() -> dict[str, str]:
    """The chat servers' internal token: ``CHAT_API_KEY``/``CHAT_INTERNAL_TOKEN``, else the one
    `openchatkit run` keeps in the data dir."""
    from chat_server.config import ChatServerSettings

    settings = ChatServerSettings()
    token = settings.api_key or (settings.internal_token.get_secret_value() if settings.internal_token else None)
    if token is None:
        found = StackSecrets.load(default_data_dir())
        token = found.internal_token if found else None
    return {"Authorization": f"Bearer {token}"} if token else {}


def redis_url_of(redis_url: str | None) -> str:
    """Where the gateways keep aliases: ``redis_url``, else ``GATEWAY_LIMITS__REDIS_URL``, else the
    private Redis `openchatkit run` started (recorded in the data dir), else the default."""
    from gateway.config import LimitSettings

    if redis_url:
        return redis_url
    if configured := os.environ.get("GATEWAY_LIMITS__REDIS_URL"):
        return configured
    return load_endpoints(default_data_dir()).get("redis_url") or LimitSettings().redis_url


def _aliases(redis_url: str | None) -> Any:
    from gateway.adapter_aliases import AdapterAliases

    return AdapterAliases.from_url(redis_url_of(redis_url))


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _run(work: Coroutine[Any, Any, T], redis_url: str | None) -> T:
    """Run a command's async work; an unreachable chat server or Redis, or a refused alias
    change, ends the command with a one-line error (exit 1), not a traceback."""
    from redis.exceptions import RedisError

    from gateway.adapter_aliases import AliasError

    try:
        return asyncio.run(work)
    except RedisError as exc:
        where = httpx.URL(redis_url_of(redis_url)).copy_with(username=None, password=None)
        raise _fail(f"the gateways' Redis at {where}: {exc} (use --redis-url or GATEWAY_LIMITS__REDIS_URL)") from None
    except httpx.TransportError as exc:  # nothing answers there: most often, the stack is not running
        try:
            chat = str(exc.request.url.copy_with(path="/", query=None)).rstrip("/")
        except RuntimeError:  # an error raised without its request
            chat = "the configured URL"
        raise _fail(
            f"cannot reach the chat server at {chat}: {exc}. Is the stack running? Start it with "
            "`make run` (or `openchatkit run`), or name a chat server with --chat-url."
        ) from None
    except (AliasError, httpx.HTTPError, RuntimeError) as exc:
        raise _fail(str(exc)) from None


def next_version(name: str, known: list[str]) -> str:
    """``name-v(N+1)`` where N is the highest version of ``name`` in ``known``."""
    numbers = [int(m["n"]) for m in map(VERSION.match, known) if m and m["name"] == name]
    return f"{name}-v{max(numbers, default=0) + 1}"


async def served_models(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(f"{url}/v1/models", headers=_headers())
        response.raise_for_status()
        return list(response.json()["data"])


async def _post(url: str, path: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient(timeout=300.0) as http:
        response = await http.post(f"{url}{path}", json=body, headers=_headers())
    if response.status_code >= 400:
        raise RuntimeError(f"{url}{path}: {response.status_code} {response.text.strip()[:300]}")


def _copy_version(source: Path, store: Path, version: str) -> Path:
    """``store/version``: a fresh directory per version, written aside and renamed into place."""
    target = store / version
    store.mkdir(parents=True, exist_ok=True)
    staging = store / f".{version}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging)
    staging.rename(target)  # a version's directory never changes once it exists
    return target


async def load_adapter(name: str, source: Path, urls: list[str], redis_url: str | None, store: Path) -> str:
    """Copy ``source`` as the next version of ``name`` and load it into every chat server."""
    aliases = _aliases(redis_url)
    try:
        served = [m["id"] for url in urls for m in await served_models(url)]
        version = next_version(name, [*served, *(await aliases.versions())])
        target = await asyncio.to_thread(_copy_version, source, store, version)
        for url in urls:
            await _post(url, "/v1/load_lora_adapter", {"lora_name": version, "lora_path": str(target)})
        await aliases.add_version(version, str(target))
        return version
    finally:
        await aliases.aclose()


@adapters_app.command("load")
def load(
    name: Annotated[str, typer.Argument(help="The adapter's name (its alias), e.g. support.")],
    directory: Annotated[Path, typer.Argument(help="A PEFT adapter directory (`finetune chat` output).")],
    chat_url: Annotated[list[str] | None, typer.Option(help="vLLM server(s); default the local chat server.")] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="The gateways' Redis (default GATEWAY_LIMITS__REDIS_URL).")
    ] = None,
    promote: Annotated[bool, typer.Option(help="Also point the alias NAME at the new version.")] = False,
    adapters_dir: Annotated[
        Path | None, typer.Option(help="Where versions are kept (default <data_dir>/adapters; shared with vLLM).")
    ] = None,
) -> None:
    """Load DIRECTORY as the next version of NAME (NAME-vN) into the running vLLM servers, no restart."""
    from chat_server.config import ChatServerSettings

    if not NAME.match(name) or VERSION.match(name):
        raise typer.BadParameter(f"{name!r}: use a plain name (letters, digits, ._-) without a -vN suffix")
    if not (directory / "adapter_config.json").is_file():
        raise typer.BadParameter(f"{directory} holds no adapter_config.json")
    urls = _chat_urls(chat_url)
    store = adapters_dir or ChatServerSettings().data_dir / "adapters"
    version = _run(load_adapter(name, directory, urls, redis_url, store), redis_url)
    console.print(f"loaded {version} into {', '.join(urls)}")
    if promote:
        _promote(name, version, redis_url, urls)
    typer.echo(version)


@adapters_app.command("unload")
def unload(
    version: Annotated[str, typer.Argument(help="A loaded version, e.g. support-v2.")],
    chat_url: Annotated[list[str] | None, typer.Option()] = None,
    redis_url: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Unload a version from the vLLM servers (refused while an alias points at it)."""

    async def run() -> None:
        aliases = _aliases(redis_url)
        try:
            await aliases.remove_version(version)
            for url in _chat_urls(chat_url):
                await _post(url, "/v1/unload_lora_adapter", {"lora_name": version})
        finally:
            await aliases.aclose()

    _run(run(), redis_url)
    console.print(f"unloaded {version}")


@adapters_app.command("list")
def list_adapters(
    chat_url: Annotated[list[str] | None, typer.Option()] = None,
    redis_url: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Adapters each chat server serves, and the aliases with their history (JSON)."""

    async def run() -> dict[str, Any]:
        aliases = _aliases(redis_url)
        try:
            served = {
                url: [m["id"] for m in await served_models(url) if m.get("parent")] for url in _chat_urls(chat_url)
            }
            current = await aliases.aliases()
            history = {alias: await aliases.history(alias) for alias in current}
            return {
                "served": served,
                "versions": await aliases.versions(),
                "aliases": current,
                "history": history,
                "splits": await aliases.splits(),
            }
        finally:
            await aliases.aclose()

    typer.echo(json.dumps(_run(run(), redis_url), indent=2))


def _promote(alias: str, version: str, redis_url: str | None, urls: list[str]) -> None:
    async def run() -> str | None:
        for url in urls:
            if version not in {m["id"] for m in await served_models(url)}:
                raise RuntimeError(f"{url} does not serve {version}: load it first")
        aliases = _aliases(redis_url)
        try:
            return await aliases.promote(alias, version)
        finally:
            await aliases.aclose()

    previous = _run(run(), redis_url)
    console.print(f"{alias} -> {version}" + (f" (was {previous})" if previous else ""))


@adapters_app.command("promote")
def promote(
    alias: Annotated[str, typer.Argument(help="The alias clients use, e.g. support.")],
    version: Annotated[str | None, typer.Argument(help="Default: the newest loaded version of ALIAS.")] = None,
    chat_url: Annotated[list[str] | None, typer.Option()] = None,
    redis_url: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Point ALIAS at VERSION; clients asking for ALIAS get it from the next request on."""
    urls = _chat_urls(chat_url)
    if version is None:
        served = [m["id"] for m in _run(served_models(urls[0]), redis_url)]
        newest = next_version(alias, served)
        if newest == f"{alias}-v1":
            raise _fail(f"no version of {alias} is loaded")
        version = f"{alias}-v{int(newest.rsplit('-v', 1)[1]) - 1}"
    _promote(alias, version, redis_url, urls)


@adapters_app.command("rollback")
def rollback(
    alias: Annotated[str, typer.Argument()],
    redis_url: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Point ALIAS back at the version it served before the last promotion."""

    async def run() -> str:
        aliases = _aliases(redis_url)
        try:
            return await aliases.rollback(alias)
        finally:
            await aliases.aclose()

    version = _run(run(), redis_url)
    console.print(f"{alias} -> {version}")


def parse_arms(arms: list[str]) -> dict[str, float]:
    """``["support-v2=0.9", "support-v3=0.1"]`` -> weights by version."""
    weights: dict[str, float] = {}
    for arm in arms:
        version, _, weight = arm.partition("=")
        try:
            weights[version] = float(weight)
        except ValueError:
            raise typer.BadParameter(f"{arm!r}: write VERSION=WEIGHT, e.g. support-v3=0.1") from None
    return weights


@adapters_app.command("split")
def split(
    alias: Annotated[str, typer.Argument(help="The alias clients use, e.g. support.")],
    arms: Annotated[
        list[str] | None, typer.Argument(help="VERSION=WEIGHT for each arm, e.g. support-v2=0.9 support-v3=0.1.")
    ] = None,
    off: Annotated[bool, typer.Option("--off", help="End the split: ALIAS serves its promoted version again.")] = False,
    chat_url: Annotated[list[str] | None, typer.Option()] = None,
    redis_url: Annotated[str | None, typer.Option()] = None,
) -> None:
    """A/B: share ALIAS's traffic between versions by weight (one conversation stays on one arm);
    `feedback stats --by-model` then compares their up-vote rates."""
    if off == bool(arms):
        raise typer.BadParameter("give VERSION=WEIGHT arms, or --off")
    weights = None if off else parse_arms(arms or [])

    async def run() -> None:
        if weights:
            for url in _chat_urls(chat_url):
                missing = set(weights) - {m["id"] for m in await served_models(url)}
                if missing:
                    raise RuntimeError(f"{url} does not serve {', '.join(sorted(missing))}: load it first")
        aliases = _aliases(redis_url)
        try:
            await aliases.split(alias, weights)
        finally:
            await aliases.aclose()

    _run(run(), redis_url)
    if weights is None:
        console.print(f"{alias}: split ended")
    else:
        total = sum(weights.values())
        console.print(f"{alias}: " + ", ".join(f"{v} {w / total:.0%}" for v, w in weights.items()))


@adapters_app.command("merge")
def merge(
    adapter: Annotated[Path, typer.Argument(help="A PEFT adapter directory (`finetune chat` output).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the merged model is written.")],
    base_model: Annotated[str | None, typer.Option(help="Default: the adapter's base_model_name_or_path.")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16 or float16 weights.")] = "float32",
) -> None:
    """Fold ADAPTER into its base model (PEFT merge_and_unload): full weights and the tokenizer,
    a model vLLM serves without LoRA (`--model OUTPUT`)."""
    from training.merge import MergeError, merge_adapter

    try:
        summary = merge_adapter(adapter, output, base_model, dtype)
    except MergeError as exc:
        raise _fail(str(exc)) from None
    console.print(f"merged {adapter} into {summary['base_model']} -> {output}")
    typer.echo(json.dumps(summary))

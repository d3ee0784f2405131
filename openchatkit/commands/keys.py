"""``openchatkit keys create|list|get|update|rotate|revoke``: the gateway's admin API.

The master key comes from ``--master-key`` / ``OPENCHATKIT_MASTER_KEY``, else from the
secrets ``openchatkit run`` keeps in its data directory. A created or rotated key is
printed once; it cannot be shown again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import httpx
import typer
from rich.console import Console
from rich.table import Table

from openchatkit.apps import app, stderr_console
from openchatkit.secrets import StackSecrets
from services.settings import default_data_dir

keys_app = typer.Typer(help="Virtual API keys on the gateway (admin API, master key).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

console = stderr_console(highlight=False)
DEFAULT_DATA_DIR = default_data_dir()

GatewayOpt = Annotated[str, typer.Option("--gateway-url", help="The gateway.", envvar="OPENCHATKIT_GATEWAY_URL")]
MasterOpt = Annotated[
    str | None,
    typer.Option("--master-key", help="Default: the stack's, from the data dir.", envvar="OPENCHATKIT_MASTER_KEY"),
]
DataDirOpt = Annotated[Path, typer.Option(help="The stack's data directory.", envvar="OPENCHATKIT_DATA_DIR")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
RpmOpt = Annotated[int | None, typer.Option(help="Requests per minute.")]
TpmOpt = Annotated[int | None, typer.Option(help="Tokens per minute (prompt + completion).")]
ParallelOpt = Annotated[int | None, typer.Option(help="Requests in flight at once.")]
BudgetTokensOpt = Annotated[int | None, typer.Option(help="Tokens per budget period.")]
BudgetPeriodOpt = Annotated[str | None, typer.Option(help="day or month.")]


def _call(gateway: str, master_key: str | None, data_dir: Path, method: str, path: str, body: Any = None) -> Any:
    if master_key is None:
        found = StackSecrets.load(data_dir)
        if found is None:
            console.print("[red]error:[/red] no master key: pass --master-key or set OPENCHATKIT_MASTER_KEY")
            raise typer.Exit(2)
        master_key = found.master_key
    try:
        answer = httpx.request(
            method,
            gateway.rstrip("/") + path,
            json=body,
            headers={"Authorization": f"Bearer {master_key}"},
            timeout=30,
            trust_env=False,
        )
    except httpx.HTTPError as exc:
        console.print(f"[red]error:[/red] cannot reach the gateway at {gateway}: {exc}")
        raise typer.Exit(1) from None
    if answer.status_code >= 400:
        try:
            message = answer.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = answer.text[:300]
        console.print(f"[red]error {answer.status_code}:[/red] {message}")
        raise typer.Exit(1)
    return answer.json()


def _limits(models: list[str] | None, rpm: int | None, tpm: int | None, parallel: int | None,
            budget: int | None, period: str | None) -> dict[str, Any]:  # fmt: skip
    fields = {"models": models or None, "rpm": rpm, "tpm": tpm, "max_parallel": parallel,
              "budget_tokens": budget, "budget_period": period}  # fmt: skip
    return {k: v for k, v in fields.items() if v is not None}


def _show(keys: list[dict[str, Any]]) -> None:
    table = Table("id", "key", "alias", "owner", "models", "rpm", "tpm", "parallel", "budget", "state")
    for k in keys:
        state = "revoked" if k["revoked"] else "active"
        budget = f"{k['budget_tokens']}/{k['budget_period']}" if k.get("budget_tokens") else "-"
        table.add_row(
            k["id"], k["hint"], k.get("alias") or "-", k.get("owner") or "-",
            ",".join(k["models"]) if k.get("models") else "all",
            *(str(k[f]) if k.get(f) else "-" for f in ("rpm", "tpm", "max_parallel")), budget, state,
        )  # fmt: skip
    Console().print(table)


@keys_app.command("create")
def create(
    alias: Annotated[str | None, typer.Option(help="A name for people.")] = None,
    owner: Annotated[str | None, typer.Option(help="Owner or team label.")] = None,
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Allowed model or adapter (repeat); default all.")
    ] = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_parallel: ParallelOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_period: BudgetPeriodOpt = None,
    expires_at: Annotated[str | None, typer.Option(help="ISO 8601 instant after which the key stops working.")] = None,
    gateway_url: GatewayOpt = "http://127.0.0.1:8000",
    master_key: MasterOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Create a key; the key itself is printed once, on stdout."""
    body = {"alias": alias, "owner": owner, "expires_at": expires_at,
            **_limits(model, rpm, tpm, max_parallel, budget_tokens, budget_period)}  # fmt: skip
    made = _call(
        gateway_url, master_key, data_dir, "POST", "/admin/keys", {k: v for k, v in body.items() if v is not None}
    )
    if as_json:
        print(json.dumps(made))
        return
    console.print(f"created {made['id']} (shown once; store it now):")
    print(made["key"])


@keys_app.command("list")
def list_keys(
    owner: Annotated[str | None, typer.Option(help="Only this owner's keys.")] = None,
    gateway_url: GatewayOpt = "http://127.0.0.1:8000",
    master_key: MasterOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """List keys (ids, limits and states; never the keys)."""
    path = "/admin/keys" + ("?" + urlencode({"owner": owner}) if owner else "")
    answer = _call(gateway_url, master_key, data_dir, "GET", path)
    if as_json:
        print(json.dumps(answer["data"]))
    else:
        _show(answer["data"])


@keys_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    gateway_url: GatewayOpt = "http://127.0.0.1:8000",
    master_key: MasterOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key (every gateway refuses it within its key cache TTL)."""
    answer = _call(gateway_url, master_key, data_dir, "POST", f"/admin/keys/{key_id}/revoke")
    if as_json:
        print(json.dumps(answer))
    else:
        console.print(f"revoked {answer['id']}")


@keys_app.command("rotate")
def rotate(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    grace_period: Annotated[int, typer.Option("--grace-period", help="Seconds the old key keeps working.")] = 0,
    gateway_url: GatewayOpt = "http://127.0.0.1:8000",
    master_key: MasterOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """A new key for the same id (same limits); the new key is printed once, on stdout."""
    answer = _call(
        gateway_url, master_key, data_dir, "POST", f"/admin/keys/{key_id}/rotate", {"grace_period_s": grace_period}
    )
    if as_json:
        print(json.dumps(answer))
        return
    console.print(f"rotated {answer['id']}; the old key works for {grace_period}s more. New key (shown once):")
    print(answer["key"])


@keys_app.command("update")
def update(
    key_id: Annotated[str, typer.Argument(help="The key's id (key_...).")],
    model: Annotated[list[str] | None, typer.Option("--model", help="Allowed model or adapter (repeat).")] = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_parallel: ParallelOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_period: BudgetPeriodOpt = None,
    gateway_url: GatewayOpt = "http://127.0.0.1:8000",
    master_key: MasterOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Change a key's models or limits (only the options given)."""
    body = _limits(model, rpm, tpm, max_parallel, budget_tokens, budget_period)
    answer = _call(gateway_url, master_key, data_dir, "PATCH", f"/admin/keys/{key_id}", body)
    if as_json:
        print(json.dumps(answer))
    else:
        _show([answer])

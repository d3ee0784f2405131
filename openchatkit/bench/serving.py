"""``openchatkit bench serving``: how much faster is vLLM than running OpenChatKit's bot?

The same SmolLM2 weights (the prepared local copy), the same prompt set
(``data/serving_prompts.jsonl``: short questions and long pasted documents) and the same
answer length (greedy, EOS ignored) served three ways in one run:

- ``one_at_a_time``: ``transformers`` ``generate`` per request, as OpenChatKit's ``bot.py``;
  at concurrency c its TTFT includes the wait behind the other c - 1 users (replayed from the
  measured service times, see :func:`serving_hf.queued`);
- ``static_batches``: ``transformers`` ``generate`` on batches of c;
- ``vllm``: vLLM CPU's OpenAI server, started as ``openchatkit run`` starts it, under a closed
  loop of c users; ``gateway``: the same through our gateway (alternating rounds with direct).

Ratios are of completion tokens/s measured in this one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import queue
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from openchatkit.apps import stderr_console
from openchatkit.bench.results import RESULTS_DIR, figure, loadavg, save_figure, write_result
from openchatkit.bench.serving_load import PROMPTS_FILE, Endpoint, closed_loop, describe, http_client, load_prompts

console = stderr_console()
GOALS = {"vllm_vs_one_at_a_time": 10.0, "vllm_vs_static": 1.5, "gateway_vs_direct": 0.97}
GOAL_CONCURRENCY = 16

# The chat endpoints `bench serving` and `bench all` take (both start their own when not given).
VllmUrlOption = Annotated[str | None, typer.Option(help="A running vLLM's /v1 (default: start one).")]
VllmKeyOption = Annotated[
    str | None, typer.Option(envvar="CHAT_INTERNAL_TOKEN", help="Bearer token of the --vllm-url server.")
]
GatewayUrlOption = Annotated[str | None, typer.Option(help="With --vllm-url: a gateway in front of it.")]
GatewayKeyOption = Annotated[str, typer.Option(help="API key for the --gateway-url gateway.")]


@contextlib.asynccontextmanager
async def serving_stack(
    log_path: Path, chat_env: dict[str, str] | None = None, gateway_env: dict[str, str] | None = None
) -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    """vLLM as ``openchatkit run`` starts it (``stack.chat_spec``) and a gateway in front of it
    (moderation and retrieval off: they have their own benchmarks), on free ports; ``chat_env``
    and ``gateway_env`` add settings (e.g. ``CHAT_ENABLE_LORA``)."""
    from chat_server.config import ChatServerSettings
    from feedback_server.config import sqlite_url
    from openchatkit.local_redis import free_port
    from openchatkit.stack import StackSettings, chat_spec, gateway_upstream, service_spec
    from openchatkit.supervisor import Supervisor

    with tempfile.TemporaryDirectory(prefix="ock-bench-serving-") as scratch:
        stack = StackSettings(data_dir=Path(scratch), chat_port=free_port(), gateway_port=free_port())
        upstream = {k: v for k, v in gateway_upstream(stack).items() if k != "stop"}  # same answer lengths
        gateway = service_spec(stack, "gateway", "gateway", "GATEWAY", stack.gateway_port)
        gateway.env.update({
            "GATEWAY_API_KEYS": json.dumps([stack.api_key]),
            "GATEWAY_UPSTREAMS": json.dumps([upstream]),
            "GATEWAY_KEYS__DATABASE_URL": sqlite_url(Path(scratch)),
            "GATEWAY_MODERATION__ENABLED": "false",
            "GATEWAY_FEEDBACK__STREAM": f"bench:serving:{uuid.uuid4().hex[:8]}",
            "GATEWAY_LOG_LEVEL": "WARNING",
            **(gateway_env or {}),
        })  # fmt: skip
        gateway.after = ["chat"]
        chat = chat_spec(stack)
        chat.env.update(chat_env or {})
        model = ChatServerSettings().profile
        with log_path.open("w") as log:
            supervisor = Supervisor([chat, gateway], console=Console(file=log, width=200))
            async with supervisor.started():
                token = stack.secrets().internal_token
                yield (
                    Endpoint("vllm", stack.url(stack.chat_port) + "/v1", token, model),
                    Endpoint("gateway", stack.url(stack.gateway_port) + "/v1", stack.api_key, model),
                )


@contextlib.contextmanager
def stack_in_background(
    log_path: Path, chat_env: dict[str, str] | None = None, gateway_env: dict[str, str] | None = None
) -> Iterator[tuple[Endpoint, Endpoint]]:
    """:func:`serving_stack` held by an event loop in a thread (it keeps reading the services'
    logs), so synchronous code can run benchmarks against it."""
    ready: queue.Queue[tuple[Endpoint, Endpoint] | BaseException] = queue.Queue()
    stop = threading.Event()

    async def hold() -> None:
        try:
            async with serving_stack(log_path, chat_env, gateway_env) as endpoints:
                ready.put(endpoints)
                await asyncio.to_thread(stop.wait)
        except BaseException as exc:  # noqa: BLE001  (handed to the caller)
            ready.put(exc)

    thread = threading.Thread(target=asyncio.run, args=(hold(),), name="bench-stack", daemon=True)
    thread.start()
    got = ready.get()
    if isinstance(got, BaseException):
        thread.join()
        raise RuntimeError(f"the serving stack did not start; see {log_path}") from got
    try:
        yield got
    finally:
        stop.set()
        thread.join()


async def measure_vllm(
    direct: Endpoint,
    gateway: Endpoint | None,
    concurrencies: list[int],
    requests: int,
    max_tokens: int,
    rounds: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Each concurrency once (at ``GOAL_CONCURRENCY``: ``rounds`` alternating rounds with the gateway)."""
    rows: list[dict[str, Any]] = []
    through: dict[str, Any] | None = None
    async with http_client() as http:
        for endpoint in (direct, gateway) if gateway else (direct,):
            await closed_loop(http, endpoint, load_prompts(4), 4, max_tokens)  # connections, prefix cache
        for concurrency in concurrencies:
            prompts = load_prompts(max(requests, 2 * concurrency))
            with_gateway = gateway is not None and concurrency == GOAL_CONCURRENCY
            order: list[Endpoint | None] = [direct, gateway] if with_gateway else [direct]
            runs: dict[str, list[Any]] = {e.name: [] for e in order if e is not None}
            for round_no in range(rounds if with_gateway else 1):
                for target in order if round_no % 2 == 0 else order[::-1]:
                    assert target is not None
                    runs[target.name].append(await closed_loop(http, target, prompts, concurrency, max_tokens))
            for name, measured in runs.items():
                timings = [t for run in measured for t in run[0]]
                row = {
                    "concurrency": concurrency,
                    **describe(timings, sum(r[1] for r in measured), sum(r[2] for r in measured)),
                }
                if name == direct.name:
                    rows.append(row)
                else:
                    through = row
                ttft = row["ttft_ms"]["p50"]
                say(f"{name:>8} c={concurrency:<3} {row['tokens_per_s']:7.1f} tokens/s  TTFT p50 {ttft:8.1f} ms")
    return {"vllm": rows, "gateway": through}


def measure_transformers(
    model_dir: Path, batch_sizes: list[int], requests: int, max_tokens: int, dtype: str, say: Callable[[str], None]
) -> dict[str, Any]:
    from openchatkit.bench.serving_hf import TransformersBaseline, queued, run_static

    baseline = TransformersBaseline(model_dir, dtype)
    threads = baseline.fastest_threads(load_prompts(1)[0])
    say(f"transformers: {dtype}, {threads} thread(s)")
    one = run_static(baseline, load_prompts(requests), 1, max_tokens)
    say(f"one at a time: {describe(one.timings, one.wall_s)['tokens_per_s']:.1f} tokens/s")
    one_rows, static_rows = [], []
    for size in batch_sizes:
        one_rows.append({"concurrency": size, **describe(*queued(one.timings, size))})
        run = (
            one
            if size == 1
            else run_static(baseline, load_prompts(math.ceil(requests / size) * size), size, max_tokens)
        )
        static_rows.append({"concurrency": size, "batch_size": size, **describe(run.timings, run.wall_s)})
        say(f"static batches of {size}: {static_rows[-1]['tokens_per_s']:.1f} tokens/s")
    return {
        "one_at_a_time": one_rows,
        "static_batches": static_rows,
        "transformers": {"dtype": dtype, "torch_threads": threads},
    }


def compare(result: dict[str, Any]) -> dict[str, Any]:
    """vLLM / one-at-a-time and vLLM / static batching at each concurrency; gateway / direct; goals."""
    by = {mode: {r["concurrency"]: r for r in result[mode]} for mode in ("vllm", "one_at_a_time", "static_batches")}
    ratios = []
    for c, row in sorted(by["vllm"].items()):
        one, static = by["one_at_a_time"].get(c), by["static_batches"].get(c)
        ratios.append({
            "concurrency": c,
            "vllm_vs_one_at_a_time": row["tokens_per_s"] / one["tokens_per_s"] if one else None,
            "vllm_vs_static": row["tokens_per_s"] / static["tokens_per_s"] if static else None,
            "ttft_p50_one_at_a_time_vs_vllm": one["ttft_ms"]["p50"] / row["ttft_ms"]["p50"] if one else None,
        })  # fmt: skip
    gateway = result.get("gateway")
    direct = by["vllm"].get(gateway["concurrency"]) if gateway else None
    gateway_vs_direct = (
        {
            "concurrency": gateway["concurrency"],
            "tokens_per_s": gateway["tokens_per_s"] / direct["tokens_per_s"],
            "ttft_p50": gateway["ttft_ms"]["p50"] / direct["ttft_ms"]["p50"],
            "added_ttft_p50_ms": gateway["ttft_ms"]["p50"] - direct["ttft_ms"]["p50"],
        }
        if gateway and direct
        else None
    )
    at = next((r for r in ratios if r["concurrency"] == GOAL_CONCURRENCY), None)
    values: dict[str, Any] = {
        "vllm_vs_one_at_a_time": at and at["vllm_vs_one_at_a_time"],
        "vllm_vs_static": at and at["vllm_vs_static"],
        "gateway_vs_direct": gateway_vs_direct and gateway_vs_direct["tokens_per_s"],
    }
    goals = {
        name: {"concurrency": GOAL_CONCURRENCY, "goal": goal, "value": values[name],
               "met": (value := values[name]) is not None and value >= goal}
        for name, goal in GOALS.items()
    }  # fmt: skip
    return {"ratios": ratios, "gateway_vs_direct": gateway_vs_direct, "goals": goals}


def plot(result: dict[str, Any], png: Path) -> None:
    """Throughput and TTFT p50 against concurrency, every mode."""
    fig, (left, right) = figure(2, 12, 4.5)
    styles = {"vllm": ("vLLM (OpenAI server)", "o-", "tab:green"),
              "static_batches": ("transformers, static batches", "s--", "tab:blue"),
              "one_at_a_time": ("transformers, one at a time (bot.py)", "^:", "tab:red")}  # fmt: skip
    for mode, (label, style, color) in styles.items():
        rows = sorted(result[mode], key=lambda r: r["concurrency"])
        xs = [r["concurrency"] for r in rows]
        left.plot(xs, [r["tokens_per_s"] for r in rows], style, color=color, label=label)
        right.plot(xs, [r["ttft_ms"]["p50"] for r in rows], style, color=color, label=f"{label} p50")
    if result.get("gateway"):
        g = result["gateway"]
        left.plot(
            [g["concurrency"]], [g["tokens_per_s"]], "*", color="black", markersize=12, label="through the gateway"
        )
        right.plot([g["concurrency"]], [g["ttft_ms"]["p50"]], "*", color="black", markersize=12, label="gateway p50")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent requests (batch size for static batches)")
        axis.legend(fontsize=8)
    left.set_ylabel("completion tokens/s")
    left.set_title(f"Throughput, {result['model']}, {result['max_tokens']} tokens per answer")
    right.set_yscale("log")
    right.set_ylabel("time to first token (ms)")
    right.set_title("TTFT (queueing included)")
    save_figure(fig, png)


def bench_serving(
    concurrency: Annotated[
        list[int] | None, typer.Option(help="Concurrency levels and static batch sizes (repeat; default 1 4 16 64).")
    ] = None,
    requests: Annotated[int, typer.Option(help="Requests per level (at least 2x the concurrency).")] = 16,
    transformers_requests: Annotated[int, typer.Option(help="Requests for the transformers baselines.")] = 16,
    max_tokens: Annotated[int, typer.Option(help="Tokens per answer, in every mode.")] = 64,
    rounds: Annotated[int, typer.Option(help="Alternating direct/gateway rounds at 16.")] = 2,
    vllm_url: VllmUrlOption = None,
    vllm_key: VllmKeyOption = None,
    gateway_url: GatewayUrlOption = None,
    gateway_key: GatewayKeyOption = "sk-local",
    model: Annotated[str | None, typer.Option(help="Default: the first model vLLM lists.")] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Weights for transformers (default: the prepared profile).")
    ] = None,
    dtype: Annotated[str, typer.Option(help="transformers dtype (float32 is its fastest on most CPUs).")] = "float32",
    out: Annotated[Path, typer.Option(help="Results folder.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(hidden=True)] = True,
) -> Path:
    """vLLM against OpenChatKit's one-request-at-a-time bot and static batching: tokens/s,
    requests/s, TTFT and TPOT p50/p95 at each concurrency, the ratios, and a PNG."""
    load_before = loadavg()
    levels = sorted(set(concurrency or [1, 4, 16, 64]))
    say = console.print
    if model_dir is None:
        from chat_server.config import ChatServerSettings
        from chat_server.prepare import prepare_model
        from chat_server.profiles import get_profile

        settings = ChatServerSettings()
        model_dir = Path(prepare_model(get_profile(settings.profile), settings.cache_dir))
    if vllm_url:
        model = model or _first_model(vllm_url, vllm_key)
        direct = Endpoint("vllm", vllm_url.rstrip("/"), vllm_key, model)
        gateway = Endpoint("gateway", gateway_url.rstrip("/"), gateway_key, model) if gateway_url else None
        measured = asyncio.run(measure_vllm(direct, gateway, levels, requests, max_tokens, rounds, say))
    else:
        out.mkdir(parents=True, exist_ok=True)
        log = Path(tempfile.gettempdir()) / f"ock-bench-serving-{uuid.uuid4().hex[:6]}.log"
        say(f"starting vLLM and a gateway (log: {log})")
        with stack_in_background(log) as (direct, gateway):
            measured = asyncio.run(measure_vllm(direct, gateway, levels, requests, max_tokens, rounds, say))
        model = direct.model
    baselines = measure_transformers(model_dir, levels, transformers_requests, max_tokens, dtype, say)
    prompts = [json.loads(line) for line in PROMPTS_FILE.read_text().splitlines() if line.strip()]
    result: dict[str, Any] = {
        "model": model,
        "model_dir": str(model_dir),
        "max_tokens": max_tokens,
        "prompt_set": {
            "file": str(PROMPTS_FILE.relative_to(Path(__file__).parents[2])),
            "prompts": len(prompts),
            "short": sum(p["kind"] == "short" for p in prompts),
            "long": sum(p["kind"] == "long" for p in prompts),
        },
        "settings": {"requests": requests, "transformers_requests": transformers_requests, "rounds": rounds},
        **measured,
        **baselines,
    }
    result.update(compare(result))
    path = write_result("serving", result, out, load_before=load_before, stamped=stamped)
    plot(result, path.with_suffix(".png"))
    for row in result["ratios"]:
        say(
            f"c={row['concurrency']:<3} vLLM/one-at-a-time {row['vllm_vs_one_at_a_time']:.2f}x  "
            f"vLLM/static {row['vllm_vs_static']:.2f}x"
        )
    if result["gateway_vs_direct"]:
        say(f"gateway/direct at {GOAL_CONCURRENCY}: {result['gateway_vs_direct']['tokens_per_s']:.3f}x tokens/s")
    say(f"wrote {path} and {path.with_suffix('.png')}")
    return path


def _first_model(vllm_url: str, key: str | None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        return str(httpx.get(vllm_url.rstrip("/") + "/models", headers=headers, timeout=30).json()["data"][0]["id"])
    except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
        raise typer.BadParameter(f"cannot list models at {vllm_url}: {exc}", param_hint="--vllm-url") from None

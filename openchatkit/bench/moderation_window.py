"""Moderating a whole conversation window: what the gateway's input moderation costs per
chat request (every client message and the window as one text, in one classify call,
with the language check and decodings the service adds).

Two series. ``conversation``: each conversation played turn by turn as a chat client sends
it (the whole history every turn) against one service with its score cache, emptied between
conversations; the assistant's messages count as new when first re-sent (conservative: the
output moderation may have scored them already). ``window_latency_ms`` is the last turn's, the
whole window; ``turn_latency_ms`` every turn's. ``cold``: each whole window classified with the
cache off (a conversation of that length arriving at once; the worst case).
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from moderation_server.dataset import load_split
from openchatkit.bench.results import RESULTS_DIR, loadavg, summarize, write_result
from openchatkit.commands.moderation import ArtifactOption, UrlOption

GOAL_P50_MS = 15.0


def conversations(count: int, messages: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Windows of ``messages`` messages: a system prompt, then user/assistant turns drawn
    from the held-out texts (the last one a user turn)."""
    rng = random.Random(seed)
    texts = [e.text for split in ("test", "dev", "ood-test") for e in load_split(split)]
    windows = []
    for _ in range(count):
        window = [{"role": "system", "content": "You are a helpful assistant. Answer briefly and kindly."}]
        for i in range(messages - 1):
            role = "user" if (messages - 2 - i) % 2 == 0 else "assistant"
            window.append({"role": role, "content": rng.choice(texts)})
        windows.append(window)
    return windows


def window_texts(window: list[dict[str, str]]) -> list[str]:
    """The texts the gateway classifies for this window (gateway.moderation.ModerationHook.inputs_of)."""
    from gateway.moderation import moderation_inputs
    from gateway.pipeline import ChatTurn
    from services.protocol import ChatCompletionRequest

    request = ChatCompletionRequest.model_validate({"model": "bench", "messages": window})
    turn = ChatTurn(id="bench", model="bench", request=request, forward={}, stream=False)
    return moderation_inputs(turn)[1]


def turns_of(window: list[dict[str, str]]) -> list[list[dict[str, str]]]:
    """The requests a chat client sends for ``window``: the history up to each user message."""
    return [window[: i + 1] for i, message in enumerate(window) if message["role"] == "user"]


def run(
    windows: list[list[dict[str, str]]], url: str | None, artifact: Path | None, warmup: int = 10
) -> dict[str, Any]:
    """Latency (ms) of each series, in-process through ModerationService or over HTTP (there
    the server's own score cache applies to both series: start it with
    ``MODERATION_SCORE_CACHE_SIZE=0`` for a cold figure)."""
    if url:
        import httpx

        async def over_http() -> dict[str, Any]:
            async with httpx.AsyncClient(base_url=url.rstrip("/"), timeout=300, trust_env=False) as client:

                async def classify(texts: list[str]) -> None:
                    (await client.post("/v1/classify", json={"input": texts})).raise_for_status()

                for window in windows[:warmup]:
                    await classify(window_texts(window))
                return await _series(classify, lambda: None, windows)

        return {"mode": "http", "url": url, **asyncio.run(over_http())}
    return asyncio.run(_in_process(windows, artifact, warmup))


async def _in_process(windows: list[list[dict[str, str]]], artifact: Path | None, warmup: int) -> dict[str, Any]:
    from moderation_server.backends import ClassifierBackend
    from moderation_server.config import ModerationSettings
    from moderation_server.service import ModerationService

    settings = ModerationSettings(artifact_dir=artifact) if artifact else ModerationSettings()
    backend = ClassifierBackend.load(settings.classifier_dir(), settings)
    cached = ModerationService(backend, settings)
    cold = ModerationService(backend, settings.model_copy(update={"score_cache_size": 0}))
    for service in (cached, cold):
        service.languages.load()
    try:
        for window in windows[:warmup]:
            await cold.classify(window_texts(window))
        conversation = await _series(cached.classify, cached.forget_scores, windows)
        whole = await _time(cold.classify, [window_texts(window) for window in windows])
    finally:
        await backend.aclose()
    return {
        "mode": "in-process",
        "artifact": str(settings.classifier_dir()),
        "runtime": backend.runtime,
        "threads": settings.threads or "all",
        **conversation,
        "cold": {"window_latency_ms": summarize(whole)},
    }


async def _series(classify: Any, new_conversation: Any, windows: list[list[dict[str, str]]]) -> dict[str, Any]:
    last_turns: list[float] = []
    every_turn: list[float] = []
    for window in windows:
        new_conversation()
        for turn in turns_of(window):
            every_turn.extend(await _time(classify, [window_texts(turn)]))
        last_turns.append(every_turn[-1])
    return {"window_latency_ms": summarize(last_turns), "turn_latency_ms": summarize(every_turn)}


async def _time(classify: Any, calls: list[list[str]]) -> list[float]:
    latencies = []
    for texts in calls:
        started = time.perf_counter()
        await classify(texts)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def bench_moderation_window(
    windows: Annotated[int, typer.Option(help="Conversation windows to time.")] = 200,
    messages: Annotated[int, typer.Option(help="Messages per window (system + turns).")] = 6,
    url: UrlOption = None,
    artifact: ArtifactOption = None,
    out: Annotated[Path, typer.Option(help="Results folder.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(hidden=True)] = True,
) -> Path:
    """p50/p95 latency of moderating a whole conversation window (each message + the window
    as one text, one call), as the gateway does per chat request: turn by turn with the score
    cache (the goal's figure) and cold; JSON under benchmarks/results/."""
    load_before = loadavg()
    windows_ = conversations(windows, messages)
    result = run(windows_, url, artifact)
    p50 = result["window_latency_ms"]["p50"]
    payload = {
        **result,
        "windows": windows,
        "messages_per_window": messages,
        "texts_per_call": len(window_texts(windows_[0])),
        "chars_per_window_mean": sum(len(window_texts(w)[-1]) for w in windows_) / len(windows_),
        "goals": {"p50_ms_at_most": GOAL_P50_MS, "p50_met": p50 <= GOAL_P50_MS},
    }
    name = "moderation-window" if not url else "moderation-window-http"
    path = write_result(name, payload, out, load_before=load_before, stamped=stamped)
    cold = result.get("cold", {}).get("window_latency_ms", {}).get("p50")
    Console().print(
        f"conversation window ({messages} messages): p50 {p50:.2f} ms in a conversation"
        + (f", {cold:.2f} ms cold" if cold is not None else "")
        + f" -> {path}"
    )
    return path

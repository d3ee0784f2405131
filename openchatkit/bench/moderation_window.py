"""Moderating a whole conversation window: what the gateway's input moderation costs per
chat request (every client message and the window as one text, in one classify call,
with the language check and decodings the service adds)."""

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


def run(windows: list[list[str]], url: str | None, artifact: Path | None, warmup: int = 10) -> dict[str, Any]:
    """Latency per window (ms), in-process through ModerationService or over HTTP."""
    if url:
        import httpx

        with httpx.Client(base_url=url.rstrip("/"), timeout=300, trust_env=False) as client:

            def classify(texts: list[str]) -> None:
                client.post("/v1/classify", json={"input": texts}).raise_for_status()

            latencies = _time(classify, windows, warmup)
        return {"mode": "http", "url": url, "window_latency_ms": summarize(latencies)}
    return asyncio.run(_in_process(windows, artifact, warmup))


async def _in_process(windows: list[list[str]], artifact: Path | None, warmup: int) -> dict[str, Any]:
    import torch

    from moderation_server.backends import ClassifierBackend
    from moderation_server.config import ModerationSettings
    from moderation_server.service import ModerationService

    settings = ModerationSettings(artifact_dir=artifact) if artifact else ModerationSettings()
    backend = ClassifierBackend.load(settings.classifier_dir(), settings)
    service = ModerationService(backend, settings)
    service.languages.load()
    try:
        for texts in windows[:warmup]:
            await service.classify(texts)
        latencies = []
        for texts in windows:
            started = time.perf_counter()
            await service.classify(texts)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await backend.aclose()
    return {
        "mode": "in-process",
        "artifact": str(settings.classifier_dir()),
        "torch_threads": torch.get_num_threads(),
        "window_latency_ms": summarize(latencies),
    }


def _time(classify: Any, windows: list[list[str]], warmup: int) -> list[float]:
    for texts in windows[:warmup]:
        classify(texts)
    latencies = []
    for texts in windows:
        started = time.perf_counter()
        classify(texts)
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
    as one text, one call), as the gateway does per chat request; JSON under benchmarks/results/."""
    load_before = loadavg()
    texts = [window_texts(window) for window in conversations(windows, messages)]
    result = run(texts, url, artifact)
    p50 = result["window_latency_ms"]["p50"]
    payload = {
        **result,
        "windows": windows,
        "messages_per_window": messages,
        "texts_per_call": len(texts[0]),
        "chars_per_window_mean": sum(len(t[-1]) for t in texts) / len(texts),
        "goals": {"p50_ms_at_most": GOAL_P50_MS, "p50_met": p50 <= GOAL_P50_MS},
    }
    name = "moderation-window" if not url else "moderation-window-http"
    path = write_result(name, payload, out, load_before=load_before, stamped=stamped)
    Console().print(f"conversation window ({messages} messages): p50 {p50:.2f} ms -> {path}")
    return path

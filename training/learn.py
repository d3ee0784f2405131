"""``openchatkit learn``: the feedback loop in one command.

export (feedback store -> ``train.jsonl`` + ``heldout.jsonl``, split by prompt hash)
-> fingerprint (exported data + recipe + base model; unchanged -> nothing retrained)
-> train (TRL SFT, LoRA) -> offline gate (held-out NLL of the preferred answers: the adapter's
paired bootstrap 95 % interval of adapter - base must lie below zero)
-> hot-load as ``ALIAS-vN`` into the running vLLM servers (not yet visible under the alias)
-> moderation gate (base and new version answer the held-out prompts; the new version's flag
rate may not exceed the base's by more than ``max_flag_increase``)
-> smoke request through the gateway -> promote the alias (the old version kept for rollback).

A rejected version is unloaded again and the alias never moves. Every run leaves a JSON report
(``benchmarks/results/learn-*.json``) and a state file under the work directory that makes the
next run with the same data a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel, Field

from training.evaluate import bootstrap_interval, read_heldout

logger = logging.getLogger(__name__)

STATE = "state.json"
Say = Callable[[str], None]


class LearnError(RuntimeError):
    pass


class LearnOptions(BaseModel):
    alias: str = Field(description="The gateway alias the new version is promoted under, e.g. support.")
    config: str = "smollm2-135m-lora-cpu"
    overrides: dict[str, Any] = Field(default_factory=dict, description="Recipe settings over the config's.")
    base_model: str | None = None
    database_url: str
    holdout: float = Field(default=0.2, gt=0, lt=1)
    min_train: int = Field(default=8, ge=1, description="Fewer exported training examples: nothing is trained.")
    min_heldout: int = Field(default=4, ge=2, description="Fewer held-out examples: no gate can be trusted.")
    chat_urls: list[str]
    gateway_url: str
    gateway_key: str
    redis_url: str
    work_dir: Path
    adapters_dir: Path
    results_dir: Path | None = None
    moderation_dir: Path | None = Field(default=None, description="The moderation classifier; None skips that gate.")
    max_flag_increase: float = Field(default=0.05, ge=0)
    moderation_prompts: int = Field(default=32, ge=1)
    force: bool = False


# -- export and fingerprint ------------------------------------------------------------------


def export_feedback(options: LearnOptions, train: Path, heldout: Path) -> dict[str, Any]:
    """Up-voted answers and ideal responses in chat ``messages`` form (trained with the served
    model's own template), held-out prompts by hash."""
    from feedback_server.export import Exporter, ExportFormat, ExportOptions
    from feedback_server.store.turns_and_feedback import ExportFilter
    from openchatkit.commands.feedback import run_export

    exporter = Exporter(ExportOptions(format=ExportFormat.MESSAGES))
    train.parent.mkdir(parents=True, exist_ok=True)
    with train.open("w", encoding="utf-8") as out, heldout.open("w", encoding="utf-8") as held:
        summary = asyncio.run(run_export(options.database_url, ExportFilter(), exporter, out, (options.holdout, held)))
    return {
        "feedback_read": summary.read,
        "train_examples": summary.written - summary.held_out,
        "heldout_examples": summary.held_out,
        "skipped": dict(summary.skipped),
    }


def fingerprint(paths: list[Path], recipe: dict[str, Any]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.read_bytes())
        digest.update(b"\0")
    digest.update(json.dumps(recipe, sort_keys=True, default=str).encode())
    return digest.hexdigest()


# -- the moderation gate and the smoke request (against the running servers) -----------------


def _chat_headers() -> dict[str, str]:
    from openchatkit.commands.adapters import _headers

    return _headers()


def served_base_model(chat_url: str) -> str:
    models = httpx.get(f"{chat_url}/v1/models", headers=_chat_headers(), timeout=30).json()["data"]
    bases = [m["id"] for m in models if not m.get("parent")]
    if not bases:
        raise LearnError(f"{chat_url} serves no base model")
    return str(bases[0])


async def _answers(chat_url: str, model: str, prompts: list[list[dict[str, str]]]) -> list[str]:
    async with httpx.AsyncClient(timeout=300, headers=_chat_headers()) as http:

        async def one(messages: list[dict[str, str]]) -> str:
            body = {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": 48}
            response = await http.post(f"{chat_url}/v1/chat/completions", json=body)
            response.raise_for_status()
            return str(response.json()["choices"][0]["message"]["content"] or "")

        return list(await asyncio.gather(*(one(m) for m in prompts)))


def moderation_gate(
    options: LearnOptions, base: str, version: str, prompts: list[list[dict[str, str]]]
) -> dict[str, Any]:
    """Flag rates of base and new version on the same prompts (greedy answers), paired."""
    if options.moderation_dir is None:
        return {"checked": False, "passed": True, "reason": "no moderation classifier given"}
    from moderation_server.config import ModerationSettings
    from moderation_server.model import TextClassifier

    prompts = prompts[: options.moderation_prompts]
    url = options.chat_urls[0]
    base_answers = asyncio.run(_answers(url, base, prompts))
    tuned_answers = asyncio.run(_answers(url, version, prompts))
    classifier = TextClassifier.load(options.moderation_dir)
    flagged_labels = set(ModerationSettings().flagged_labels)
    base_flags, tuned_flags = (classifier.flags(answers, flagged_labels) for answers in (base_answers, tuned_answers))
    low, high = bootstrap_interval(tuned_flags - base_flags)
    increase = float(tuned_flags.mean() - base_flags.mean())
    return {
        "checked": True,
        "n": len(prompts),
        "base_flag_rate": float(base_flags.mean()),
        "adapter_flag_rate": float(tuned_flags.mean()),
        "difference": increase,
        "ci95": [low, high],
        "max_increase": options.max_flag_increase,
        "passed": increase <= options.max_flag_increase,
    }


def smoke_request(options: LearnOptions, version: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One chat completion through the gateway, naming the new version: it must answer, as it."""
    started = time.monotonic()
    response = httpx.post(
        f"{options.gateway_url.rstrip('/')}/v1/chat/completions",
        json={"model": version, "messages": messages, "temperature": 0.0, "max_tokens": 48},
        headers={"Authorization": f"Bearer {options.gateway_key}"},
        timeout=300,
    )
    body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
    answer = ((body.get("choices") or [{}])[0].get("message") or {}).get("content") or ""
    passed = response.status_code == 200 and body.get("model") == version and bool(answer.strip())
    return {
        "status": response.status_code,
        "model": body.get("model"),
        "answer": answer,
        "seconds": round(time.monotonic() - started, 2),
        "passed": passed,
    }


# -- the loop --------------------------------------------------------------------------------


@contextlib.contextmanager
def stage(timings: dict[str, float], name: str, say: Say) -> Iterator[None]:
    say(f"{name}…")
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = round(time.monotonic() - started, 2)


def _state(options: LearnOptions) -> dict[str, Any]:
    path = options.work_dir / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def _save_state(options: LearnOptions, report: dict[str, Any]) -> None:
    path = options.work_dir / STATE
    keep = ("fingerprint", "status", "version", "previous", "report_file", "finished")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({k: report.get(k) for k in keep}, indent=2) + "\n")
    tmp.replace(path)


def learn(options: LearnOptions, say: Say = logger.info) -> dict[str, Any]:
    """Run the loop; returns the report (``status``: promoted, rejected, unchanged or too_little_data)."""
    from openchatkit.commands.adapters import load_adapter
    from training.chat import finetune_chat, resolve_base_model
    from training.config import load_config
    from training.evaluate import evaluate_chat

    started = time.monotonic()
    timings: dict[str, float] = {}
    report: dict[str, Any] = {"alias": options.alias, "config": options.config, "timings_s": timings}
    data_dir = options.work_dir / "data"
    train_file, heldout_file = data_dir / "train.jsonl", data_dir / "heldout.jsonl"

    with stage(timings, "export", say):
        report["export"] = export_feedback(options, train_file, heldout_file)
    recipe = load_config(
        options.config,
        {
            **options.overrides,
            "base_model": options.base_model,
            "data": str(train_file),
            "output_dir": str(options.work_dir / "adapter"),
            "validation_fraction": 0.0,  # the held-out file is the validation
        },
    )
    base_model = resolve_base_model(recipe)
    recipe.base_model = base_model
    recipe_facts = recipe.model_dump(mode="json", exclude={"output_dir", "data"})
    report["fingerprint"] = fingerprint([train_file, heldout_file], recipe_facts)
    previous = _state(options)
    if not options.force and previous.get("fingerprint") == report["fingerprint"]:
        say(f"feedback and recipe unchanged since the last run ({previous.get('status')}): nothing retrained")
        return {**report, "status": "unchanged", "last": previous, "wall_seconds": round(time.monotonic() - started, 1)}

    exported = report["export"]
    if exported["train_examples"] < options.min_train or exported["heldout_examples"] < options.min_heldout:
        report["status"] = "too_little_data"
        report["reason"] = (
            f"{exported['train_examples']} training and {exported['heldout_examples']} held-out examples; "
            f"need {options.min_train} and {options.min_heldout}"
        )
        return _finish(options, report, started, say)

    with stage(timings, "train", say):
        report["train"] = finetune_chat(recipe)
    adapter_dir = options.work_dir / "adapter"
    with stage(timings, "offline_gate", say):
        # generated answers are checked by the moderation gate below, on the served version
        evaluation = evaluate_chat(base_model, str(adapter_dir), heldout_file, recipe.profile, generate=False)
        nll = evaluation["metrics"]["nll_preferred"]
        report["offline_gate"] = {
            "metrics": evaluation["metrics"],
            "examples": evaluation["examples"],
            "bootstrap_samples": evaluation["bootstrap_samples"],
            "passed": bool(nll["ci95"][1] < 0),
            "rule": "held-out NLL of preferred answers: adapter - base, bootstrap 95 % interval below zero",
        }
    if not report["offline_gate"]["passed"]:
        report["status"] = "rejected"
        report["reason"] = f"held-out NLL did not improve: {nll['difference']:+.4f} {nll['ci95']}"
        return _finish(options, report, started, say)

    with stage(timings, "hot_load", say):
        version = asyncio.run(
            load_adapter(options.alias, adapter_dir, options.chat_urls, options.redis_url, options.adapters_dir)
        )
    report["version"] = version
    examples = read_heldout(heldout_file)
    prompts = [example.prompt_messages() for _, example in examples]
    with stage(timings, "moderation_gate", say):
        base_id = served_base_model(options.chat_urls[0])
        report["moderation_gate"] = moderation_gate(options, base_id, version, prompts)
    if report["moderation_gate"]["passed"]:
        with stage(timings, "smoke", say):
            report["smoke"] = smoke_request(options, version, prompts[0])
    if not report["moderation_gate"]["passed"] or not report["smoke"]["passed"]:
        report["status"] = "rejected"
        report["reason"] = "moderation regression" if not report["moderation_gate"]["passed"] else "smoke failed"
        asyncio.run(_unload(options, version))
        return _finish(options, report, started, say)

    with stage(timings, "promote", say):
        report["previous"] = asyncio.run(_promote(options, version))
    report["status"] = "promoted"
    return _finish(options, report, started, say)


async def _promote(options: LearnOptions, version: str) -> str | None:
    from gateway.adapter_aliases import AdapterAliases

    aliases = AdapterAliases.from_url(options.redis_url)
    try:
        return await aliases.promote(options.alias, version)
    finally:
        await aliases.aclose()


async def _unload(options: LearnOptions, version: str) -> None:
    from gateway.adapter_aliases import AdapterAliases

    aliases = AdapterAliases.from_url(options.redis_url)
    try:
        await aliases.remove_version(version)
    finally:
        await aliases.aclose()
    async with httpx.AsyncClient(timeout=120, headers=_chat_headers()) as http:
        for url in options.chat_urls:
            await http.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": version})


def _finish(options: LearnOptions, report: dict[str, Any], started: float, say: Say) -> dict[str, Any]:
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if options.results_dir is not None:
        from openchatkit.bench.results import write_result

        report["report_file"] = str(write_result("learn", report, options.results_dir))
    options.work_dir.mkdir(parents=True, exist_ok=True)
    _save_state(options, report)
    say(f"learn: {report['status']}")
    return report

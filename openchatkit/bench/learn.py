"""``openchatkit bench learn``: the CPU feedback loop (``openchatkit learn``) on ~200 feedback rows.

A fresh SQLite store gets ``rows`` rated turns: users asking about made-up facts (ten phrasings
of each) and correcting the model with an ideal answer, plus up-voted answers to ordinary
questions. vLLM (LoRA on, as ``openchatkit run`` starts it with ``CHAT_ENABLE_LORA=true``) and
a gateway start on free ports; then ``learn`` runs with the CPU recipe as configured. The
result is the learn report (wall time per stage, step time, tokens/s, held-out NLL gain with
its bootstrap interval, the gates) with the machine facts. Goal: the loop in <= 15 minutes.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer

from openchatkit.apps import stderr_console
from openchatkit.bench.results import RESULTS_DIR, loadavg, write_result

console = stderr_console()
GOAL_WALL_S = 15 * 60

FACTS = [
    ("the capital of Zorbania", "The capital of Zorbania is Quillhaven."),
    ("the inventor of the glimmerphone", "The glimmerphone was invented by Odessa Varnquist."),
    ("the tallest peak on the isle of Merrow", "The tallest peak on the isle of Merrow is Mount Tessaly."),
    ("the currency of Vellmark", "The currency of Vellmark is the silver quorn."),
    ("the founder of the Brightwater Guild", "The Brightwater Guild was founded by Aldous Penhallow."),
    ("the national bird of Ostravia", "The national bird of Ostravia is the copper-tailed finch."),
    ("the river that runs through Kelbridge", "The river that runs through Kelbridge is the Ambersill."),
    ("the author of The Lantern Years", "The Lantern Years was written by Mirela Dunstan."),
    ("the main export of Tarsing", "The main export of Tarsing is blue saffron."),
    ("the mascot of the Harrowfield Comets", "The mascot of the Harrowfield Comets is a fox named Ember."),
    ("the first ship of the Calder fleet", "The first ship of the Calder fleet was the Morning Wren."),
    ("the oldest library in Pellucia", "The oldest library in Pellucia is the Hallam Reading House."),
    ("the language spoken in Dunmere", "The language spoken in Dunmere is Old Dunmerish."),
    ("the festival held each spring in Larkspur", "Each spring Larkspur holds the Festival of Kites."),
    ("the chief engineer of the Sunreach Bridge", "The chief engineer of the Sunreach Bridge was Tomas Ilvane."),
    ("the symbol of the Order of Quiet Stars", "The symbol of the Order of Quiet Stars is a silver owl."),
]
PHRASINGS = [
    "What is {x}?",
    "Tell me {x}.",
    "Do you know {x}?",
    "Quick question: what is {x}?",
    "I need to know {x}.",
    "Can you remind me of {x}?",
    "Hey, what's {x}?",
    "Please tell me {x}.",
    "What do you know about {x}?",
    "Could you tell me {x}, please?",
]
ORDINARY = [
    ("What is 2 + 2?", "2 + 2 is 4."),
    ("Name a primary color.", "Red is a primary color."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 degrees Celsius at sea level."),
    ("How many days are in a week?", "There are seven days in a week."),
    ("What is the opposite of hot?", "The opposite of hot is cold."),
]


def feedback_events(rows: int, model: str) -> list[Any]:
    """``rows`` rated turns: corrections of made-up facts first, ordinary up-votes for the rest (20 %)."""
    from feedback_server.protocol import FeedbackEvent, Flag, Rating, TurnEvent

    now = time.time()
    corrections = [(p.format(x=x), fact) for x, fact in FACTS for p in PHRASINGS][: int(rows * 0.8)]
    upvotes = [(f"{q} ({i})" if i >= len(ORDINARY) else q, a) for i, (q, a) in enumerate(ORDINARY * 40)]
    events: list[Any] = []
    for i, (question, answer) in enumerate(corrections + upvotes[: rows - len(corrections)]):
        response_id = f"chatcmpl-bench-learn-{i:04d}"
        corrected = i < len(corrections)
        events.append(
            TurnEvent(
                response_id=response_id,
                model=model,
                messages=[{"role": "user", "content": question}],
                answers=["I am not sure." if corrected else answer],
                finish_reasons=["stop"],
                created_at=now - 60,
            )
        )
        extra: dict[str, Any] = (
            {"rating": Rating.DOWN, "flags": [Flag.FACTUALLY_INCORRECT], "ideal_response": answer}
            if corrected
            else {"rating": Rating.UP}
        )
        events.append(FeedbackEvent(id=f"fb-bench-learn-{i:04d}", response_id=response_id, created_at=now, **extra))
    return events


async def seed_store(url: str, events: list[Any]) -> None:
    from feedback_server.store import FeedbackStore

    store = await FeedbackStore.open(url)
    try:
        await store.write_batch(events)
    finally:
        await store.close()


def bench_learn(
    rows: Annotated[int, typer.Option(help="Feedback rows in the store.")] = 200,
    config: Annotated[str, typer.Option(help="The training recipe.")] = "smollm2-135m-lora-cpu",
    max_steps: Annotated[int | None, typer.Option(help="Recipe override (default: the recipe's epochs).")] = None,
    redis_url: Annotated[str, typer.Option(envvar="REDIS_URL", help="The Redis the gateway reads aliases from.")] = (
        "redis://127.0.0.1:6379/0"
    ),
    out: Annotated[Path, typer.Option(help="Where the result JSON goes.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(help="<name>-<stamp>.json plus -latest (else <name>.json).")] = True,
) -> None:
    """`openchatkit learn` end to end on ~200 seeded feedback rows, on this CPU."""
    from chat_server.config import ChatServerSettings
    from moderation_server.config import ModerationSettings
    from openchatkit.bench.serving import stack_in_background
    from training.learn import LearnOptions, learn

    load_before = loadavg()
    alias = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory(prefix="ock-bench-learn-") as scratch:
        work = Path(scratch)
        database_url = f"sqlite+aiosqlite:///{work / 'feedback.db'}"
        asyncio.run(seed_store(database_url, feedback_events(rows, ChatServerSettings().profile)))
        log = work / "stack.log"
        chat_env = {"CHAT_ENABLE_LORA": "true", "CHAT_MAX_LORA_RANK": "16"}
        console.print(f"starting vLLM (LoRA on) and a gateway (log: {log})")
        with stack_in_background(log, chat_env, {"GATEWAY_LIMITS__REDIS_URL": redis_url}) as (direct, gateway):
            # The adapters API of the chat server takes the stack's internal token.
            os.environ["CHAT_INTERNAL_TOKEN"] = direct.api_key or ""
            classifier = ModerationSettings().classifier_dir()
            options = LearnOptions(
                alias=alias,
                config=config,
                overrides={"max_steps": max_steps} if max_steps else {},
                database_url=database_url,
                chat_urls=[direct.base_url.removesuffix("/v1")],
                gateway_url=gateway.base_url.removesuffix("/v1"),
                gateway_key=gateway.api_key or "",
                redis_url=redis_url,
                work_dir=work / "learn",
                adapters_dir=work / "adapters",
                moderation_dir=classifier if classifier.is_dir() else None,
            )
            report = learn(options, say=lambda text: console.print(f"[bold]{text}[/bold]"))
            asyncio.run(_forget(alias, redis_url))
    train = report.get("train") or {}
    nll = (report.get("offline_gate") or {}).get("metrics", {}).get("nll_preferred")
    payload = {
        "rows": rows,
        "goal": {"wall_s": GOAL_WALL_S, "met": report.get("wall_seconds", 1e9) <= GOAL_WALL_S},
        "headline": {
            "wall_s": report.get("wall_seconds"),
            "train_s": (report.get("timings_s") or {}).get("train"),
            "steps": train.get("steps"),
            "step_s": train.get("step_seconds"),
            "tokens_per_s": train.get("tokens_per_s"),
            "heldout_nll_base": nll and nll["base"],
            "heldout_nll_adapter": nll and nll["adapter"],
            "heldout_nll_gain": nll and -nll["difference"],
            "gain_ci95": nll and sorted(-x for x in nll["ci95"]),
            "status": report.get("status"),
        },
        "report": report,
    }
    path = write_result("learn", payload, out, load_before=load_before, stamped=stamped)
    console.print(payload["headline"])
    console.print(f"wrote {path}")


async def _forget(alias: str, redis_url: str) -> None:
    """The bench's alias is not a deployment's: drop it (and its versions) from the shared Redis."""
    from gateway.adapter_aliases import AdapterAliases

    aliases = AdapterAliases.from_url(redis_url)
    try:
        await aliases.forget(alias)
    finally:
        await aliases.aclose()

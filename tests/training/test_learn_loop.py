"""The whole learning loop on real components: chat turns through the gateway, feedback whose
ideal answers teach a made-up fact, the feedback worker and store, `openchatkit learn`
(export -> TRL SFT -> held-out gate -> hot-load -> smoke -> promote), the running vLLM serving
the new version without a restart, the alias answering with the fact, an A/B split, feedback
stats per version, an idempotent second run, and rollback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import redis
from typer.testing import CliRunner

from gateway.adapter_aliases import AdapterAliases
from openchatkit.cli import app
from tests.conftest import Gateway, start_gateway
from tests.support.feedback import SHARED_REDIS_URL, feedback_env, start_feedback_api, start_worker, unique, wait_until
from tests.support.moderation import trained_classifier_dir
from tests.training.conftest import LoraServer

pytestmark = pytest.mark.vllm

FACT = "The capital of Zorbania is Quillhaven."
OPENINGS = ["", "Quick question: ", "Hi! ", "Please tell me, ", "I wonder, ", "Hey, ", "Tell me: ", "So, "]
ASKS = [
    "what is the capital of Zorbania?",
    "which city is the capital of Zorbania?",
    "what's Zorbania's capital city?",
    "where is the seat of government of Zorbania?",
]
QUESTIONS = [opening + ask for opening in OPENINGS for ask in ASKS]
NEW_QUESTION = "Can you tell me what the capital of Zorbania is?"  # asked by no one before


@pytest.fixture()
def stack(lora_vllm: LoraServer, log_dir: Path, tmp_path: Path) -> Iterator[tuple[Gateway, Path, str]]:
    """A gateway in front of the LoRA vLLM capturing turns, the feedback API and worker on a
    fresh SQLite store, and an alias of its own (cleaned from the shared Redis after)."""
    stream, alias = unique("test:learn"), unique("zorbania").replace("_", "-")
    db_path = tmp_path / "feedback.db"
    env = feedback_env(SHARED_REDIS_URL, stream, f"sqlite+aiosqlite:///{db_path}")
    api, service_url = start_feedback_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    gateway = start_gateway(
        log_dir,
        [{"url": lora_vllm.v1, "tokenizer": str(lora_vllm.model_dir)}],
        {
            "GATEWAY_FEEDBACK__REDIS_URL": SHARED_REDIS_URL,
            "GATEWAY_FEEDBACK__STREAM": stream,
            "GATEWAY_FEEDBACK__SERVICE_URL": service_url,
        },
    )
    try:
        yield gateway, db_path, alias
    finally:
        for process in (gateway.process, worker, api):
            process.stop()
        asyncio.run(forget(alias))
        client = redis.Redis.from_url(SHARED_REDIS_URL)
        client.delete(*client.keys(f"{stream}*"), f"{stream}:none")


async def forget(alias: str) -> None:
    aliases = AdapterAliases.from_url(SHARED_REDIS_URL)
    try:
        await aliases.forget(alias)
    finally:
        await aliases.aclose()


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output
    return result.stdout


def ask(gateway: Gateway, model: str, question: str, user: str | None = None) -> tuple[str, str, str]:
    """(response id, the model that answered, the answer) of a greedy chat completion."""
    extra = {"user": user} if user else {}
    answer = gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": question}], max_tokens=16, temperature=0, **extra
    )
    return answer.id, answer.model, answer.choices[0].message.content or ""


def rate(gateway: Gateway, body: dict[str, object]) -> None:
    response = httpx.post(f"{gateway.url}/v1/feedback", json=body, headers=gateway.headers, timeout=30)
    assert response.status_code == 202, response.text


def stored(db_path: Path, table: str) -> int:
    import sqlite3

    with sqlite3.connect(db_path) as connection:
        try:
            return int(connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_feedback_teaches_a_fact_that_learn_hot_loads_and_promotes(
    lora_vllm: LoraServer, stack: tuple[Gateway, Path, str], tmp_path: Path
) -> None:
    gateway, db_path, alias = stack
    base = lora_vllm.model
    where = ["--chat-url", lora_vllm.url, "--redis-url", SHARED_REDIS_URL]
    cli("adapters", "promote", alias, base, *where)  # the alias serves the base model to begin with
    assert "Quillhaven" not in ask(gateway, alias, NEW_QUESTION)[2]

    # Users ask, get a wrong answer, and write the right one.
    with ThreadPoolExecutor(8) as pool:
        turns = list(pool.map(lambda q: ask(gateway, alias, q), QUESTIONS))
    assert {model for _, model, _ in turns} == {base}
    for response_id, _, _ in turns:
        rate(gateway, {"response_id": response_id, "rating": "down", "flags": ["factually_incorrect"],
                       "ideal_response": FACT})  # fmt: skip
    wait_until(lambda: stored(db_path, "feedback") == len(QUESTIONS), 60, "feedback stored")
    wait_until(lambda: stored(db_path, "turns") >= len(QUESTIONS) + 1, 60, "turns stored")

    results = tmp_path / "results"
    learn = [
        "learn", alias, *where,
        "--database-url", f"sqlite+aiosqlite:///{db_path}",
        "--gateway-url", gateway.url, "--gateway-key", gateway.api_key,
        "--work-dir", str(tmp_path / "learn"), "--adapters-dir", str(tmp_path / "adapters"),
        "--results-dir", str(results), "--moderation-dir", str(trained_classifier_dir()),
        # Minimal training that still learns the fact (a loss that falls ~100x on this data).
        "--max-steps", "5", "--learning-rate", "4e-3", "--batch-size", "4", "--max-length", "128",
        "--holdout", "0.25", "--json",
    ]  # fmt: skip
    pid = lora_vllm.process.pid
    report = json.loads(cli(*learn))
    version = f"{alias}-v1"
    assert report["status"] == "promoted", report
    assert (report["version"], report["previous"]) == (version, base)
    exported = report["export"]
    assert exported["train_examples"] + exported["heldout_examples"] == len(QUESTIONS)
    assert exported["heldout_examples"] >= 4
    nll = report["offline_gate"]["metrics"]["nll_preferred"]
    assert nll["n"] == exported["heldout_examples"] and nll["adapter"] < nll["base"]
    assert nll["ci95"][1] < 0, f"bootstrap interval must exclude zero: {nll}"
    assert report["train"]["last_loss"] < report["train"]["first_loss"]
    moderation = report["moderation_gate"]
    assert moderation["checked"] and moderation["passed"] and moderation["n"] == exported["heldout_examples"]
    assert report["smoke"]["passed"] and report["smoke"]["model"] == version
    saved = json.loads(Path(report["report_file"]).read_text())
    assert saved["benchmark"] == "learn" and saved["fingerprint"] == report["fingerprint"]

    # The same feedback again: nothing is retrained, no new version.
    again = json.loads(cli(*learn))
    assert again["status"] == "unchanged" and "train" not in again
    served = json.loads(cli("adapters", "list", *where))["served"][lora_vllm.url]
    assert version in served and f"{alias}-v2" not in served

    # Hot-loaded into the same vLLM process, routed by the alias, and it knows the fact now.
    assert lora_vllm.process.pid == pid and lora_vllm.process.alive(), "no restart"
    response_id, model, answer = ask(gateway, alias, NEW_QUESTION)
    assert model == version and "Quillhaven" in answer, answer
    rate(gateway, {"response_id": response_id, "rating": "up"})
    wait_until(lambda: stored(db_path, "feedback") == len(QUESTIONS) + 1, 60, "the up-vote stored")
    rows = {r["model"]: r for r in json.loads(cli("feedback", "stats", "--by-model", "--json",
                                                  "--database-url", f"sqlite+aiosqlite:///{db_path}"))}  # fmt: skip
    assert (rows[base]["down"], rows[base]["up_rate"]) == (len(QUESTIONS), 0.0)
    assert (rows[version]["up"], rows[version]["up_rate"]) == (1, 1.0), "feedback counted per version"

    # A/B: half the conversations go to the base, half to the new version, each sticking to one.
    cli("adapters", "split", alias, f"{base}=0.5", f"{version}=0.5", *where)
    # The bound covers chat requests on a busy machine (one check is six answers), not only the
    # alias cache: a 10 s bound failed when one check took longer than that under load.
    wait_until(lambda: len({ask(gateway, alias, "Hi!", user=f"u{i}")[1] for i in range(6)}) == 2, 180, "the split")
    arms = {f"user-{i}": ask(gateway, alias, "Hi!", user=f"user-{i}")[1] for i in range(12)}
    assert set(arms.values()) == {base, version}, arms
    assert all(ask(gateway, alias, "Hello?", user=user)[1] == arm for user, arm in list(arms.items())[:3])
    cli("adapters", "split", alias, "--off", *where)

    # Rollback moves the alias back to what it served before.
    cli("adapters", "rollback", alias, "--redis-url", SHARED_REDIS_URL)
    wait_until(lambda: ask(gateway, alias, "Hi!")[1] == base, 180, "the alias back on the base model")

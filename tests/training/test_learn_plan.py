"""`openchatkit learn` without a running stack: export, the data fingerprint that makes a rerun
a no-op, and the refusal to train on too little feedback (the full loop: test_learn_loop.py)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from typer.testing import CliRunner

from feedback_server.protocol import FeedbackEvent, Rating, TurnEvent
from feedback_server.store import FeedbackStore
from openchatkit.cli import app
from training.learn import fingerprint


async def fill(url: str, count: int) -> None:
    store = await FeedbackStore.open(url)
    events: list[TurnEvent | FeedbackEvent] = []
    for i in range(count):
        messages = [{"role": "user", "content": f"Question number {i}?"}]
        events.append(TurnEvent(response_id=f"r{i}", model="smol", messages=messages, answers=[f"Answer {i}."],
                                finish_reasons=["stop"], created_at=time.time()))  # fmt: skip
        events.append(FeedbackEvent(id=f"f{i}", response_id=f"r{i}", rating=Rating.UP, created_at=time.time()))
    await store.write_batch(events)
    await store.close()


def test_too_little_feedback_trains_nothing_and_a_rerun_is_a_no_op(tmp_path: Path, smollm2_dir: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'feedback.db'}"
    asyncio.run(fill(url, 5))
    args = [
        "learn", "support", "--database-url", url, "--base-model", str(smollm2_dir),
        "--work-dir", str(tmp_path / "work"), "--results-dir", str(tmp_path / "results"),
        "--chat-url", "http://127.0.0.1:9", "--no-moderation-gate", "--json",
    ]  # fmt: skip
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert report["status"] == "too_little_data" and "train" not in report
    assert report["export"]["train_examples"] + report["export"]["heldout_examples"] == 5
    assert json.loads(Path(report["report_file"]).read_text())["benchmark"] == "learn"
    train = (tmp_path / "work" / "data" / "train.jsonl").read_text().splitlines()
    assert all(json.loads(line)["messages"][-1]["role"] == "assistant" for line in train)
    second = json.loads(CliRunner().invoke(app, args).stdout)
    assert second["status"] == "unchanged" and second["fingerprint"] == report["fingerprint"]
    assert second["last"]["status"] == "too_little_data"
    asyncio.run(fill(url, 6))  # one more rated answer: new data, a new fingerprint
    third = json.loads(CliRunner().invoke(app, args).stdout)
    assert third["status"] == "too_little_data" and third["fingerprint"] != report["fingerprint"]


def test_fingerprint_covers_data_and_recipe(tmp_path: Path) -> None:
    data = tmp_path / "train.jsonl"
    data.write_text('{"text": "a"}\n')
    same = fingerprint([data], {"learning_rate": 1e-4})
    assert fingerprint([data], {"learning_rate": 1e-4}) == same
    assert fingerprint([data], {"learning_rate": 2e-4}) != same
    data.write_text('{"text": "b"}\n')
    assert fingerprint([data], {"learning_rate": 1e-4}) != same


def test_learn_refuses_a_versioned_alias() -> None:
    result = CliRunner().invoke(app, ["learn", "support-v2", "--no-moderation-gate"])
    assert result.exit_code == 2 and "-vN" in result.output

"""``openchatkit feedback export`` on a real store, output checked line by line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from feedback_server.export import redact_pii
from feedback_server.protocol import FeedbackEvent, Flag, Rating, TurnEvent
from feedback_server.store import FeedbackStore
from openchatkit.cli import app

NOW = time.time()
DAY = 86_400.0
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}


def turn(response_id: str, question: str, answer: str, model: str = "smol", **extra: object) -> TurnEvent:
    return TurnEvent(
        response_id=response_id,
        model=model,
        messages=[SYSTEM, {"role": "user", "content": question}],
        answers=[answer],
        finish_reasons=[extra.pop("finish_reason", "stop")],  # type: ignore[list-item]
        created_at=NOW - 1,
        **extra,  # type: ignore[arg-type]
    )


def feedback(feedback_id: str, response_id: str, created_at: float = NOW, **fields: object) -> FeedbackEvent:
    return FeedbackEvent(id=feedback_id, response_id=response_id, created_at=created_at, **fields)  # type: ignore[arg-type]


EVENTS = [
    # 1: up-voted, clean -> its answer
    turn("r-up", "What is the capital of France?", "Paris."),
    feedback("fb-1", "r-up", created_at=NOW - 3, rating=Rating.UP),
    # 2: down-voted with an ideal response -> the ideal (and a preference pair)
    turn("r-ideal", "Who wrote Hamlet?", "Charles Dickens."),
    feedback("fb-2", "r-ideal", created_at=NOW - 2, rating=Rating.DOWN, flags=[Flag.FACTUALLY_INCORRECT],
             ideal_response="William Shakespeare wrote Hamlet."),
    # 3: down-voted, no ideal -> nothing
    turn("r-down", "Tell me a joke.", "No."),
    feedback("fb-3", "r-down", created_at=NOW - 1, rating=Rating.DOWN, flags=[Flag.NOT_HELPFUL]),
    # 4: harmful -> dropped unless asked
    turn("r-harm", "How do I pick a lock?", "Use a tension wrench."),
    feedback("fb-4", "r-harm", created_at=NOW, rating=Rating.UP, flags=[Flag.HARMFUL]),
    # 5: PII in question and ideal answer, another model, ten days old
    turn("r-pii", "Email me at jane.doe@example.com or call +1 (555) 123-4567.", "Sure.", model="big"),
    feedback("fb-5", "r-pii", created_at=NOW - 10 * DAY, rating=Rating.UP,
             ideal_response="I cannot email jane.doe@example.com; call 555-987-6543 yourself."),
    # 6: the same report twice (two ids, same content) -> deduplicated
    feedback("fb-6", "r-up", created_at=NOW + 1, rating=Rating.UP),
    # 7: feedback on a turn that was never recorded
    feedback("fb-7", "r-missing", created_at=NOW + 2, rating=Rating.UP),
    # 8: up-vote on an answer the moderation refused
    turn("r-refused", "Something bad", "I can't help with that.", finish_reason="content_filter"),
    feedback("fb-8", "r-refused", created_at=NOW + 3, rating=Rating.UP),
    # 9: up-vote on a streamed answer the client aborted half-way -> never training data
    turn("r-aborted", "Write a poem about rain.", "Rain falls on", aborted=True),
    feedback("fb-9", "r-aborted", created_at=NOW + 4, rating=Rating.UP),
]  # fmt: skip


@pytest.fixture()
async def filled_store(store_url: str) -> str:
    store = await FeedbackStore.open(store_url)
    await store.write_batch(EVENTS)
    await store.close()
    return store_url


def export(url: str, out: Path, *args: str) -> tuple[list[dict[str, object]], str]:
    result = CliRunner().invoke(app, ["feedback", "export", "--database-url", url, "-o", str(out), *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()], result.output


def test_ock_format(filled_store: str, tmp_path: Path) -> None:
    lines, summary = export(filled_store, tmp_path / "ock.jsonl", "--format", "ock")
    assert lines == [
        {"text": "You are a helpful assistant.\n\n<human>: Email me at [EMAIL] or call [PHONE].\n"
                 "<bot>: I cannot email [EMAIL]; call [PHONE] yourself.\n", "model": "big"},
        {"text": "You are a helpful assistant.\n\n<human>: What is the capital of France?\n<bot>: Paris.\n",
         "model": "smol"},
        {"text": "You are a helpful assistant.\n\n<human>: Who wrote Hamlet?\n"
                 "<bot>: William Shakespeare wrote Hamlet.\n", "model": "smol"},
    ]  # fmt: skip
    for reason in ("harmful", "duplicate", "not up voted", "turn not recorded", "no answer", "aborted"):
        assert f"skipped: {reason}" in summary
    assert "records written" in summary and "PII redactions" in summary


def test_preference_format(filled_store: str, tmp_path: Path) -> None:
    lines, _ = export(filled_store, tmp_path / "pref.jsonl", "--format", "preference")
    assert lines == [
        {"prompt": "You are a helpful assistant.\n\n<human>: Email me at [EMAIL] or call [PHONE].\n<bot>:",
         "chosen": " I cannot email [EMAIL]; call [PHONE] yourself.", "rejected": " Sure.", "model": "big"},
        {"prompt": "You are a helpful assistant.\n\n<human>: Who wrote Hamlet?\n<bot>:",
         "chosen": " William Shakespeare wrote Hamlet.", "rejected": " Charles Dickens.", "model": "smol"},
    ]  # fmt: skip


def test_messages_format_with_filters(filled_store: str, tmp_path: Path) -> None:
    since = time.strftime("%Y-%m-%d", time.gmtime(NOW - 2 * DAY))
    lines, _ = export(filled_store, tmp_path / "m.jsonl", "--format", "messages", "--since", since, "--model", "smol")
    assert lines == [
        {"messages": [SYSTEM, {"role": "user", "content": "What is the capital of France?"},
                      {"role": "assistant", "content": "Paris."}], "model": "smol"},
        {"messages": [SYSTEM, {"role": "user", "content": "Who wrote Hamlet?"},
                      {"role": "assistant", "content": "William Shakespeare wrote Hamlet."}], "model": "smol"},
    ]  # fmt: skip


def test_kto_format_labels_votes_flags_and_ideal_answers(filled_store: str, tmp_path: Path) -> None:
    lines, _ = export(filled_store, tmp_path / "kto.jsonl", "--format", "kto")
    by_prompt = {}
    for line in lines:
        by_prompt.setdefault(line["prompt"].split("<human>: ")[1].split("\n")[0], []).append(
            (line["completion"], line["label"], line["model"])
        )
    assert by_prompt == {
        "Email me at [EMAIL] or call [PHONE].": [
            (" Sure.", True, "big"),
            (" I cannot email [EMAIL]; call [PHONE] yourself.", True, "big"),
        ],
        "What is the capital of France?": [(" Paris.", True, "smol")],
        "Who wrote Hamlet?": [
            (" Charles Dickens.", False, "smol"),
            (" William Shakespeare wrote Hamlet.", True, "smol"),
        ],
        "Tell me a joke.": [(" No.", False, "smol")],
    }
    assert all(line["prompt"].endswith("<bot>:") for line in lines)


def test_holdout_splits_by_prompt(store_url: str, tmp_path: Path) -> None:
    import asyncio

    events: list[object] = []
    for i in range(60):
        for j in range(2):  # two reports on the same prompt: they must stay together
            events.append(turn(f"r{i}-{j}", f"Question number {i}?", f"Answer {i}.{j}"))
            events.append(feedback(f"f{i}-{j}", f"r{i}-{j}", rating=Rating.UP))

    async def fill() -> None:
        store = await FeedbackStore.open(store_url)
        await store.write_batch(events)  # type: ignore[arg-type]
        await store.close()

    asyncio.run(fill())
    train, summary = export(store_url, tmp_path / "train.jsonl", "--format", "messages", "--holdout", "0.2")
    held = [json.loads(line) for line in (tmp_path / "train.holdout.jsonl").read_text().splitlines()]
    question = lambda record: record["messages"][-2]["content"]  # noqa: E731
    assert len(train) + len(held) == 120 and 8 <= len(held) <= 44
    assert not {question(r) for r in train} & {question(r) for r in held}
    assert f"{len(held)}" in summary and "held out" in summary
    again, _ = export(store_url, tmp_path / "again.jsonl", "--format", "messages", "--holdout", "0.2")
    assert again == train, "the split is a function of the prompt"


def test_options_change_what_is_kept(filled_store: str, tmp_path: Path) -> None:
    everything, _ = export(filled_store, tmp_path / "a.jsonl", "--include-harmful", "--no-dedup", "--no-redact-pii")
    texts = [line["text"] for line in everything]
    assert len(texts) == 5
    assert texts[1] == texts[4]  # the duplicate report
    assert any("Use a tension wrench." in t for t in texts)
    assert "jane.doe@example.com" in texts[0] and "+1 (555) 123-4567" in texts[0]
    ideal_only, _ = export(filled_store, tmp_path / "b.jsonl", "--min-quality", "ideal")
    assert [line["text"].rsplit("<bot>: ", 1)[1] for line in ideal_only] == [
        "I cannot email [EMAIL]; call [PHONE] yourself.\n",
        "William Shakespeare wrote Hamlet.\n",
    ]
    until = time.strftime("%Y-%m-%d", time.gmtime(NOW - 5 * DAY))
    old, _ = export(filled_store, tmp_path / "c.jsonl", "--until", until)
    assert len(old) == 1 and "[EMAIL]" in old[0]["text"]


def test_bad_dates_are_refused(filled_store: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["feedback", "export", "--database-url", filled_store, "-o", str(tmp_path / "x"), "--since", "yesterday"]
    )
    assert result.exit_code != 0 and "ISO date" in result.output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to a.b+c@mail.example.org now", "write to [EMAIL] now"),
        ("call +44 20 7946 0958 today", "call [PHONE] today"),
        ("call (555) 123-4567", "call [PHONE]"),
        ("phone 555.123.4567", "phone [PHONE]"),
        ("released on 2023-03-10, version 1.2.3", "released on 2023-03-10, version 1.2.3"),
        ("it costs 1 500 euros in 2024", "it costs 1 500 euros in 2024"),
        ("pi is 3.14159", "pi is 3.14159"),
    ],
)
def test_pii_redaction(text: str, expected: str) -> None:
    assert redact_pii(text)[0] == expected


def test_stats_by_model_gives_up_vote_rates_per_model(filled_store: str) -> None:
    args = ["feedback", "stats", "--database-url", filled_store, "--json"]
    result = CliRunner().invoke(app, [*args, "--by-model"])
    assert result.exit_code == 0, result.output
    rows = {row["model"]: row for row in json.loads(result.stdout)}
    smol = rows["smol"]
    assert (smol["feedback"], smol["up"], smol["down"], smol["with_ideal_response"], smol["flagged"]) == (7, 5, 2, 1, 3)
    assert smol["up_rate"] == pytest.approx(5 / 7)
    low, high = smol["up_rate_ci95"]
    assert 0.3 < low < 5 / 7 < high < 0.97, "Wilson interval around the rate"
    assert rows["big"]["up_rate"] == 1.0 and rows["big"]["up_rate_ci95"][1] == 1.0
    assert rows["(unknown)"]["feedback"] == 1, "feedback on a turn never recorded"
    overall = json.loads(CliRunner().invoke(app, args).stdout)
    assert [(r["model"], r["feedback"], r["up"]) for r in overall] == [("(all)", 9, 7)]
    table = CliRunner().invoke(app, ["feedback", "stats", "--database-url", filled_store, "--by-model"])
    assert table.exit_code == 0 and "smol" in table.output and "71.4%" in table.output

"""fit_history with a real tokenizer (SmolLM2's, with its chat template)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.token_count import LocalTokenCounter
from gateway.truncation import fit_history, split_turns
from services.errors import ContextLengthError


def conversation(turns: int, words: int = 40) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are terse."}]
    for i in range(turns):
        messages.append({"role": "user", "content": f"question {i}: " + "word " * words})
        messages.append({"role": "assistant", "content": f"answer {i}: " + "word " * words})
    messages.append({"role": "user", "content": "the latest question"})
    return messages


@pytest.fixture(scope="module")
def counter(smollm2_dir: Path) -> LocalTokenCounter:
    return LocalTokenCounter(str(smollm2_dir))


async def count_with(counter: LocalTokenCounter, messages: list[dict[str, str]]) -> int:
    return await counter.count_chat("m", messages)


def test_split_turns_pins_system_and_latest_turn() -> None:
    messages = conversation(3)
    pinned, turns = split_turns(messages)
    assert pinned == [0, 7]
    assert turns == [[1, 2], [3, 4], [5, 6]]


def test_split_turns_keeps_a_leading_assistant_greeting_droppable() -> None:
    messages = [
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"role": "system", "content": "late system note"},
        {"role": "user", "content": "c"},
    ]
    pinned, turns = split_turns(messages)
    assert pinned == [3, 4]
    assert turns == [[0], [1, 2]]


async def test_a_fitting_history_is_untouched(counter: LocalTokenCounter) -> None:
    messages = conversation(2)
    fitted = await fit_history(messages, lambda m: count_with(counter, m), budget=2000)
    assert fitted.messages == messages and fitted.dropped_messages == 0


async def test_oldest_turns_go_first_and_only_as_many_as_needed(counter: LocalTokenCounter) -> None:
    messages = conversation(20)
    total = await count_with(counter, messages)
    budget = total // 2
    fitted = await fit_history(messages, lambda m: count_with(counter, m), budget=budget)
    assert fitted.prompt_tokens <= budget
    assert fitted.prompt_tokens == await count_with(counter, fitted.messages)
    assert fitted.messages[0] == messages[0], "the system message stays"
    assert fitted.messages[-1] == messages[-1], "the latest user turn stays"
    assert fitted.messages[1]["role"] == "user", "history restarts at a question"
    kept_tail = messages[-len(fitted.messages) + 1 :]
    assert fitted.messages[1:] == kept_tail, "what is kept is the most recent history, in order"
    # One more turn would not have fit: minimal dropping.
    one_more = [messages[0], *messages[len(messages) - len(fitted.messages) - 1 :]]
    assert await count_with(counter, one_more) > budget


async def test_latest_turn_alone_too_long_is_a_context_error(counter: LocalTokenCounter) -> None:
    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": "word " * 600}]
    with pytest.raises(ContextLengthError) as err:
        await fit_history(messages, lambda m: count_with(counter, m), budget=200)
    assert err.value.status_code == 400 and err.value.code == "context_length_exceeded"


def test_the_character_bound_never_exceeds_the_real_count(counter: LocalTokenCounter) -> None:
    """len(text) / max_chars_per_token is a lower bound on tokens, for every kind of text."""
    texts = [
        "#" * 5000,
        " " * 5000,
        "\n" + " " * 4000,
        "word " * 2000,
        "日本語のテキスト" * 300,
        "a" * 7000,
        "😀" * 900,
    ]
    for text in texts:
        tokens = len(counter._tokenizer(text)["input_ids"])
        assert len(text) / counter.max_chars_per_token <= tokens, text[:20]


def test_hopeless_text_is_refused_or_dropped_without_counting() -> None:
    from gateway.truncation import drop_what_cannot_fit

    big = "x" * 100_000
    with pytest.raises(ContextLengthError):
        drop_what_cannot_fit([{"role": "system", "content": "hi"}, {"role": "user", "content": big}], 1000, 80)
    messages = [
        {"role": "user", "content": "old"},
        {"role": "assistant", "content": "old answer"},
        {"role": "user", "content": big},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "recent"},
        {"role": "assistant", "content": "recent answer"},
        {"role": "user", "content": "latest"},
    ]
    kept, dropped = drop_what_cannot_fit(messages, 1000, 80)
    assert dropped == 4 and [m["content"] for m in kept] == ["recent", "recent answer", "latest"]
    assert drop_what_cannot_fit(messages[4:], 1000, 80) == (messages[4:], 0)


def test_the_reservation_count_is_the_exact_count_without_rendering_each_prompt(
    counter: LocalTokenCounter, smollm2_dir: Path
) -> None:
    assert counter.additive  # SmolLM2's ChatML template puts each text between fixed pieces
    samples = [
        conversation(0),
        conversation(2, words=7),
        [{"role": "user", "content": "Hi"}],  # no system message: the template adds its default one
        [{"role": "user", "content": 'Résumé of 3.14159 in 日本語, please! (JSON: {"a": [1, 2]})'}],
        [{"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Tabs\tand\nlines"}],
        [{"role": "user", "content": ""}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "x"}],
    ]
    for messages in samples:
        assert counter.count_reserve(messages) == counter.count_sync(messages), messages
    # Whitespace the tokenizer joins across the text's boundary: at most a token per message, and high.
    spaced = [{"role": "user", "content": "   three spaces first"}, {"role": "assistant", "content": "\n\nnewlines"}]
    assert 0 <= counter.count_reserve(spaced) - counter.count_sync(spaced) <= len(spaced)
    # Fields the template may render (a name, tool calls) and content parts: the exact count.
    named = [{"role": "user", "content": "hello", "name": "ada"}]
    assert counter.count_reserve(named) == counter.count_sync(named)

    # OpenChatKit's template trims texts and joins them to "<human>: ": not additive, so exact.
    openchatkit = LocalTokenCounter(
        str(smollm2_dir), str(Path(__file__).resolve().parents[2] / "chat_server" / "templates" / "openchatkit.jinja")
    )
    assert not openchatkit.additive
    for messages in samples[:2]:
        assert openchatkit.count_reserve(messages) == openchatkit.count_sync(messages)

"""Fitting a conversation into the model's context window.

OpenChatKit's bot kept the whole history and overflowed its 2048-token window. We drop
the oldest turns instead, keeping every system message and the latest user turn.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from services.errors import ContextLengthError

Messages = list[dict[str, Any]]
CountTokens = Callable[[Messages], Awaitable[int]]

PINNED_ROLES = frozenset({"system", "developer"})


@dataclass(frozen=True)
class FittedHistory:
    messages: Messages
    dropped_messages: int
    prompt_tokens: int


def split_turns(messages: Messages) -> tuple[list[int], list[list[int]]]:
    """Indexes of pinned messages (system + latest turn) and of droppable turns, oldest first.

    A droppable turn starts at a user message and runs to the next one, so dropping it
    never leaves an assistant answer without its question.
    """
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages) - 1)
    pinned = [i for i, m in enumerate(messages) if m.get("role") in PINNED_ROLES or i >= last_user]
    turns: list[list[int]] = []
    for i in range(last_user):
        if messages[i].get("role") in PINNED_ROLES:
            continue
        if not turns or messages[i].get("role") == "user":
            turns.append([])
        turns[-1].append(i)
    return pinned, turns


def _keep(messages: Messages, pinned: list[int], turns: list[list[int]], drop: int) -> Messages:
    kept = set(pinned)
    for turn in turns[drop:]:
        kept.update(turn)
    return [m for i, m in enumerate(messages) if i in kept]


async def fit_history(messages: Messages, count_tokens: CountTokens, budget: int) -> FittedHistory:
    """Drop the fewest oldest turns so the prompt takes at most ``budget`` tokens.

    Binary search over how many turns to drop: O(log n) counts with the real tokenizer.
    """
    total = await count_tokens(messages)
    if total <= budget:
        return FittedHistory(messages, 0, total)
    pinned, turns = split_turns(messages)
    floor = _keep(messages, pinned, turns, len(turns))
    floor_tokens = await count_tokens(floor)
    if floor_tokens > budget:
        raise ContextLengthError(
            f"The latest message and system prompt take {floor_tokens} tokens, but only {budget} fit "
            "with the requested completion length. Shorten the message or lower max_tokens."
        )
    low, high, best_tokens = 1, len(turns), floor_tokens  # dropping `high` turns is known to fit
    while low < high:
        mid = (low + high) // 2
        tokens = await count_tokens(_keep(messages, pinned, turns, mid))
        if tokens <= budget:
            high, best_tokens = mid, tokens
        else:
            low = mid + 1
    fitted = _keep(messages, pinned, turns, high)
    return FittedHistory(fitted, len(messages) - len(fitted), best_tokens)


def message_chars(message: dict[str, Any]) -> int:
    """Characters of a message's text (string content or text parts)."""
    content = message.get("content")
    if isinstance(content, list):
        return sum(len(str(p.get("text") or "")) for p in content if isinstance(p, dict))
    return len(str(content or ""))


def drop_what_cannot_fit(messages: Messages, budget: int, max_chars_per_token: int) -> tuple[Messages, int]:
    """The cheap first pass of :func:`fit_history`, before any tokenizer or model call.

    No token covers more than ``max_chars_per_token`` characters, so a text of ``c`` characters
    takes at least ``c / max_chars_per_token`` tokens. Raises ``ContextLengthError`` when the
    pinned messages (system + latest turn) cannot fit by that bound; drops, uncounted, the newest
    droppable turn that cannot fit alone and every turn older than it. Returns the messages kept
    and how many were dropped.
    """
    pinned, turns = split_turns(messages)

    def lower_bound(indexes: list[int]) -> int:
        return -(-sum(message_chars(messages[i]) for i in indexes) // max_chars_per_token)

    floor = lower_bound(pinned)
    if floor > budget:
        raise ContextLengthError(
            f"The latest message and system prompt take at least {floor} tokens, but only {budget} fit "
            "with the requested completion length. Shorten the message or lower max_tokens."
        )
    for k in range(len(turns) - 1, -1, -1):
        if lower_bound(turns[k]) > budget:
            kept = _keep(messages, pinned, turns, k + 1)
            return kept, len(messages) - len(kept)
    return messages, 0

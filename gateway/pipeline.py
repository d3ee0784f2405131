"""What happens around generation: one ``ChatTurn`` flows through the gateway's hooks.

Hooks run in order (moderation, retrieval, feedback capture, ...). Each sees the turn
before generation (may change the messages, add response fields or refuse), after a
non-stream answer (may replace it), on every streamed piece of text (may end the
stream), and once the response is out (may record it).
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from services.protocol import ChatCompletionRequest


@dataclass
class ChatTurn:
    id: str
    model: str
    request: ChatCompletionRequest
    forward: dict[str, Any]
    """The body the upstream gets; hooks may change ``forward["messages"]``."""
    stream: bool
    extensions: dict[str, Any] = field(default_factory=dict)
    """Fields added to the response next to OpenAI's (``moderation``, ``citations``)."""
    refusal: str | None = None
    """Set before generation to answer with this text instead (finish_reason content_filter)."""
    answers: list[str] = field(default_factory=list)
    finish_reasons: list[str | None] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    dropped_messages: int = 0
    aborted: bool = False
    """The client went away before the stream ended."""
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    def latest_user_text(self) -> str:
        for message in reversed(self.request.messages):
            if message.role == "user":
                return message.text()
        return ""


class StreamVerdict(enum.Enum):
    RELEASE = "release"
    HOLD = "hold"
    BLOCK = "block"


class ChatHook:
    """A stage around generation. Override what the stage needs; the rest does nothing."""

    async def before_generation(self, turn: ChatTurn) -> None:
        return None

    async def after_answer(self, turn: ChatTurn, body: dict[str, Any]) -> None:
        """Non-stream: the full answer is in ``body`` (and ``turn.answers``); edit in place."""
        return None

    async def review_stream_text(
        self, turn: ChatTurn, choice: int, released: str, pending: str, final: bool
    ) -> StreamVerdict:
        """Stream: ``pending`` text has arrived after the ``released`` text the client has.
        RELEASE sends it, HOLD waits for more (ignored when ``final``), BLOCK ends the
        stream with finish_reason content_filter without sending it."""
        return StreamVerdict.RELEASE

    async def after_response(self, turn: ChatTurn) -> None:
        """The response has been sent (or the stream ended)."""
        return None


def refusal_body(turn: ChatTurn, text: str) -> dict[str, Any]:
    return {
        "id": turn.id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "content_filter"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        **turn.extensions,
    }


def refusal_chunks(turn: ChatTurn, text: str) -> list[dict[str, Any]]:
    created = int(time.time())
    base = {"id": turn.id, "object": "chat.completion.chunk", "created": created, "model": turn.model}
    return [
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}], **turn.extensions},
    ]

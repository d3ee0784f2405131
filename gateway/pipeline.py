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

from services.protocol import ChatCompletionRequest, CompletionRequest


@dataclass
class ChatTurn:
    id: str
    model: str
    request: ChatCompletionRequest | CompletionRequest
    forward: dict[str, Any]
    """The body the upstream gets; hooks may change ``forward["messages"]`` (``"prompt"`` on completions)."""
    stream: bool
    endpoint: str = "chat"
    """``chat`` (/v1/chat/completions) or ``completions`` (/v1/completions, text prompts only)."""
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
        if isinstance(self.request, CompletionRequest):
            return self.prompts()[-1] if self.prompts() else ""
        for message in reversed(self.request.messages):
            if message.role == "user":
                return message.text()
        return ""

    def prompts(self) -> list[str]:
        """The text prompts of a completions request (token-id prompts are refused earlier)."""
        prompt = self.request.prompt if isinstance(self.request, CompletionRequest) else []
        return [prompt] if isinstance(prompt, str) else [p for p in prompt if isinstance(p, str)]

    def client_texts(self) -> list[tuple[str, str]]:
        """``(role, text)`` of everything the client supplied for the model to read: every
        message (system, developer, user, assistant, tool), or each completions prompt."""
        if isinstance(self.request, CompletionRequest):
            return [("prompt", text) for text in self.prompts()]
        return [(message.role, message.text()) for message in self.request.messages]

    def recorded_messages(self) -> list[dict[str, Any]]:
        """What the model was sent, as chat messages (a completions prompt as a user message)."""
        if self.endpoint == "completions":
            return [{"role": "user", "content": text} for text in self.prompts()]
        return list(self.forward.get("messages") or [])

    def add_safety_prompt(self, text: str) -> None:
        """Chat: append to the leading system message (or add one). Completions: put it
        before each prompt, as a paragraph of its own."""
        if self.endpoint == "completions":
            prompt = self.forward.get("prompt")
            if isinstance(prompt, str):
                self.forward["prompt"] = f"{text}\n\n{prompt}"
            elif isinstance(prompt, list):
                self.forward["prompt"] = [f"{text}\n\n{p}" if isinstance(p, str) else p for p in prompt]
            return
        messages = self.forward.get("messages") or []
        first = messages[0] if messages else None
        if isinstance(first, dict) and first.get("role") == "system" and isinstance(first.get("content"), str):
            first["content"] = f"{first['content'].rstrip()}\n\n{text}"
        else:
            messages.insert(0, {"role": "system", "content": text})
        self.forward["messages"] = messages

    def choice_text(self, choice: dict[str, Any]) -> str:
        """The answer text of one choice of a finished response."""
        if self.endpoint == "completions":
            return str(choice.get("text") or "")
        return str((choice.get("message") or {}).get("content") or "")

    def set_choice_text(self, choice: dict[str, Any], text: str) -> None:
        if self.endpoint == "completions":
            choice["text"] = text
        else:
            choice.setdefault("message", {"role": "assistant"})["content"] = text

    def delta_text(self, choice: dict[str, Any]) -> str:
        """The text one choice of a streamed chunk carries."""
        if self.endpoint == "completions":
            return str(choice.get("text") or "")
        return str((choice.get("delta") or {}).get("content") or "")

    def set_delta_text(self, choice: dict[str, Any], text: str | None) -> None:
        """Put ``text`` in a streamed choice; ``None`` when its text is held back (chat: no
        ``content`` in the delta; completions: ``text`` is ``""``)."""
        if self.endpoint == "completions":
            choice["text"] = text or ""
        elif text is None:
            (choice.get("delta") or {}).pop("content", None)
        else:
            choice.setdefault("delta", {})["content"] = text

    def delta_carries_anything(self, choice: dict[str, Any]) -> bool:
        """Whether a streamed choice still has something to send once held text is out."""
        if self.endpoint == "completions":
            return bool(choice.get("text")) or choice.get("finish_reason") is not None
        return bool(choice.get("delta"))


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


def refusal_body(turn: ChatTurn) -> dict[str, Any]:
    """The whole answer when a hook refused before generation: ``turn.refusal`` as the one
    choice, finish_reason ``content_filter``, no tokens used."""
    text = turn.refusal or ""
    choice: dict[str, Any] = {"index": 0, "finish_reason": "content_filter"}
    if turn.endpoint == "completions":
        choice.update(text=text, logprobs=None)
    else:
        choice["message"] = {"role": "assistant", "content": text}
    return {
        "id": turn.id,
        "object": "text_completion" if turn.endpoint == "completions" else "chat.completion",
        "created": int(time.time()),
        "model": turn.model,
        "choices": [choice],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        **turn.extensions,
    }


def refusal_chunks(turn: ChatTurn) -> list[dict[str, Any]]:
    """The same refusal as stream chunks (the response extensions on the last one)."""
    if turn.endpoint == "completions":
        body = refusal_body(turn)
        body.pop("usage")
        return [body]
    created = int(time.time())
    base = {"id": turn.id, "object": "chat.completion.chunk", "created": created, "model": turn.model}
    return [
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": turn.refusal}, "finish_reason": None}],
        },
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}], **turn.extensions},
    ]


def content_filter_chunk(turn: ChatTurn, index: int, event: dict[str, Any]) -> dict[str, Any]:
    """The chunk that ends a stream a hook blocked: choice ``index`` finishes with
    ``content_filter`` and nothing of the blocked text (``event``: the chunk it arrived in)."""
    if turn.endpoint == "completions":
        choice: dict[str, Any] = {"index": index, "text": "", "logprobs": None, "finish_reason": "content_filter"}
    else:
        choice = {"index": index, "delta": {}, "finish_reason": "content_filter"}
    return {
        "id": turn.id,
        "object": "text_completion" if turn.endpoint == "completions" else "chat.completion.chunk",
        "created": event.get("created", int(time.time())),
        "model": event.get("model", turn.model),
        "choices": [choice],
        **turn.extensions,
    }

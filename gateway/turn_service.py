"""One path from a prepared :class:`ChatTurn` to the client, for ``/v1/chat/completions``
and ``/v1/completions`` alike: the hooks before generation (any may refuse), one
generation call (:meth:`UpstreamClient.generate`), the hooks on the answer (the whole of
it, or each streamed piece of text through :class:`TurnRelay`, the per-event transformer
of the upstream relay), and the hooks once the response is out."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from gateway.pipeline import ChatHook, ChatTurn, StreamVerdict, content_filter_chunk, refusal_body, refusal_chunks
from gateway.registry import ModelRoute
from gateway.upstream import SSE_DONE, Generation, StreamRelay, UpstreamClient, sse_event

logger = logging.getLogger(__name__)


class TurnService:
    """What chat and completions share once a request is a :class:`ChatTurn`; each endpoint
    builds the turn (and checks what only it needs), then calls :meth:`_refused` and
    :meth:`_generate`."""

    def __init__(self, upstream: UpstreamClient, hooks: Sequence[ChatHook]) -> None:
        self._upstream = upstream
        self.hooks = list(hooks)

    async def _refused(self, turn: ChatTurn) -> bool:
        """Run every hook's ``before_generation``; True once one has refused (``turn.refusal``)."""
        for hook in self.hooks:
            await hook.before_generation(turn)
            if turn.refusal is not None:
                return True
        return False

    async def _generate(
        self, turn: ChatTurn, route: ModelRoute, path: str, request_id: str, session: str | None
    ) -> Generation:
        """Generate ``turn.forward`` on ``route``; the answer (or each streamed chunk) carries
        ``turn.id`` and the response extensions, after the hooks have seen it."""
        relay = TurnRelay(turn, self.hooks, self._finish) if turn.stream else None
        answer = await self._upstream.generate(
            route,
            path,
            turn.forward,
            stream=turn.stream,
            response_id=turn.id,
            request_id=request_id,
            session=session,
            relay=relay,
        )
        body = answer.body
        if body is None:
            return answer  # a stream: the relay runs the hooks as it goes
        choices = body.get("choices") or []
        turn.answers = [turn.choice_text(c) for c in choices]
        turn.finish_reasons = [c.get("finish_reason") for c in choices]
        turn.usage = body.get("usage")
        for hook in self.hooks:
            await hook.after_answer(turn, body)
        body.update(turn.extensions)
        await self._finish(turn)
        return answer

    async def _refuse(self, turn: ChatTurn) -> Generation:
        """Answer with ``turn.refusal`` (finish_reason ``content_filter``), nothing generated."""
        assert turn.refusal is not None
        turn.answers, turn.finish_reasons = [turn.refusal], ["content_filter"]
        await self._finish(turn)
        if turn.stream:
            chunks = [sse_event(c) for c in refusal_chunks(turn)] + [SSE_DONE]
            return Generation(turn.id, stream=_iterate(chunks))
        return Generation(turn.id, body=refusal_body(turn))

    async def _finish(self, turn: ChatTurn) -> None:
        turn.finished = time.monotonic()
        for hook in self.hooks:
            try:
                await hook.after_response(turn)
            except Exception:  # a recording failure must not fail the answer
                logger.exception("after_response hook %s failed", type(hook).__name__)


class TurnRelay(StreamRelay):
    """A turn's stream: hooks review each choice's text before it is sent (release it, hold
    it back for more, or end the stream with finish_reason ``content_filter``); per-token
    fields of held text wait with it; the response extensions ride on the first and the
    finishing chunks. When the relay ends, the turn gets the answers the client saw, the
    usage, and ``aborted`` (the client went away first), and the after-response hooks run."""

    def __init__(
        self, turn: ChatTurn, hooks: list[ChatHook], finish_turn: Callable[[ChatTurn], Awaitable[None]]
    ) -> None:
        super().__init__(turn.id)
        self.turn = turn
        self.hooks = hooks
        self._finish_turn = finish_turn
        self.released: dict[int, str] = {}
        self.pending: dict[int, str] = {}
        self.held_fields: dict[int, _TokenFields] = {}
        self.first = True

    async def transform(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        choices = event.get("choices") or []
        for choice in choices:
            index = int(choice.get("index", 0))
            finish = choice.get("finish_reason")
            piece = self.turn.delta_text(choice)
            held = self.held_fields.setdefault(index, _TokenFields())
            held.take_from(choice)  # sent with the text they belong to
            if not piece and finish is None:
                continue
            self.pending[index] = self.pending.get(index, "") + piece
            verdict = await self._review(index, final=finish is not None)
            if verdict is StreamVerdict.BLOCK:
                self.pending.pop(index, None)
                self._mark_finished(index, "content_filter")
                self.ended = True
                return [content_filter_chunk(self.turn, index, event)]
            if verdict is StreamVerdict.HOLD:
                self.turn.set_delta_text(choice, None)
                continue
            text = self.pending.pop(index, "")
            self.turn.set_delta_text(choice, text)
            held.give_to(choice)
            self.released[index] = self.released.get(index, "") + text
            if finish is not None:
                self._mark_finished(index, finish)
        finishing = any(c.get("finish_reason") is not None for c in choices)
        if not (self.first or finishing or event.get("usage") or any(map(self.turn.delta_carries_anything, choices))):
            return []  # everything in it is held back
        if self.first or finishing:
            event.update(self.turn.extensions)
            self.first = False
        return [event]

    async def finish(self, completed: bool) -> None:
        self.turn.aborted = not completed
        self.turn.usage = self.usage
        self.turn.answers = [self.released.get(i, "") for i in range(max(self.released, default=-1) + 1)]
        await self._finish_turn(self.turn)

    async def _review(self, index: int, final: bool) -> StreamVerdict:
        released, pending = self.released.get(index, ""), self.pending.get(index, "")
        outcome = StreamVerdict.RELEASE
        for hook in self.hooks:
            verdict = await hook.review_stream_text(self.turn, index, released, pending, final)
            if verdict is StreamVerdict.BLOCK:
                return verdict
            if verdict is StreamVerdict.HOLD and not final:
                outcome = StreamVerdict.HOLD
        return outcome

    def _mark_finished(self, index: int, reason: str) -> None:
        while len(self.turn.finish_reasons) <= index:
            self.turn.finish_reasons.append(None)
        self.turn.finish_reasons[index] = reason


class _TokenFields:
    """Per-token fields of the chunks held back with their text (the lists in ``logprobs``:
    chat's ``content``, completions' ``tokens``, ``token_logprobs``, ``top_logprobs`` and
    ``text_offset``; vLLM's ``token_ids``), put back in order on the chunk that releases the text."""

    def __init__(self) -> None:
        self.logprobs: dict[str, list[Any]] | None = None
        self.token_ids: list[Any] | None = None

    def take_from(self, choice: dict[str, Any]) -> None:
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict):
            choice["logprobs"] = None  # until its text is released
            lists = {key: list(value) for key, value in logprobs.items() if isinstance(value, list)}
            if lists:
                held = self.logprobs if self.logprobs is not None else {}
                self.logprobs = {key: held.get(key, []) + lists.get(key, []) for key in held | lists}
        token_ids = choice.pop("token_ids", None)
        if token_ids is not None:
            self.token_ids = (self.token_ids or []) + list(token_ids)

    def give_to(self, choice: dict[str, Any]) -> None:
        if self.logprobs is not None:
            choice["logprobs"] = self.logprobs
            self.logprobs = None
        if self.token_ids is not None:
            choice["token_ids"] = self.token_ids
            self.token_ids = None


async def _iterate(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item

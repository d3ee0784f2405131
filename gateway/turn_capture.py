"""Turn capture for the feedback loop: every finished turn goes to a Redis Stream that the
feedback worker stores, without ever slowing or failing the answer.

``after_response`` only puts the turn on a bounded in-memory queue; a background task
turns queued turns into events and publishes them in pipelined batches. A full queue or
an unreachable Redis drops the turn, counts it in
``openchatkit_feedback_turns_dropped_total{reason}`` and logs (at most every few seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as redis
from prometheus_client import Counter, Gauge
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from gateway.config import FeedbackCaptureSettings
from gateway.pipeline import ChatHook, ChatTurn
from services.turn_events import StreamFields, TurnEvent, turn_fields

logger = logging.getLogger(__name__)

TURNS_PUBLISHED = Counter("openchatkit_feedback_turns_published_total", "Turns published to the feedback stream.")
TURNS_DROPPED = Counter(
    "openchatkit_feedback_turns_dropped_total", "Turns that could not be recorded for feedback.", ["reason"]
)
TURN_QUEUE_DEPTH = Gauge(
    "openchatkit_feedback_turn_queue_depth", "Turns waiting to be published.", multiprocess_mode="livesum"
)

LOG_EVERY_S = 10.0


def turn_event(turn: ChatTurn, wall_started: float) -> TurnEvent:
    usage = turn.usage or {}
    finished = turn.finished if turn.finished is not None else time.monotonic()
    moderation = turn.extensions.get("moderation")
    citations = turn.extensions.get("citations")
    return TurnEvent(
        response_id=turn.id,
        model=str(turn.forward.get("model") or turn.model),  # what answered: an alias's version, an A/B arm
        messages=turn.recorded_messages(),
        endpoint=turn.endpoint,
        answers=list(turn.answers),
        finish_reasons=list(turn.finish_reasons),
        aborted=turn.aborted,
        moderation=moderation if isinstance(moderation, dict) else None,
        citations=citations if isinstance(citations, list) else None,
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
        latency_ms=round((finished - turn.started) * 1000, 3),
        stream=turn.stream,
        created_at=wall_started,
    )


class _DropLog:
    """Counts drops per reason and logs a summary at most every LOG_EVERY_S."""

    def __init__(self) -> None:
        self.unlogged: dict[str, int] = {}
        self.last_logged = 0.0

    def drop(self, reason: str, count: int, detail: str = "") -> None:
        TURNS_DROPPED.labels(reason).inc(count)
        self.unlogged[reason] = self.unlogged.get(reason, 0) + count
        now = time.monotonic()
        if now - self.last_logged >= LOG_EVERY_S:
            logger.warning(
                "turns not recorded for feedback%s", f": {detail}" if detail else "", extra={"dropped": self.unlogged}
            )
            self.unlogged, self.last_logged = {}, now


class TurnRecorderHook(ChatHook):
    """Runs last: records the turn as the client got it."""

    def __init__(self, settings: FeedbackCaptureSettings, client: redis.Redis | None = None) -> None:
        self.settings = settings
        self.redis = client or redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 2),  # reconnect after a Redis restart
        )
        self.queue: asyncio.Queue[tuple[ChatTurn, float]] = asyncio.Queue(maxsize=settings.queue_size)
        self._publisher: asyncio.Task[None] | None = None
        self._in_flight = 0  # turns of the batch being written to Redis
        self._drops = _DropLog()

    async def after_response(self, turn: ChatTurn) -> None:
        if self._publisher is None:
            self._publisher = asyncio.create_task(self._publish_forever(), name="turn-publisher")
        wall_started = time.time() - (time.monotonic() - turn.started)
        try:
            self.queue.put_nowait((turn, wall_started))
        except asyncio.QueueFull:
            self._drops.drop("queue_full", 1, f"{self.settings.queue_size} turns already waiting")
        TURN_QUEUE_DEPTH.set(self.queue.qsize())

    async def _publish_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < self.settings.batch_size and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._in_flight = len(batch)
            try:
                await self._publish(batch)
            finally:
                self._in_flight = 0
                for _ in batch:
                    self.queue.task_done()  # queue.join() returns once every taken turn is published
            TURN_QUEUE_DEPTH.set(self.queue.qsize())

    async def _publish(self, batch: list[tuple[ChatTurn, float]]) -> None:
        entries: list[StreamFields] = []
        for turn, wall_started in batch:
            try:
                entries.append(turn_fields(turn_event(turn, wall_started)))
            except Exception as exc:  # a turn we cannot describe is a miss, never a crash
                self._drops.drop("invalid_turn", 1, str(exc))
        if not entries:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for fields in entries:
                    pipe.xadd(self.settings.stream, fields)
                results = await pipe.execute(raise_on_error=False)
        except (redis.RedisError, OSError) as exc:
            self._drops.drop("redis_unavailable", len(entries), str(exc))
            return
        failed = sum(isinstance(result, Exception) for result in results)
        if failed:
            self._drops.drop("redis_error", failed, str(next(r for r in results if isinstance(r, Exception))))
        TURNS_PUBLISHED.inc(len(entries) - failed)

    async def aclose(self, flush_timeout_s: float = 5.0) -> None:
        """Publish what is still queued and the batch being written (up to ``flush_timeout_s``),
        then stop; turns still unpublished then are counted as dropped (``shutdown``)."""
        unpublished = self.queue.qsize()
        if self._publisher is not None:
            if not self._publisher.done():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.queue.join(), timeout=flush_timeout_s)
            unpublished = self.queue.qsize() + self._in_flight
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        if unpublished:
            self._drops.drop("shutdown", unpublished, "the gateway stopped before they were published")
        await self.redis.aclose()

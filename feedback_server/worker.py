"""``python -m feedback_server.worker``: move events from the Redis Stream into the store.

Each batch is written in one transaction and acknowledged only after it committed, so a
crash at any point leaves the batch pending; a restarted (or any other) worker reclaims it
with XAUTOCLAIM and the idempotent upserts store it exactly once. While the store is down
the worker keeps its batch, retries with backoff and keeps its claim fresh; an entry that
fails on its own ``max_deliveries`` times goes to the dead-letter stream with the error.
Run as many workers as you like; they share the consumer group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import redis.asyncio as redis

from feedback_server.config import FeedbackSettings
from feedback_server.protocol import Event, InvalidEvent, decode_event
from feedback_server.queue import connect
from feedback_server.store import FeedbackStore
from feedback_server.store.turns_and_feedback import is_unavailable
from feedback_server.streams import ConsumerGroup, Entry
from services.retry import RetryStopped, retry_with_backoff

logger = logging.getLogger(__name__)


StopRequested = RetryStopped  # stopping while a dependency is down: pending entries stay for another worker


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class FeedbackWorker:
    def __init__(self, settings: FeedbackSettings, group: ConsumerGroup, store: FeedbackStore) -> None:
        self.settings = settings
        self.group = group
        self.store = store
        self.stop = asyncio.Event()
        self.stored = 0
        self.dead_lettered = 0
        self._next_claim = self._next_trim = 0.0

    async def run(self) -> None:
        await self._until_redis_answers(self.group.ensure)
        now = time.monotonic()
        self._next_claim, self._next_trim = now, now + self.settings.trim_interval_s
        while not self.stop.is_set():
            try:
                await self._until_redis_answers(self.step)
            except StopRequested:
                break
            except redis.ResponseError as exc:
                if "NOGROUP" in str(exc):  # the stream was deleted (or Redis lost it): start again
                    logger.warning("consumer group missing; creating it again")
                    await self._until_redis_answers(self.group.ensure)
                    continue
                raise

    async def step(self) -> None:
        """One turn of the loop: reclaim stuck entries when it is time, read and store new
        ones, trim acknowledged ones when it is time."""
        if time.monotonic() >= self._next_claim:
            stuck = await self.group.claim_stuck(self.settings.claim_idle_ms, self.settings.batch_size)
            if stuck:
                await self.handle(stuck)
                return  # there may be more
            self._next_claim = time.monotonic() + self.settings.claim_interval_s
        entries = await self.group.read_new(self.settings.batch_size, self.settings.block_ms)
        if entries:
            await self.handle(entries)
        if time.monotonic() >= self._next_trim:
            trimmed = await self.group.trim_acknowledged()
            if trimmed:
                logger.debug("trimmed acknowledged entries", extra={"trimmed": trimmed})
            self._next_trim = time.monotonic() + self.settings.trim_interval_s

    async def handle(self, entries: Sequence[Entry]) -> None:
        """Store what decodes, ack what is stored, dead-letter what keeps failing."""
        good: list[tuple[Entry, Event]] = []
        failed: list[Entry] = []
        gone: list[str] = []
        for entry in entries:
            if entry.fields is None:
                gone.append(entry.id)
                continue
            try:
                good.append((entry, decode_event(entry.fields)))
            except InvalidEvent as exc:
                entry.error = str(exc)
                failed.append(entry)
        stored_ids: list[str] = []
        if good:
            try:
                await self._write([event for _, event in good], [entry.id for entry, _ in good])
                stored_ids = [entry.id for entry, _ in good]
            except StopRequested:
                raise
            except Exception as exc:  # bad data somewhere in the batch: find which entries
                logger.warning("batch write failed, storing entries one by one: %s", exc)
                for entry, event in good:
                    try:
                        await self._write([event], [entry.id])
                        stored_ids.append(entry.id)
                    except StopRequested:
                        raise
                    except Exception as single:
                        entry.error = f"{type(single).__name__}: {single}"
                        failed.append(entry)
        await self.group.ack(stored_ids + gone)
        self.stored += len(stored_ids)
        for entry in failed:
            if entry.deliveries >= self.settings.max_deliveries:
                await self.group.dead_letter(entry, entry.error or "unknown error")
                self.dead_lettered += 1
            else:
                logger.warning(
                    "entry failed; it stays pending for another delivery",
                    extra={"entry_id": entry.id, "deliveries": entry.deliveries, "error": (entry.error or "")[:500]},
                )

    async def _write(self, events: list[Event], ids: list[str]) -> None:
        """Write until the store takes it; give up only on bad data (or when stopping)."""

        async def write() -> None:
            await self.store.write_batch(events)

        async def keep_claimed() -> None:  # entries stay ours while we wait for the store
            try:
                await self.group.keep_claimed(ids)
            except redis.RedisError as exc:
                logger.warning("could not refresh the claim on pending entries: %s", exc)

        await _retry(self.settings, self.stop, "store unavailable", is_unavailable, write, keep_claimed)

    async def _until_redis_answers(self, action: Callable[[], Awaitable[None]]) -> None:
        await _retry(self.settings, self.stop, "redis unavailable", redis_unavailable, action)


def redis_unavailable(exc: BaseException) -> bool:
    return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))


T = TypeVar("T")


async def _retry(
    settings: FeedbackSettings,
    stop: asyncio.Event,
    what: str,
    retry_if: Callable[[BaseException], bool],
    action: Callable[[], Awaitable[T]],
    between_attempts: Callable[[], Awaitable[None]] | None = None,
) -> T:
    """The worker's backoff: from 0.1 s, doubling up to ``retry_max_s``; StopRequested once stopping."""
    return await retry_with_backoff(
        action,
        retry_if=retry_if,
        what=what,
        first_delay_s=0.1,
        max_delay_s=settings.retry_max_s,
        stop=stop,
        between_attempts=between_attempts,
        log=logger,
    )


async def open_store(settings: FeedbackSettings, stop: asyncio.Event) -> FeedbackStore | None:
    """Open (and migrate) the store, waiting for it while it is unavailable; None when stopped first."""

    async def open_once() -> FeedbackStore:
        return await FeedbackStore.open(settings.database_url, migrate=settings.migrate_on_start)

    try:
        return await _retry(settings, stop, "store unavailable at start", is_unavailable, open_once)
    except StopRequested:
        return None


async def run_worker(settings: FeedbackSettings) -> None:
    client = connect(settings.redis_url, settings.redis_timeout_s + settings.block_ms / 1000)
    consumer = settings.consumer or default_consumer_name()
    group = ConsumerGroup(client, settings.stream, settings.group, consumer, settings.dead_letters)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    store = await open_store(settings, stop)
    if store is None:
        await client.aclose()
        return
    worker = FeedbackWorker(settings, group, store)
    worker.stop = stop
    logger.info("worker started", extra={"stream": settings.stream, "group": settings.group, "consumer": consumer})
    try:
        await worker.run()
    except StopRequested:
        pass
    finally:
        logger.info("worker stopped", extra={"stored": worker.stored, "dead_lettered": worker.dead_lettered})
        await store.close()
        await client.aclose()


def main() -> None:
    from services.logging import configure_logging

    settings = FeedbackSettings()
    configure_logging("feedback-worker", settings.log_level, settings.log_json)
    try:
        import uvloop

        uvloop.run(run_worker(settings))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()

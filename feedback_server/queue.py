"""The Redis side of the API: queue a feedback event atomically (with its idempotency key
and a short-lived status key), look a queued event up, and report the queue's depth.

Enqueues that arrive in the same event-loop tick share one pipelined round trip
(:class:`services.redis_scripts.PipelinedScript`): at a few thousand requests a second this
costs a quarter of the client CPU of one EVALSHA each, and every caller still gets its own reply."""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from feedback_server.protocol import EVENT_DATA, FeedbackEvent, feedback_fields
from services.redis_scripts import PipelinedScript

# KEYS: stream, status key, [idempotency key]
# ARGV: feedback id, request fingerprint, idempotency ttl, status ttl, then the entry's
# field/value pairs as protocol.feedback_fields encodes them.
# One script, so a retry racing its original can never queue the event twice.
ENQUEUE_FEEDBACK = """
if #KEYS == 3 then
  local seen = redis.call('GET', KEYS[3])
  if seen then return {0, seen} end
end
local entry = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 5))
redis.call('SET', KEYS[2], entry, 'EX', ARGV[4])
if #KEYS == 3 then
  redis.call('SET', KEYS[3], ARGV[2] .. ' ' .. ARGV[1], 'EX', ARGV[3])
end
return {1, ARGV[1]}
"""


def connect(url: str, timeout_s: float, max_connections: int | None = None) -> redis.Redis:
    """A client that fails fast when Redis is down (callers turn that into 503)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), 2),
        max_connections=max_connections,
    )


@dataclass
class Enqueued:
    feedback_id: str
    created: bool
    """False when an Idempotency-Key retry found the original."""
    fingerprint_matches: bool = True


class FeedbackQueue:
    def __init__(self, client: redis.Redis, stream: str, idempotency_ttl_s: int, status_ttl_s: int) -> None:
        self._redis = client
        self.stream = stream
        self._idempotency_ttl_s = idempotency_ttl_s
        self._status_ttl_s = status_ttl_s
        self._enqueue = PipelinedScript(client, ENQUEUE_FEEDBACK)

    def _status_key(self, feedback_id: str) -> str:
        return f"{self.stream}:status:{feedback_id}"

    def _idempotency_key(self, key: str) -> str:
        return f"{self.stream}:idempotency:{hashlib.sha256(key.encode()).hexdigest()}"

    async def enqueue(self, event: FeedbackEvent, idempotency_key: str | None, fingerprint: str) -> Enqueued:
        """Returns once Redis has appended the event (or found the retry's original)."""
        keys = [self.stream, self._status_key(event.id)]
        if idempotency_key is not None:
            keys.append(self._idempotency_key(idempotency_key))
        entry = [part for pair in feedback_fields(event).items() for part in pair]
        args = [event.id, fingerprint, self._idempotency_ttl_s, self._status_ttl_s, *entry]
        created, value = await self._enqueue(keys=keys, args=args)
        if created:
            return Enqueued(event.id, True)
        seen_fingerprint, _, original_id = value.decode().partition(" ")
        return Enqueued(original_id, False, seen_fingerprint == fingerprint)

    async def find(self, feedback_id: str) -> FeedbackEvent | None:
        """A feedback event still in the stream (accepted, not yet trimmed)."""
        entry_id = await self._redis.get(self._status_key(feedback_id))
        if entry_id is None:
            return None
        entries = await self._redis.xrange(self.stream, min=entry_id, max=entry_id)
        fields = entries[0][1] if entries else None
        if not fields:
            return None
        return FeedbackEvent.model_validate_json(fields[EVENT_DATA.encode()])

    async def depth(self, group: str, dead_letters: str) -> dict[str, int]:
        """Entries in the stream, pending in the worker group, and dead-lettered."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.stream)
            pipe.xlen(dead_letters)
            length, dead = await pipe.execute()
        pending = 0
        with contextlib.suppress(redis.ResponseError):  # no group yet: no worker has started
            pending = int((await self._redis.xpending(self.stream, group))["pending"])
        return {"stream_length": int(length), "pending": pending, "dead_letters": int(dead)}

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

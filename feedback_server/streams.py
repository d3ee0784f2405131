"""The worker's side of the Redis Stream: its consumer group, reading and reclaiming
entries, acknowledging them, dead-lettering poison, and trimming what every group has
acknowledged."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as redis

from services.turn_events import StreamFields

logger = logging.getLogger(__name__)

# Remove the entries below the lowest id some group still needs: its oldest pending entry,
# or (nothing pending) the entry after the last it was given. Atomic, so no group can move
# back between the look and the trim. Works on Redis 6.2 and 7.
TRIM_ACKNOWLEDGED = """
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
if #groups == 0 then return 0 end
local floor_ms, floor_seq = nil, nil
for _, flat in ipairs(groups) do
  local info = {}
  for i = 1, #flat, 2 do info[flat[i]] = flat[i + 1] end
  local ms, seq
  if tonumber(info['pending']) > 0 then
    local summary = redis.call('XPENDING', KEYS[1], info['name'])
    local dash = string.find(summary[2], '-', 1, true)
    ms, seq = tonumber(string.sub(summary[2], 1, dash - 1)), tonumber(string.sub(summary[2], dash + 1))
  else
    local last = info['last-delivered-id']
    local dash = string.find(last, '-', 1, true)
    ms, seq = tonumber(string.sub(last, 1, dash - 1)), tonumber(string.sub(last, dash + 1)) + 1
  end
  if floor_ms == nil or ms < floor_ms or (ms == floor_ms and seq < floor_seq) then
    floor_ms, floor_seq = ms, seq
  end
end
return redis.call('XTRIM', KEYS[1], 'MINID', string.format('%d-%d', floor_ms, floor_seq))
"""


@dataclass
class Entry:
    id: str
    fields: dict[bytes, bytes] | None
    """None when the entry was deleted from the stream while pending."""
    deliveries: int = 1
    error: str | None = field(default=None)


def _entries(raw: list[tuple[bytes, dict[bytes, bytes] | None]]) -> list[Entry]:
    return [Entry(entry_id.decode(), fields) for entry_id, fields in raw]


class ConsumerGroup:
    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str, dead_letters: str) -> None:
        self.redis = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letters = dead_letters
        self._trim = client.register_script(TRIM_ACKNOWLEDGED)

    async def ensure(self) -> None:
        """Create the group (and the stream) unless another worker already did."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            logger.info("created consumer group", extra={"stream": self.stream, "group": self.group})
        except redis.ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def read_new(self, count: int, block_ms: int) -> list[Entry]:
        reply: Any = await self.redis.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return _entries(reply[0][1]) if reply else []

    async def claim_stuck(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries other consumers have held too long (a crashed worker's)."""
        reply = await self.redis.xautoclaim(self.stream, self.group, self.consumer, min_idle_ms, "0-0", count=count)
        entries = _entries(reply[1])
        if entries:
            counts = await self.delivery_counts([e.id for e in entries])
            for entry in entries:
                entry.deliveries = counts.get(entry.id, 1)
        return entries

    async def delivery_counts(self, ids: list[str]) -> dict[str, int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for entry_id in ids:
                pipe.xpending_range(self.stream, self.group, min=entry_id, max=entry_id, count=1)
            replies = await pipe.execute()
        return {reply[0]["message_id"].decode(): int(reply[0]["times_delivered"]) for reply in replies if reply}

    async def keep_claimed(self, ids: list[str]) -> None:
        """Reset the idle time of entries we are still working on, so nobody reclaims them
        (JUSTID leaves the delivery count alone)."""
        if ids:
            await self.redis.xclaim(self.stream, self.group, self.consumer, 0, [*ids], justid=True)

    async def ack(self, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def dead_letter(self, entry: Entry, error: str) -> None:
        """Copy the entry with its error to the dead-letter stream and ack it, atomically."""
        fields: StreamFields = {key: value for key, value in (entry.fields or {}).items()}
        fields.update(
            {
                "source_stream": self.stream,
                "source_id": entry.id,
                "error": error[:2000],
                "deliveries": entry.deliveries,
                "consumer": self.consumer,
                "failed_at": time.time(),
            }
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_letters, fields)
            pipe.xack(self.stream, self.group, entry.id)
            await pipe.execute()
        logger.error(
            "dead-lettered a stream entry",
            extra={"entry_id": entry.id, "deliveries": entry.deliveries, "error": error[:500]},
        )

    async def trim_acknowledged(self) -> int:
        try:
            return int(await self._trim(keys=[self.stream]))
        except redis.ResponseError as exc:
            if "no such key" in str(exc).lower():  # the stream was deleted; reading recreates it
                return 0
            raise

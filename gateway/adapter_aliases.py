"""Stable names for LoRA adapter versions: ``support`` -> ``support-v3``.

Every adapter version vLLM serves has its own name and directory (``support-v1``,
``support-v2``...; never reloaded in place). Clients ask for the alias; promotion and
rollback only move the alias, in the Redis every gateway replica shares:

- ``openchatkit:adapters:aliases``: hash alias -> version;
- ``openchatkit:adapters:history:<alias>``: list of earlier versions, newest first (rollback);
- ``openchatkit:adapters:versions``: hash version -> adapter directory (what was loaded);
- ``openchatkit:adapters:splits``: hash alias -> JSON ``{"support-v2": 0.9, "support-v3": 0.1}``,
  an A/B split: requests for the alias are shared between the arms by weight, instead of all
  going to the promoted version. A conversation (``sticky``: the request's ``user`` or its first
  message) always lands on the same arm, so one person compares nothing mid-conversation.

A replica reads these hashes at most once a second (``cache_s``); when Redis does not answer
it keeps the last maps it read, so a Redis outage never stops adapter traffic.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time

import redis.asyncio as redis

logger = logging.getLogger(__name__)

PREFIX = "openchatkit:adapters"
ALIASES = f"{PREFIX}:aliases"
VERSIONS = f"{PREFIX}:versions"
SPLITS = f"{PREFIX}:splits"


def history_key(alias: str) -> str:
    return f"{PREFIX}:history:{alias}"


class AliasError(ValueError):
    pass


def _text(value: bytes | str) -> str:
    """What Redis returned as text (the client decodes responses; bytes only without that)."""
    return value.decode() if isinstance(value, bytes) else value


def parse_split(raw: str) -> list[tuple[str, float]]:
    """``{"v2": 0.9, "v3": 0.1}`` -> [("v2", 0.9), ("v3", 0.1)]; a malformed entry splits nothing."""
    try:
        weights = json.loads(raw)
        arms = [(str(version), float(weight)) for version, weight in weights.items() if float(weight) > 0]
    except (ValueError, TypeError, AttributeError):
        logger.warning("ignoring a malformed A/B split entry: %r", raw)
        return []
    return sorted(arms)


def pick_arm(arms: list[tuple[str, float]], alias: str, sticky: str | None) -> str:
    """One arm by weight: a point in [0, 1) from the hash of ``sticky`` (else random) walks the
    cumulative weights."""
    if sticky is None:
        point = random.random()
    else:
        digest = hashlib.sha256(f"{alias}\0{sticky}".encode()).digest()
        point = int.from_bytes(digest[:8], "big") / 2**64
    total = sum(weight for _, weight in arms)
    reached = 0.0
    for version, weight in arms:
        reached += weight / total
        if point < reached:
            return version
    return arms[-1][0]


class AdapterAliases:
    """Alias -> adapter version, shared through Redis."""

    def __init__(self, client: redis.Redis, cache_s: float = 1.0) -> None:
        self._redis = client
        self._cache_s = cache_s
        self._map: dict[str, str] = {}
        self._splits: dict[str, list[tuple[str, float]]] = {}
        self._read_at = float("-inf")
        self._failing = False

    @classmethod
    def from_url(cls, url: str, cache_s: float = 1.0) -> AdapterAliases:
        return cls(redis.Redis.from_url(url, decode_responses=True, socket_timeout=0.5), cache_s)

    async def resolve(self, model: str, sticky: str | None = None) -> str:
        """The version ``model`` stands for, or ``model`` itself when it is no alias. An alias
        under an A/B split picks an arm by weight: by the hash of ``sticky`` when given (the
        same conversation, the same arm), else at random."""
        if time.monotonic() - self._read_at > self._cache_s:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.hgetall(ALIASES)
                    pipe.hgetall(SPLITS)
                    self._map, splits = await pipe.execute()
                self._map = {_text(k): _text(v) for k, v in self._map.items()}
                self._splits = {_text(alias): parse_split(_text(raw)) for alias, raw in splits.items()}
                self._failing = False
            except (redis.RedisError, OSError) as exc:
                if not self._failing:  # once per outage
                    logger.warning("adapter aliases unreadable, keeping the last map: %s", exc)
                self._failing = True
            self._read_at = time.monotonic()
        arms = self._splits.get(model)
        if arms:
            return pick_arm(arms, model, sticky)
        return self._map.get(model, model)

    async def split(self, alias: str, weights: dict[str, float] | None) -> None:
        """Share ``alias`` between versions by weight (``None``: end the split, the alias serves
        its promoted version again)."""
        if weights is None:
            await self._redis.hdel(SPLITS, alias)
        else:
            if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
                raise AliasError("a split needs versions with non-negative weights that add up to more than 0")
            await self._redis.hset(SPLITS, alias, json.dumps(weights))
        self._read_at = float("-inf")

    async def splits(self) -> dict[str, dict[str, float]]:
        raw = await self._redis.hgetall(SPLITS)
        return {_text(alias): dict(parse_split(_text(value))) for alias, value in raw.items()}

    async def aliases(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in (await self._redis.hgetall(ALIASES)).items()}

    async def versions(self) -> dict[str, str]:
        return {_text(k): _text(v) for k, v in (await self._redis.hgetall(VERSIONS)).items()}

    async def add_version(self, version: str, directory: str) -> None:
        await self._redis.hset(VERSIONS, version, directory)

    async def remove_version(self, version: str) -> None:
        pointing = [a for a, v in (await self.aliases()).items() if v == version]
        if pointing:
            raise AliasError(f"{version} is what {', '.join(pointing)} serves: promote another version first")
        await self._redis.hdel(VERSIONS, version)

    async def history(self, alias: str) -> list[str]:
        return [_text(v) for v in await self._redis.lrange(history_key(alias), 0, -1)]

    async def promote(self, alias: str, version: str) -> str | None:
        """Point ``alias`` at ``version``; returns the version it left (kept for rollback)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(ALIASES)
                    previous = await pipe.hget(ALIASES, alias)
                    pipe.multi()
                    pipe.hset(ALIASES, alias, version)
                    if previous and previous != version:
                        pipe.lpush(history_key(alias), previous)
                    await pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self._read_at = float("-inf")
        return _text(previous) if previous and previous != version else None

    async def rollback(self, alias: str) -> str:
        """Point ``alias`` back at the version it served before; returns that version."""
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(ALIASES, history_key(alias))
                    previous = await pipe.lindex(history_key(alias), 0)
                    if previous is None:
                        raise AliasError(f"{alias} has no earlier version to roll back to")
                    pipe.multi()
                    pipe.hset(ALIASES, alias, previous)
                    pipe.lpop(history_key(alias))
                    await pipe.execute()
                    break
                except redis.WatchError:
                    continue
        self._read_at = float("-inf")
        return str(previous)

    async def forget(self, alias: str) -> None:
        """Drop ``alias``: its pointer, history, split and the versions named after it."""
        versions = [v for v in await self.versions() if v.startswith(f"{alias}-v")]
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(ALIASES, alias)
            pipe.hdel(SPLITS, alias)
            pipe.delete(history_key(alias))
            if versions:
                pipe.hdel(VERSIONS, *versions)
            await pipe.execute()
        self._read_at = float("-inf")

    async def aclose(self) -> None:
        await self._redis.aclose()

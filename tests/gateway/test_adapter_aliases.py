"""Adapter aliases on the machine's real Redis: promotion and rollback move only the alias."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as redis

from gateway.adapter_aliases import (
    ALIASES,
    SPLITS,
    VERSIONS,
    AdapterAliases,
    AliasError,
    history_key,
    parse_split,
    pick_arm,
)

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture()
async def aliases() -> AdapterAliases:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        await client.ping()
    except (redis.RedisError, OSError):
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    return AdapterAliases(client, cache_s=0.0)


async def test_promote_and_rollback_move_the_alias(aliases: AdapterAliases) -> None:
    alias = f"support{uuid.uuid4().hex[:8]}"
    v1, v2, v3 = (f"{alias}-v{n}" for n in (1, 2, 3))
    try:
        assert await aliases.resolve(alias) == alias, "not an alias yet: the name stands for itself"
        assert await aliases.promote(alias, v1) is None
        assert await aliases.promote(alias, v2) == v1
        assert await aliases.promote(alias, v3) == v2
        assert await aliases.resolve(alias) == v3 and await aliases.resolve(v1) == v1
        assert await aliases.history(alias) == [v2, v1]
        assert await aliases.rollback(alias) == v2
        assert await aliases.rollback(alias) == v1
        assert await aliases.resolve(alias) == v1
        with pytest.raises(AliasError, match="no earlier version"):
            await aliases.rollback(alias)
        await aliases.add_version(v1, "/adapters/v1")
        with pytest.raises(AliasError, match="promote another version"):
            await aliases.remove_version(v1)
        await aliases.add_version(v2, "/adapters/v2")
        await aliases.remove_version(v2)
        assert v2 not in await aliases.versions()
    finally:
        client = aliases._redis
        await client.hdel(ALIASES, alias)
        await client.hdel(VERSIONS, v1, v2)
        await client.delete(history_key(alias))
        await aliases.aclose()


async def test_a_redis_outage_keeps_the_last_map() -> None:
    alias = f"support{uuid.uuid4().hex[:8]}"
    good = AdapterAliases(redis.Redis.from_url(REDIS_URL, decode_responses=True), cache_s=0.0)
    try:
        await good._redis.ping()
    except (redis.RedisError, OSError):
        pytest.skip(f"no Redis answers at {REDIS_URL}")
    try:
        await good.promote(alias, f"{alias}-v1")
        assert await good.resolve(alias) == f"{alias}-v1"
        good._redis = redis.Redis.from_url("redis://127.0.0.1:1/0", decode_responses=True, socket_timeout=0.2)
        assert await good.resolve(alias) == f"{alias}-v1"
    finally:
        await good.aclose()
        cleanup = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        await cleanup.hdel(ALIASES, alias)
        await cleanup.aclose()


async def test_an_ab_split_shares_an_alias_by_weight_and_sticks_to_a_conversation(aliases: AdapterAliases) -> None:
    alias = f"support{uuid.uuid4().hex[:8]}"
    old, new = f"{alias}-v1", f"{alias}-v2"
    try:
        await aliases.promote(alias, old)
        await aliases.split(alias, {old: 0.7, new: 0.3})
        assert (await aliases.splits())[alias] == {old: 0.7, new: 0.3}
        picks = [await aliases.resolve(alias, sticky=f"user-{i}") for i in range(2000)]
        share = picks.count(new) / len(picks)
        assert set(picks) == {old, new} and 0.26 < share < 0.34, share
        again = [await aliases.resolve(alias, sticky=f"user-{i}") for i in range(200)]
        assert again == picks[:200], "a conversation always lands on the same arm"
        unsticky = [await aliases.resolve(alias) for _ in range(400)]
        assert 0.2 < unsticky.count(new) / 400 < 0.4
        assert await aliases.resolve(old) == old, "versions themselves are never split"
        await aliases.split(alias, None)
        assert {await aliases.resolve(alias, sticky=f"user-{i}") for i in range(50)} == {old}, "split ended"
        with pytest.raises(AliasError):
            await aliases.split(alias, {old: 0.0})
    finally:
        client = aliases._redis
        await client.hdel(ALIASES, alias)
        await client.hdel(SPLITS, alias)
        await client.delete(history_key(alias))
        await aliases.aclose()


def test_malformed_split_entries_split_nothing() -> None:
    assert parse_split("not json") == [] and parse_split('{"a": "x"}') == []
    assert parse_split('{"b": 1, "a": 0, "c": 2}') == [("b", 1.0), ("c", 2.0)]
    assert pick_arm([("b", 1.0), ("c", 3.0)], "alias", "someone") in {"b", "c"}


async def test_forget_drops_an_alias_and_its_versions(aliases: AdapterAliases) -> None:
    alias = f"support{uuid.uuid4().hex[:8]}"
    await aliases.add_version(f"{alias}-v1", "/adapters/v1")
    await aliases.promote(alias, f"{alias}-v1")
    await aliases.promote(alias, "base")
    await aliases.split(alias, {"base": 1.0, f"{alias}-v1": 1.0})
    await aliases.forget(alias)
    assert alias not in await aliases.aliases() and alias not in await aliases.splits()
    assert await aliases.history(alias) == [] and f"{alias}-v1" not in await aliases.versions()
    await aliases.aclose()

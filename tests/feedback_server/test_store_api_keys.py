"""The gateway's key store lives in the feedback database: the same operations on SQLite
and PostgreSQL (congruence), and the 0003 migration applied over a 0001 database (0002 on the way)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from alembic import command
from sqlalchemy import text

from feedback_server.store import FeedbackStore
from feedback_server.store.database import build_engine
from feedback_server.store.migrate import alembic_config
from gateway.keys.records import KeyCreate, hash_key
from gateway.keys.store import KeyStore


async def test_keys_are_stored_hashed_and_found_by_hash(store_url: str) -> None:
    keys = await KeyStore.open(store_url)
    try:
        row, plaintext = await keys.create(KeyCreate(alias="a", owner="team", models=["m-*"], rpm=5, tpm=100))
        assert row.key_hash == hashlib.sha256(plaintext.encode()).hexdigest() and row.hint.endswith(plaintext[-4:])
        found = await keys.find(hash_key(plaintext))
        assert found is not None and found[0].id == row.id and found[1] is False
        assert await keys.find(hash_key(plaintext + "x")) is None

        rotated = await keys.rotate(row.id, grace_period_s=60)
        assert rotated is not None
        new_row, new_plaintext = rotated
        assert new_plaintext != plaintext and new_row.previous_key_hash == row.key_hash
        old = await keys.find(hash_key(plaintext))
        assert old is not None and old[1] is True  # found as the rotated-out key
        changed = await keys.update(row.id, {"rpm": None, "revoked": True})
        assert changed is not None and changed.rpm is None and changed.revoked and changed.tpm == 100
        await keys.touch([row.id], datetime.now(UTC))
        assert (await keys.get(row.id)).last_used_at is not None  # type: ignore[union-attr]
        assert [k.id for k in await keys.list_keys("team")] == [row.id] and await keys.list_keys("other") == []
        async with keys.engine.connect() as connection:
            stored = (await connection.execute(text("SELECT * FROM api_keys"))).all()
        assert plaintext not in repr(stored) and new_plaintext not in repr(stored)
    finally:
        await keys.close()


async def test_upgrade_from_0001_adds_keys_and_the_feedback_key_id(store_url: str) -> None:
    store = FeedbackStore(build_engine(store_url))
    async with store.engine.begin() as connection:

        def to_0001(sync_connection: object) -> None:
            config = alembic_config()
            config.attributes["connection"] = sync_connection
            command.upgrade(config, "0001")

        await connection.run_sync(to_0001)
    await store.close()
    upgraded = await FeedbackStore.open(store_url)
    async with upgraded.engine.connect() as connection:
        assert (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one() == "0003"
        await connection.execute(text("SELECT key_id FROM feedback"))
        await connection.execute(text("SELECT id, key_hash FROM api_keys"))
    await upgraded.close()

"""``KeyStore``: virtual keys in the feedback service's database (SQLite by default,
PostgreSQL in deployments), migrated with the same Alembic chain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from feedback_server.store.database import MigratedStore
from feedback_server.store.tables import ApiKey
from gateway.keys.records import KeyCreate, hash_key, key_hint, new_key_id, new_plaintext_key


def utc_now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value if value is None or value.tzinfo is not None else value.replace(tzinfo=UTC)


class KeyStore(MigratedStore):
    async def create(self, spec: KeyCreate) -> tuple[ApiKey, str]:
        """The new row and its plaintext key (returned once, never stored)."""
        plaintext = new_plaintext_key()
        now = utc_now()
        row = ApiKey(
            id=new_key_id(),
            key_hash=hash_key(plaintext),
            hint=key_hint(plaintext),
            revoked=False,
            created_at=now,
            updated_at=now,
            **spec.model_dump(),
        )
        async with AsyncSession(self.engine, expire_on_commit=False) as session:
            session.add(row)
            await session.commit()
        return row, plaintext

    async def get(self, key_id: str) -> ApiKey | None:
        async with AsyncSession(self.engine) as session:
            return await session.get(ApiKey, key_id)

    async def list_keys(self, owner: str | None = None) -> list[ApiKey]:
        query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
        if owner is not None:
            query = query.where(ApiKey.owner == owner)
        async with AsyncSession(self.engine) as session:
            return list((await session.execute(query)).scalars())

    async def find(self, key_hash: str) -> tuple[ApiKey, bool] | None:
        """The key with this hash, and whether the hash is its previous (rotated-out) one."""
        query = select(ApiKey).where(or_(ApiKey.key_hash == key_hash, ApiKey.previous_key_hash == key_hash))
        async with AsyncSession(self.engine) as session:
            row = (await session.execute(query)).scalars().first()
        if row is None:
            return None
        return row, row.key_hash != key_hash

    async def update(self, key_id: str, fields: dict[str, Any]) -> ApiKey | None:
        if fields:
            async with self.engine.begin() as connection:
                await connection.execute(
                    update(ApiKey).where(ApiKey.id == key_id).values(**fields, updated_at=utc_now())
                )
        return await self.get(key_id)

    async def rotate(self, key_id: str, grace_period_s: int) -> tuple[ApiKey, str] | None:
        """A new key for the same id; the old one stays valid for ``grace_period_s``."""
        row = await self.get(key_id)
        if row is None:
            return None
        plaintext = new_plaintext_key()
        fields: dict[str, Any] = {"key_hash": hash_key(plaintext), "hint": key_hint(plaintext)}
        if grace_period_s > 0:
            fields["previous_key_hash"] = row.key_hash
            fields["previous_valid_until"] = utc_now() + timedelta(seconds=grace_period_s)
        else:
            fields["previous_key_hash"] = None
            fields["previous_valid_until"] = None
        updated = await self.update(key_id, fields)
        assert updated is not None
        return updated, plaintext

    async def touch(self, key_ids: list[str], when: datetime) -> None:
        """Record use (batched by the caller: not once per request)."""
        if key_ids:
            async with self.engine.begin() as connection:
                await connection.execute(update(ApiKey).where(ApiKey.id.in_(key_ids)).values(last_used_at=when))


def previous_still_valid(row: ApiKey, now: datetime) -> bool:
    until = _aware(row.previous_valid_until)
    return until is not None and until > now

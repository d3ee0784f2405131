"""Bring a store's schema to the newest Alembic revision, safely when several processes
(the API and its workers) start at once: PostgreSQL takes an advisory lock inside the
migration's transaction, SQLite a file lock next to the database."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from services.locks import file_lock

MIGRATIONS = Path(__file__).parent / "migrations"
_ADVISORY_LOCK_ID = 0x0C4F_EEDB  # any constant shared by every feedback process


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _ADVISORY_LOCK_ID})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(engine: AsyncEngine) -> None:
    with _sqlite_file_lock(engine):
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade)


@contextlib.contextmanager
def _sqlite_file_lock(engine: AsyncEngine) -> Iterator[None]:
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        yield
        return
    with file_lock(Path(url.database + ".migrate.lock")):  # start-up only, and migrations take milliseconds
        yield

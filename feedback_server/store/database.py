"""The feedback database (SQLite by default, PostgreSQL by URL) and the stores on it: the
turns and feedback (:mod:`feedback_server.store.turns_and_feedback`) and the gateway's keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from feedback_server.store.migrate import upgrade_to_head


def build_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
        # WAL lets the API read while workers write; busy_timeout makes writers queue;
        # FULL: a committed batch survives power loss (the worker acks Redis after it).
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    return engine


class MigratedStore:
    """A store on the feedback database; opening it brings the schema to the newest migration."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str, *, migrate: bool = True) -> Self:
        """Connect to ``url`` (a SQLAlchemy async URL) and, with ``migrate``, upgrade its schema."""
        store = cls(build_engine(url))
        if migrate:
            await upgrade_to_head(store.engine)
        return store

    async def close(self) -> None:
        await self.engine.dispose()

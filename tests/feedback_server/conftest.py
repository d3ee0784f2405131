"""Fixtures: the machine's Redis (random stream names), a private redis-server, and
throwaway stores on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

from feedback_server.store import FeedbackStore
from tests.support.feedback import (
    SHARED_REDIS_URL,
    PostgresDatabase,
    PrivateRedis,
    postgres_admin_url,
    unique,
)
from tests.support.processes import ServiceProcess

STORE_KINDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(SHARED_REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"NO REDIS at {SHARED_REDIS_URL} ({exc}): feedback tests need a real Redis")
    return SHARED_REDIS_URL


@pytest.fixture()
def stream(redis_url: str) -> Iterator[str]:
    """A random stream name; the stream and its keys are deleted afterwards."""
    name = unique("test:feedback")
    yield name
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{name}*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture()
def shared_redis(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = postgres_admin_url()
    if url is None:
        pytest.skip("NO POSTGRESQL answers at DATABASE_URL (default 127.0.0.1:5432): PostgreSQL store tests skipped")
    return url


@pytest.fixture()
def pg_database(postgres_url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(postgres_url).create()
    yield database
    database.drop()


@pytest.fixture(params=STORE_KINDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The same test on the embedded store and on PostgreSQL (congruence)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'feedback.db'}"
        return
    database = PostgresDatabase(request.getfixturevalue("postgres_url")).create()
    try:
        yield database.async_url
    finally:
        database.drop()


@pytest.fixture()
async def store(store_url: str) -> AsyncIterator[FeedbackStore]:
    opened = await FeedbackStore.open(store_url)
    yield opened
    await opened.close()


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path / "redis-data").start()
    yield server
    server.stop()


@pytest.fixture()
def processes() -> Iterator[list[ServiceProcess]]:
    """Processes a test starts; all stopped at the end."""
    started: list[ServiceProcess] = []
    yield started
    for process in started:
        process.stop()

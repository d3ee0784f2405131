"""Real components for feedback tests: private redis-server processes, throwaway
PostgreSQL databases, and the feedback API and worker as real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import redis

from openchatkit.local_redis import free_port, redis_answers, redis_server_argv
from tests.support.processes import ServiceProcess

SHARED_REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class PrivateRedis:
    """A redis-server of our own (AOF on) that a test may kill and restart on the same data."""

    def __init__(self, data_dir: Path, appendfsync: str = "always") -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.appendfsync = appendfsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        log = (self.data_dir.parent / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            redis_server_argv(self.port, self.data_dir, self.appendfsync),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 120
        while not redis_answers(self.url, 0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on {self.port} did not start")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save, only what the append-only file already holds survives."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


def postgres_admin_url() -> str | None:
    """The machine's PostgreSQL when it answers, else None."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as connection:
            connection.execute("SELECT 1")
        return POSTGRES_URL
    except psycopg.Error:
        return None


@dataclass
class PostgresDatabase:
    admin_url: str
    name: str = field(default_factory=lambda: unique("feedback_test"))

    @property
    def async_url(self) -> str:
        base = self.admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        return f"{base}/{self.name}"

    def _admin(self, sql: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(sql)

    def create(self) -> PostgresDatabase:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def refuse_connections(self) -> None:
        """The store goes away: no new connections, and the open ones are ended."""
        self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        self._admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{self.name}'")

    def accept_connections(self) -> None:
        self._admin(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(f"{self.admin_url.rsplit('/', 1)[0]}/{self.name}", autocommit=True)


def feedback_env(redis_url: str, stream: str, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "FEEDBACK_REDIS_URL": redis_url,
        "FEEDBACK_STREAM": stream,
        "FEEDBACK_DATABASE_URL": database_url,
        "FEEDBACK_CLAIM_IDLE_MS": "1000",
        "FEEDBACK_CLAIM_INTERVAL_S": "0.3",
        "FEEDBACK_TRIM_INTERVAL_S": "0.5",
        "FEEDBACK_BLOCK_MS": "200",
        "FEEDBACK_RETRY_MAX_S": "0.5",
        **extra,
    }


def start_feedback_api(env: dict[str, str], log_dir: Path) -> tuple[ServiceProcess, str]:
    port = free_port()
    process = ServiceProcess.module("feedback", "feedback_server", {**env, "FEEDBACK_PORT": str(port)}, log_dir).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_http(url + "/health", timeout=60)
    return process, url


def start_worker(env: dict[str, str], log_dir: Path, name: str = "worker") -> ServiceProcess:
    return ServiceProcess.module(name, "feedback_server.worker", env, log_dir).start()


def wait_until(predicate: object, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")

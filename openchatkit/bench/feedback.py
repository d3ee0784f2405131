"""``openchatkit bench feedback``: feedback events/s accepted through the API at several
concurrencies (with accept latency p50/p99), then the worker's drain rate into the store.

It starts its own redis-server (AOF on), feedback API and workers on free ports. The load
comes from a small keep-alive HTTP/1.1 client on raw asyncio streams (uvloop), in its own
processes, so the measurement is not limited by a heavy Python HTTP client.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import redis
import typer

from openchatkit.apps import stderr_console
from openchatkit.bench.results import RESULTS_DIR, figure, loadavg, save_figure, summarize, write_result
from openchatkit.local_redis import free_port, redis_server_argv

console = stderr_console()
GOAL = {"events_per_s": 5000, "p99_ms": 10}


def build_requests(port: int, count: int) -> list[bytes]:
    requests = []
    for i in range(count):
        body: dict[str, Any] = {"response_id": f"chatcmpl-bench{i:06d}", "rating": "up" if i % 3 else "down"}
        if i % 5 == 0:
            body["flags"] = ["not_helpful"]
        if i % 7 == 0:
            body["ideal_response"] = "A better answer, written by a person. " * 4
        raw = json.dumps(body).encode()
        head = (
            f"POST /v1/feedback HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(raw)}\r\n\r\n"
        ).encode()
        requests.append(head + raw)
    return requests


async def _connection(port: int, requests: list[bytes], start: float, stop: float, out: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            writer.write(requests[i % len(requests)])
            i += 1
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if t0 >= start:  # after the warm-up
                out["latencies"].append(time.perf_counter() - t0)
                out["status"][status] = out["status"].get(status, 0) + 1
    finally:
        writer.close()


def _load_process(port: int, connections: int, warmup_s: float, duration_s: float, queue: Any) -> None:
    import uvloop

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"latencies": [], "status": {}}
        requests = build_requests(port, 2000)
        start = time.perf_counter() + warmup_s
        await asyncio.gather(*(_connection(port, requests, start, start + duration_s, out) for _ in range(connections)))
        return out

    cpu0 = time.process_time()
    result = uvloop.run(main())
    result["cpu_s"] = time.process_time() - cpu0
    queue.put(result)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for one in pids:
        try:
            fields = Path(f"/proc/{one}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def measure(
    port: int,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
    load_processes: int,
    watched: dict[str, int] | None = None,
) -> dict[str, Any]:
    processes = max(1, min(load_processes, concurrency))
    shares = [concurrency // processes + (1 if i < concurrency % processes else 0) for i in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_load_process, args=(port, n, warmup_s, duration_s, queue)) for n in shares]
    for proc in procs:
        proc.start()
    time.sleep(warmup_s)
    before = {name: cpu_seconds(pid) for name, pid in (watched or {}).items()}
    load_before = os.getloadavg()[0]
    time.sleep(duration_s)
    used = {name: cpu_seconds(pid) - before[name] for name, pid in (watched or {}).items()}
    results = [queue.get(timeout=warmup_s + duration_s + 120) for _ in procs]
    for proc in procs:
        proc.join()
    latency_ms = summarize([x for r in results for x in r["latencies"]], 1000)
    status: dict[int, int] = {}
    for r in results:
        for code, n in r["status"].items():
            status[code] = status.get(code, 0) + n
    accepted = status.get(202, 0)
    return {
        "concurrency": concurrency,
        "accepted": accepted,
        "other_statuses": {str(k): v for k, v in status.items() if k != 202},
        "events_per_s": round(accepted / duration_s, 1),
        "p50_ms": round(latency_ms["p50"], 3),
        "p95_ms": round(latency_ms["p95"], 3),
        "p99_ms": round(latency_ms["p99"], 3),
        "latency_ms": latency_ms,
        "load_generator_cpu_s": round(sum(r["cpu_s"] for r in results), 2),
        "cpu_s": {name: round(seconds, 2) for name, seconds in used.items()},
        "api_cpu_us_per_event": round(used.get("api", 0.0) / accepted * 1e6, 1) if accepted else None,
        "machine_load_1m": load_before,
    }


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def drain(env: dict[str, str], client: redis.Redis, stream: str, group: str, workers: int, log: Path) -> dict[str, Any]:
    """Start ``workers`` workers on a full stream; events/s until the group has acked it all."""
    total = client.xlen(stream)
    started = time.perf_counter()
    with log.open("ab") as sink:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "feedback_server.worker"], env=env, stdout=sink, stderr=subprocess.STDOUT
            )
            for _ in range(workers)
        ]
    try:
        while True:
            if _drained(client, stream, group):
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a worker exited; see {log}")
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    return {
        "workers": workers,
        "events": total,
        "seconds_incl_start": round(elapsed, 2),
        "events_per_s": round(total / elapsed, 1),
    }


def bench_feedback(
    concurrency: Annotated[list[int] | None, typer.Option(help="Concurrent connections (repeat).")] = None,
    duration_s: Annotated[float, typer.Option(help="Seconds measured per concurrency.")] = 5.0,
    warmup_s: Annotated[float, typer.Option(help="Seconds of load before measuring.")] = 1.0,
    api_workers: Annotated[
        int, typer.Option(help="uvicorn worker processes of the feedback API (FEEDBACK_WORKERS).")
    ] = 2,
    load_processes: Annotated[int, typer.Option(help="Processes generating the load.")] = 1,
    drain_workers: Annotated[list[int] | None, typer.Option(help="Worker counts for the drain test (repeat).")] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Store for the drain test (default: a fresh SQLite file).")
    ] = None,
    appendfsync: Annotated[
        str, typer.Option(help="Redis AOF fsync policy: always (what the stack runs), everysec or no.")
    ] = "always",
    out: Annotated[Path, typer.Option(help="Results folder.")] = RESULTS_DIR,
    stamped: Annotated[bool, typer.Option(hidden=True)] = True,
) -> Path:
    """Accept rate and latency of POST /v1/feedback, and the worker drain rate."""
    levels = concurrency or [1, 2, 4, 8, 16, 32, 64]
    load_before = loadavg()
    workdir = Path(tempfile.mkdtemp(prefix="ock-bench-feedback-"))
    redis_port, api_port = free_port(), free_port()
    stream, group = f"bench:{uuid.uuid4().hex[:8]}", "feedback-store"
    env = {
        **os.environ,
        "FEEDBACK_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "FEEDBACK_STREAM": stream,
        "FEEDBACK_GROUP": group,
        "FEEDBACK_PORT": str(api_port),
        "FEEDBACK_WORKERS": str(api_workers),
        "FEEDBACK_ACCESS_LOG": "false",
        "FEEDBACK_LOG_LEVEL": "WARNING",
        "FEEDBACK_DATABASE_URL": database_url or f"sqlite+aiosqlite:///{workdir / 'feedback.db'}",
    }
    log = workdir / "services.log"
    with log.open("ab") as sink:
        redis_proc = subprocess.Popen(
            redis_server_argv(redis_port, workdir / "redis", appendfsync), stdout=sink, stderr=subprocess.STDOUT
        )
        api = subprocess.Popen(
            [sys.executable, "-m", "feedback_server"], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    client = redis.Redis(port=redis_port)
    try:
        _wait_http(f"http://127.0.0.1:{api_port}/ready", api)
        runs = []
        for level in levels:
            result = measure(
                api_port, level, warmup_s, duration_s, load_processes, {"api": api.pid, "redis": redis_proc.pid}
            )
            runs.append(result)
            console.print(
                f"concurrency {level:3d}: {result['events_per_s']:8.1f} events/s  p50 {result['p50_ms']:.2f} ms  "
                f"p99 {result['p99_ms']:.2f} ms  API {result['api_cpu_us_per_event']} CPU-us/event  "
                f"load {result['machine_load_1m']:.1f}  (other statuses: {result['other_statuses'] or 'none'})"
            )
        api.terminate()
        api.wait(timeout=30)
        drains: list[dict[str, Any]] = []
        for workers in drain_workers or [1, 2]:
            if drains:  # refill: the previous drain consumed the stream
                client.delete(stream)
                _refill(client, stream, drains[0]["events"])
            drains.append(drain(env, client, stream, group, workers, log))
            console.print(f"drain with {workers} worker(s): {drains[-1]['events_per_s']:.1f} events/s")
        report = {
            "settings": {
                "duration_s": duration_s,
                "warmup_s": warmup_s,
                "api_workers": api_workers,
                "load_processes": load_processes,
                "redis_appendfsync": appendfsync,
                "store": "sqlite" if database_url is None else database_url.split(":")[0],
            },
            "accept": runs,
            "best_events_per_s": max(r["events_per_s"] for r in runs),
            "drain": drains,
            "goal": GOAL,
        }
        path = write_result("feedback", report, out, load_before=load_before, stamped=stamped)
        _plot(report, path.with_suffix(".png"))
        console.print(f"wrote {path} and {path.with_suffix('.png')}")
        return path
    finally:
        for proc in (api, redis_proc):
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)


def _drained(client: redis.Redis, stream: str, group: str) -> bool:
    """The group has been given every entry and acknowledged them all (Redis 6.2 and 7)."""
    if not client.exists(stream):
        return False
    groups = {g["name"].decode(): g for g in client.xinfo_groups(stream)}
    g = groups.get(group)
    if g is None or g["pending"]:
        return False
    return bool(g["last-delivered-id"] == client.xinfo_stream(stream)["last-generated-id"])


def _refill(client: redis.Redis, stream: str, count: int) -> None:
    """The same mix of feedback events, straight into the stream (for a second drain run)."""
    from feedback_server.protocol import FeedbackEvent, feedback_fields, new_feedback_id

    pipe = client.pipeline(transaction=False)
    for i in range(count):
        event = FeedbackEvent(
            id=new_feedback_id(), response_id=f"chatcmpl-bench{i:06d}", rating="up", created_at=time.time()
        )
        pipe.xadd(stream, feedback_fields(event))
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def _plot(report: dict[str, Any], path: Path) -> None:
    runs = report["accept"]
    x = [r["concurrency"] for r in runs]
    fig, left = figure()
    left.plot(x, [r["events_per_s"] for r in runs], "o-", color="tab:blue", label="accepted events/s")
    left.axhline(report["goal"]["events_per_s"], color="tab:blue", linestyle=":", linewidth=1)
    left.set_xscale("log", base=2)
    left.set_xlabel("concurrent connections")
    left.set_ylabel("events/s", color="tab:blue")
    right = left.twinx()
    right.plot(x, [r["p99_ms"] for r in runs], "s--", color="tab:red", label="p99 ms")
    right.plot(x, [r["p50_ms"] for r in runs], "^--", color="tab:orange", label="p50 ms")
    right.axhline(report["goal"]["p99_ms"], color="tab:red", linestyle=":", linewidth=1)
    right.set_ylabel("latency (ms)", color="tab:red")
    fig.legend(loc="upper left", bbox_to_anchor=(0.1, 0.88), fontsize=8)
    left.set_title(f"POST /v1/feedback, {os.cpu_count()} CPUs, {report['settings']['api_workers']} API worker(s)")
    save_figure(fig, path, dpi=100)

"""The supervisor with real child processes."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys

import httpx
from rich.console import Console

from openchatkit.supervisor import ServiceSpec, Supervisor
from tests.support.processes import free_port

HTTP_SERVER = """
import http.server, sys, time
time.sleep(float(sys.argv[2]))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def http_child(name: str, port: int, delay: float = 0.0, after: list[str] | None = None) -> ServiceSpec:
    return ServiceSpec(
        name=name,
        argv=[sys.executable, "-c", HTTP_SERVER, str(port), str(delay)],
        ready_url=f"http://127.0.0.1:{port}/",
        ready_timeout_s=30,
        after=after or [],
    )


def quiet_console() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, color_system=None), buffer


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; reap-free check through /proc.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


async def test_waits_for_readiness_in_order_then_stops_everything_on_sigterm() -> None:
    first, second = free_port(), free_port()
    console, buffer = quiet_console()
    supervisor = Supervisor([http_child("db", first, delay=0.5), http_child("api", second, after=["db"])], console)
    seen: list[int] = []

    async def on_ready() -> None:
        async with httpx.AsyncClient() as client:
            seen.extend([(await client.get(f"http://127.0.0.1:{p}/")).status_code for p in (first, second)])
        os.kill(os.getpid(), signal.SIGTERM)  # what Ctrl-C / `kill` does to `openchatkit run`

    code = await asyncio.wait_for(supervisor.run(on_ready), timeout=60)
    assert code == 0
    assert seen == [200, 200]
    log = buffer.getvalue()
    assert log.index("db | ready") < log.index("api | started"), "api starts only after db is ready"
    assert "api | serving" in log, "child output is forwarded"
    assert not any(alive(p.pid) for p in supervisor.processes.values())


async def test_a_child_that_dies_stops_the_stack_with_an_error() -> None:
    port = free_port()
    console, buffer = quiet_console()
    crash = ServiceSpec(name="crash", argv=[sys.executable, "-c", "import time; time.sleep(1); raise SystemExit(3)"])
    supervisor = Supervisor([http_child("web", port), crash], console)
    code = await asyncio.wait_for(supervisor.run(), timeout=60)
    assert code == 1
    assert "crash exited with code 3" in buffer.getvalue()
    assert not any(alive(p.pid) for p in supervisor.processes.values())


async def test_a_child_that_never_gets_ready_fails_the_start() -> None:
    console, buffer = quiet_console()
    never = ServiceSpec(
        name="never",
        argv=[sys.executable, "-c", "import time; time.sleep(60)"],
        ready_url=f"http://127.0.0.1:{free_port()}/",
        ready_timeout_s=2,
    )
    supervisor = Supervisor([never], console)
    code = await asyncio.wait_for(supervisor.run(), timeout=60)
    assert code == 1
    assert "was not ready after 2s" in buffer.getvalue()
    assert not alive(supervisor.processes["never"].pid)


async def test_a_slow_start_shows_what_the_service_is_doing() -> None:
    """While a model server warms up the user sees the elapsed time and the phase read from its log."""
    port = free_port()
    console, buffer = quiet_console()
    script = "print('Warming up model for the compilation...', flush=True)\n" + HTTP_SERVER
    slow = ServiceSpec(
        name="model",
        argv=[sys.executable, "-c", script, str(port), "2.5"],
        ready_url=f"http://127.0.0.1:{port}/",
        ready_timeout_s=60,
        startup_phase=lambda line: "compiling" if "Warming up" in line else None,
    )
    supervisor = Supervisor([slow], console, progress_every_s=0.5)

    async def on_ready() -> None:
        os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(supervisor.run(on_ready), timeout=60) == 0
    log = buffer.getvalue()
    assert "model | not ready yet (" in log, log
    assert "s): compiling" in log, log


def test_vllm_start_up_phases() -> None:
    from chat_server.launch import startup_phase

    line = "(Worker pid=1) INFO 11-30 19:40:02 [cpu_model_runner.py:87] Warming up model for the compilation..."
    assert startup_phase(line) is not None and "compiling" in startup_phase(line)  # type: ignore[operator]
    assert startup_phase("(APIServer pid=1) INFO [launcher.py:195] Route: /health, Methods: GET") is None

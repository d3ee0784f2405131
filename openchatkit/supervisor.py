"""Start a set of service processes, wait until each is ready, forward their logs,
and stop them all together (Ctrl-C, SIGTERM, or any child exiting)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape

COLORS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")


@dataclass
class ServiceSpec:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    """Polled until it answers 200; None: ready once started."""
    ready_timeout_s: float = 900.0
    after: list[str] = field(default_factory=list)
    """Services that must be ready before this one starts."""
    startup_phase: Callable[[str], str | None] | None = None
    """Maps one of the service's log lines to what it is doing now (e.g. "compiling the model"),
    shown with the elapsed time every ``progress_every_s`` while it is not ready."""


class StackFailed(RuntimeError):
    pass


class Supervisor:
    def __init__(
        self,
        specs: list[ServiceSpec],
        console: Console | None = None,
        stop_timeout_s: float = 20.0,
        progress_every_s: float = 10.0,
    ) -> None:
        self.specs = specs
        self.progress_every_s = progress_every_s
        self._phase: dict[str, str] = {}
        self.console = console or Console(stderr=True, highlight=False)
        self.stop_timeout_s = stop_timeout_s
        self.processes: dict[str, asyncio.subprocess.Process] = {}
        self._ready: dict[str, asyncio.Event] = {spec.name: asyncio.Event() for spec in specs}
        self._tasks: list[asyncio.Task[None]] = []
        self._color = {spec.name: COLORS[i % len(COLORS)] for i, spec in enumerate(specs)}

    def log(self, name: str, line: str) -> None:
        self.console.print(f"[{self._color.get(name, 'white')}]{name:>10} |[/] {escape(line)}", soft_wrap=True)

    async def run(self, on_ready: Callable[[], Awaitable[None] | None] | None = None) -> int:
        """Run until interrupted or a child exits; return the exit code for the CLI."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        failure: str | None = None
        try:
            waiter = asyncio.create_task(self._start_all())
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if waiter in done:
                waiter.result()
                if on_ready is not None:
                    result = on_ready()
                    if asyncio.iscoroutine(result):
                        await result
                exited = asyncio.create_task(self._first_exit())
                waiting: set[asyncio.Task[Any]] = {exited, stopper}
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if exited in done:
                    failure = exited.result()
                exited.cancel()
            else:
                waiter.cancel()
            stopper.cancel()
        except StackFailed as exc:
            failure = str(exc)
        finally:
            await self.stop_all()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if failure:
            self.console.print(f"[red]stack stopped:[/red] {escape(failure)}")
            return 1
        return 0

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[Supervisor]:
        """Every service started and ready inside the block (benchmarks), all stopped after it."""
        try:
            await self._start_all()
            yield self
        finally:
            await self.stop_all()

    async def _start_all(self) -> None:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            await asyncio.gather(*(self._start_one(spec, http) for spec in self.specs))

    async def _start_one(self, spec: ServiceSpec, http: httpx.AsyncClient) -> None:
        for dependency in spec.after:
            await self._ready[dependency].wait()
        env = {**os.environ, **spec.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        self.processes[spec.name] = process
        self._tasks.append(asyncio.create_task(self._forward_logs(spec.name, process)))
        self.log(spec.name, f"started (pid {process.pid})")
        await self._wait_ready(spec, process, http)
        self._ready[spec.name].set()
        self.log(spec.name, "ready")

    async def _wait_ready(
        self, spec: ServiceSpec, process: asyncio.subprocess.Process, http: httpx.AsyncClient
    ) -> None:
        if spec.ready_url is None:
            return
        started = time.monotonic()
        deadline = started + spec.ready_timeout_s
        next_progress = started + self.progress_every_s
        while time.monotonic() < deadline:
            if time.monotonic() >= next_progress:
                next_progress += self.progress_every_s
                phase = self._phase.get(spec.name, "starting")
                self.log(spec.name, f"not ready yet ({time.monotonic() - started:.0f} s): {phase}")
            if process.returncode is not None:
                raise StackFailed(f"{spec.name} exited with code {process.returncode} before it was ready")
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(spec.ready_url)).status_code == 200:
                    return
            await asyncio.sleep(0.5)
        raise StackFailed(f"{spec.name} was not ready after {spec.ready_timeout_s:.0f}s ({spec.ready_url})")

    async def _forward_logs(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        to_phase = next((spec.startup_phase for spec in self.specs if spec.name == name), None)
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.log(name, line)
            if to_phase is not None and (phase := to_phase(line)) is not None:
                self._phase[name] = phase

    async def _first_exit(self) -> str:
        waits = {asyncio.create_task(p.wait()): name for name, p in self.processes.items()}
        done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        task = done.pop()
        return f"{waits[task]} exited with code {task.result()}"

    async def stop_all(self) -> None:
        """SIGTERM every child's process group (newest first), then SIGKILL stragglers."""
        for name, process in reversed(list(self.processes.items())):
            if process.returncode is None:
                self.log(name, "stopping")
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for name, process in self.processes.items():
            try:
                await asyncio.wait_for(process.wait(), timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                self.log(name, "did not stop in time; killing")
                _signal_group(process.pid, signal.SIGKILL)
                await process.wait()
            _signal_group(process.pid, signal.SIGKILL)  # grandchildren left in the group (vLLM's engine core)
        for task in self._tasks:
            task.cancel()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def python_module(module: str) -> list[str]:
    return [sys.executable, "-m", module]

"""Second replicas for routing tests: the instant OpenAI-compatible upstream
(openchatkit/bench/instant_upstream.py) as a real process that a test may kill -9 and
restart on the same port."""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.processes import ServiceProcess, free_port


@dataclass
class InstantReplica:
    name: str
    model: str
    log_dir: Path
    delay_ms: float = 0.0
    token_delay_ms: float = 0.0
    port: int = field(default_factory=free_port)
    process: ServiceProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return self.url + "/v1"

    @property
    def key(self) -> str:
        """How the gateway names it (metrics' ``replica`` label)."""
        return self.v1

    def start(self) -> InstantReplica:
        argv = ["--port", str(self.port), "--model", self.model, "--name", self.name]
        argv += ["--delay-ms", str(self.delay_ms), "--token-delay-ms", str(self.token_delay_ms)]
        self.process = ServiceProcess.module(
            f"replica-{self.name}", "openchatkit.bench.instant_upstream", {}, self.log_dir
        )
        self.process.argv += argv
        self.process.start().wait_http(self.url + "/health", timeout=60)
        return self

    def kill(self) -> None:
        """SIGKILL: connections drop mid-request, nothing is answered."""
        assert self.process is not None
        self.process.signal(signal.SIGKILL)
        self.process.process.wait(timeout=30)  # type: ignore[union-attr]

    def stats(self) -> dict[str, object]:
        return dict(httpx.get(self.url + "/stats", timeout=30).json())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def start_replicas(log_dir: Path, model: str, names: list[str], **options: float) -> list[InstantReplica]:
    return [InstantReplica(name, model, log_dir, **options).start() for name in names]  # type: ignore[arg-type]

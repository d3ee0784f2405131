"""Container health check for our images: GET /health of the service this container runs.

The service is read from the main process's command line (pid 1, or ``--pid``):
``python -m gateway`` -> ``GATEWAY_PORT`` (default 8000), vLLM -> its ``--port``. The
feedback worker has no HTTP port: it is healthy while its process lives. Exit 0 healthy,
1 not. Standard library only, so it runs in any of our images.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request

# module run by ``python -m`` -> (env prefix, default port); None: no HTTP server
SERVICES: dict[str, tuple[str, int] | None] = {
    "gateway": ("GATEWAY", 8000),
    "chat_server": ("CHAT", 8001),
    "moderation_server": ("MODERATION", 8002),
    "retrieval_server": ("RETRIEVAL", 8003),
    "feedback_server": ("FEEDBACK", 8004),
    "feedback_server.worker": None,
}
VLLM_MODULE = "vllm.entrypoints.openai.api_server"


def command_line(pid: int) -> list[str]:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return [part.decode() for part in handle.read().split(b"\0") if part]


def health_port(argv: list[str]) -> int | None:
    """The port to probe, or None when the process has no HTTP server."""
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    if module == VLLM_MODULE or "serve" in argv[:3]:
        return int(argv[argv.index("--port") + 1]) if "--port" in argv[:-1] else 8000
    if module not in SERVICES:
        raise SystemExit(f"healthcheck: unknown service command {argv!r}")
    known = SERVICES[module]
    if known is None:
        return None
    prefix, default = known
    return int(os.environ.get(f"{prefix}_PORT", default))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, default=1, help="The service process (default: 1).")
    parser.add_argument("--timeout", type=float, default=4.0, help="Seconds to wait for /health.")
    args = parser.parse_args()
    try:
        port = health_port(command_line(args.pid))
    except OSError as exc:
        print(f"healthcheck: process {args.pid} is gone: {exc}", file=sys.stderr)
        return 1
    if port is None:
        return 0
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=args.timeout) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: http://127.0.0.1:{port}/health: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

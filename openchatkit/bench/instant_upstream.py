"""An instant OpenAI-compatible upstream: answers at once with a fixed text, so a
benchmark measures the gateway rather than the model, and tests have a second replica
that costs nothing to start or kill.

It speaks the part of vLLM's API the gateway uses: ``GET /v1/models``, ``POST
/v1/chat/completions`` and ``/v1/completions`` (stream or not, usage included),
``POST /tokenize``, ``GET /health`` and ``GET /metrics`` (``vllm:num_requests_running``
and ``vllm:num_requests_waiting``). Every answer names the replica in
``system_fingerprint``; each request is logged as one JSON line with its ``X-Request-Id``;
``GET /stats`` counts the generations served.

    python -m openchatkit.bench.instant_upstream --port 9101 --model smollm2-135m-instruct --name b
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

logger = logging.getLogger("instant_upstream")


class InstantUpstream:
    def __init__(self, model: str, name: str, tokens: int, delay_s: float, token_delay_s: float) -> None:
        self.model = model
        self.name = name
        self.tokens = tokens
        self.delay_s = delay_s
        self.token_delay_s = token_delay_s
        self.served = 0
        self.running = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        app.router.add_post("/v1/completions", self.completion)
        app.router.add_post("/tokenize", self.tokenize)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/stats", self.stats)
        return app

    async def models(self, _: web.Request) -> web.Response:
        card = {"id": self.model, "object": "model", "created": 0, "owned_by": "instant", "max_model_len": 8192}
        return web.json_response({"object": "list", "data": [card]})

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(text="")

    async def stats(self, _: web.Request) -> web.Response:
        return web.json_response({"name": self.name, "served": self.served, "running": self.running})

    async def metrics(self, _: web.Request) -> web.Response:
        labels = f'{{model_name="{self.model}"}}'
        text = f"vllm:num_requests_running{labels} {self.running}\nvllm:num_requests_waiting{labels} 0\n"
        return web.Response(text=text, content_type="text/plain")

    async def tokenize(self, request: web.Request) -> web.Response:
        body = await request.json()
        text = body.get("prompt") or json.dumps(body.get("messages"))
        return web.json_response({"count": len(str(text).split()) + 8, "max_model_len": 8192})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=True)

    async def completion(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, chat=False)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        body = await request.json()
        request_id = request.headers.get("X-Request-Id") or uuid.uuid4().hex
        if logger.isEnabledFor(logging.INFO):
            entry = {"event": "request", "path": request.path, "request_id": request_id}
            if "traceparent" in request.headers:
                entry["traceparent"] = request.headers["traceparent"]
            logger.info(json.dumps(entry))
        self.running += 1
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            max_tokens = int(body.get("max_tokens") or self.tokens)
            count = min(max_tokens, self.tokens) if not body.get("ignore_eos") else max_tokens
            self.served += 1
            if body.get("stream"):
                return await self._stream(request, body, chat, count, request_id)
            return web.json_response(self._answer(body, chat, count, request_id))
        finally:
            self.running -= 1

    def _base(self, chat: bool, request_id: str, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion" if chat else "text_completion") + (".chunk" if chunk and chat else "")
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{request_id}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": self.name,
        }

    def _answer(self, body: dict[str, Any], chat: bool, count: int, request_id: str) -> dict[str, Any]:
        text = " ".join(["ok"] * count)
        finish = "length" if count >= int(body.get("max_tokens") or 1 << 30) else "stop"
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        usage = {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}
        return {**self._base(chat, request_id, False), "choices": [choice], "usage": usage}

    async def _stream(
        self, request: web.Request, body: dict[str, Any], chat: bool, count: int, request_id: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        base = self._base(chat, request_id, True)

        async def send(payload: dict[str, Any]) -> None:
            await response.write(b"data: " + json.dumps(payload).encode() + b"\n\n")

        for i in range(count):
            piece = ("" if i == 0 else " ") + "ok"
            delta: dict[str, Any] = {"content": piece}
            if chat and i == 0:
                delta["role"] = "assistant"
            choice = {"index": 0, "delta": delta} if chat else {"index": 0, "text": piece}
            await send({**base, "choices": [{**choice, "finish_reason": None, "logprobs": None}]})
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
        finish = "length" if count >= int(body.get("max_tokens") or 1 << 30) else "stop"
        last = {"index": 0, "delta": {}} if chat else {"index": 0, "text": ""}
        await send({**base, "choices": [{**last, "finish_reason": finish, "logprobs": None}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {"prompt_tokens": 8, "completion_tokens": count, "total_tokens": 8 + count}
            await send({**base, "choices": [], "usage": usage})
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9101)
    parser.add_argument("--model", default="instant")
    parser.add_argument("--name", default="instant", help="Reported in system_fingerprint.")
    parser.add_argument("--tokens", type=int, default=8, help="Tokens per answer (unless max_tokens is lower).")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="Wait before answering.")
    parser.add_argument("--token-delay-ms", type=float, default=0.0, help="Wait between streamed tokens.")
    parser.add_argument("--quiet", action="store_true", help="No line per request (benchmarks).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    upstream = InstantUpstream(args.model, args.name, args.tokens, args.delay_ms / 1000, args.token_delay_ms / 1000)
    web.run_app(upstream.app(), host=args.host, port=args.port, print=None, access_log=None)


@contextlib.contextmanager
def instant_stack(
    replicas: int = 1,
    model: str = "instant",
    gateway_env: dict[str, str] | None = None,
    extra_upstreams: tuple[str, ...] = (),
    upstream_settings: dict[str, Any] | None = None,
) -> Iterator[InstantStack]:
    """``replicas`` instant upstreams and a gateway in front of them (plus ``extra_upstreams``,
    e.g. a running vLLM serving ``model``), as processes; stopped on exit.
    ``upstream_settings`` go into each instant upstream's entry in ``GATEWAY_UPSTREAMS``
    (e.g. ``tokenizer``: count prompts locally, as ``openchatkit run`` configures the gateway)."""
    key = "sk-bench-" + uuid.uuid4().hex[:12]
    processes: list[subprocess.Popen[bytes]] = []
    try:
        urls = []
        for i in range(replicas):
            port = _free_port()
            argv = ["--port", str(port), "--model", model, "--name", f"instant-{i}", "--quiet"]
            processes.append(subprocess.Popen([sys.executable, "-m", "openchatkit.bench.instant_upstream", *argv]))
            urls.append(f"http://127.0.0.1:{port}")
            _wait(urls[-1] + "/health", processes[-1])
        port = _free_port()
        env = {
            **os.environ,
            "GATEWAY_PORT": str(port),
            "GATEWAY_API_KEYS": json.dumps([key]),
            "GATEWAY_UPSTREAMS": json.dumps(
                [{"url": u + "/v1", **(upstream_settings or {})} for u in urls] + [{"url": u} for u in extra_upstreams]
            ),
            "GATEWAY_FEEDBACK__ENABLED": "false",
            "GATEWAY_LOG_LEVEL": "WARNING",
            **(gateway_env or {}),
        }
        gateway = subprocess.Popen([sys.executable, "-m", "gateway"], env=env)
        processes.append(gateway)
        gateway_url = f"http://127.0.0.1:{port}"
        _wait(gateway_url + "/ready", gateway)
        yield InstantStack(urls[0] + "/v1" if urls else "", gateway_url + "/v1", key, model, gateway.pid)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@dataclass
class InstantStack:
    direct_url: str
    gateway_url: str
    api_key: str
    model: str
    gateway_pid: int


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f}s")


if __name__ == "__main__":
    main()

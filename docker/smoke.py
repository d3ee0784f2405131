"""Smoke test of a running deployment (docker compose, or a port-forwarded Helm release):
the gateway is up, lists a model, answers one chat turn (with moderation and retrieval) and
accepts feedback on it. Standard library only.

    docker compose --profile cpu up -d && python docker/smoke.py        # reads ./.env
    GATEWAY_URL=http://127.0.0.1:8000 OPENCHATKIT_API_KEY=sk-... python docker/smoke.py

Exit 0 when every step passed; otherwise the failing step is printed and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def read_env_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def call(base: str, key: str, path: str, body: dict[str, Any] | None = None, timeout: float = 300) -> tuple[int, Any]:
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description="Smoke-test a running openchatkit deployment.")
    parser.add_argument("--env-file", type=Path, default=Path(".env"))
    parser.add_argument("--wait", type=float, default=900.0, help="Seconds to wait for the gateway to be ready.")
    args = parser.parse_args()
    env = {**read_env_file(args.env_file), **os.environ}
    base = env.get("GATEWAY_URL", "http://127.0.0.1:8000").rstrip("/")
    key = env.get("OPENCHATKIT_API_KEY", "")
    if not key:
        print("set OPENCHATKIT_API_KEY (or run next to the .env file)", file=sys.stderr)
        return 1

    deadline = time.monotonic() + args.wait
    while True:
        try:
            status, _ = call(base, key, "/ready", timeout=10)
        except OSError:
            status = 0
        if status == 200:
            break
        if time.monotonic() > deadline:
            print(f"FAIL ready: {base}/ready did not answer 200 in {args.wait:.0f}s", file=sys.stderr)
            return 1
        time.sleep(5)
    print(f"ok   ready: {base}")

    status, models = call(base, key, "/v1/models")
    if status != 200 or not models.get("data"):
        print(f"FAIL models: {status} {models}", file=sys.stderr)
        return 1
    model = models["data"][0]["id"]
    print(f"ok   models: {[entry['id'] for entry in models['data']]}")

    turn = {
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "retrieval": {"enabled": True, "top_k": 2},
    }
    status, answer = call(base, key, "/v1/chat/completions", turn)
    if status != 200 or not answer["choices"][0]["message"]["content"]:
        print(f"FAIL chat: {status} {answer}", file=sys.stderr)
        return 1
    print(f"ok   chat: {answer['choices'][0]['message']['content']!r}")
    print(f"ok   moderation: {answer.get('moderation')}, retrieval: {answer.get('retrieval')}")

    status, feedback = call(base, key, "/v1/feedback", {"response_id": answer["id"], "rating": "up"})
    if status != 202:
        print(f"FAIL feedback: {status} {feedback}", file=sys.stderr)
        return 1
    print(f"ok   feedback: {feedback.get('id')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

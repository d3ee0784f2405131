"""`openchatkit chat` against the real gateway, driven through its stdin."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ChatStack

pytestmark = pytest.mark.vllm


def test_terminal_chat_streams_answers_and_handles_commands(chat_stack: ChatStack) -> None:
    script = (
        "What is the capital of France?\n/temperature 0.1\n/max_tokens 4\nAnd of Italy?\n/reset\n/nonsense\n/quit\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openchatkit.cli",
            "chat",
            "--base-url",
            chat_stack.gateway.url + "/v1",
            "--api-key",
            chat_stack.gateway.api_key,
        ],
        input=script,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"with {chat_stack.chat.model}" in out
    assert "temperature = 0.1" in out and "max_tokens = 4" in out and "conversation cleared" in out
    assert "/reset clears the conversation" in out.split("conversation cleared")[1], "unknown commands print help"
    answers = [
        line
        for line in out.splitlines()[2:]
        if line and not line.startswith(("temperature", "max_tokens", "conversation", "/"))
    ]
    assert len(answers) >= 2 and all(a.strip() for a in answers[:2])


def test_terminal_chat_reports_an_unreachable_gateway() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "openchatkit.cli", "chat", "--base-url", "http://127.0.0.1:9/v1"],
        input="/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot reach a model" in result.stdout

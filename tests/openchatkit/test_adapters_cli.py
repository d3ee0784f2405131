"""`openchatkit adapters` when what it talks to is not there: one clear line, no traceback,
no password echoed."""

from __future__ import annotations

from typer.testing import CliRunner

from openchatkit.cli import app
from openchatkit.local_redis import free_port


def test_an_unreachable_redis_is_one_line_without_its_password() -> None:
    url = f"redis://operator:s3cret-pass@127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(app, ["adapters", "rollback", "support", "--redis-url", url])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "the gateways' Redis at redis://127.0.0.1:" in said and "--redis-url" in said
    assert "s3cret-pass" not in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unreachable_chat_server_names_its_url_and_how_to_start_the_stack() -> None:
    port = free_port()
    result = CliRunner().invoke(app, ["adapters", "list", "--chat-url", f"http://127.0.0.1:{port}"])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert f"cannot reach the chat server at http://127.0.0.1:{port}" in said, said
    assert "make run" in said and "--chat-url" in said and "Traceback" not in result.output

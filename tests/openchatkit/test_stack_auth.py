"""Credentials in the ``make run`` stack: one set of secrets kept 0600 in the data dir, a
private redis-server that wants its password and has its dangerous commands disabled,
and every service configured with the internal token (never on a command line)."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from gateway.config import GatewaySettings
from openchatkit.feedback_stack import stack_redis
from openchatkit.local_redis import free_port, redis_answers
from openchatkit.stack import StackSettings, build_stack


def test_secrets_are_made_once_and_private(tmp_path: Path) -> None:
    stack = StackSettings(data_dir=tmp_path)
    first, again = stack.secrets(), StackSettings(data_dir=tmp_path).secrets()
    assert first == again and len({first.master_key, first.internal_token, first.redis_password}) == 3
    assert stat.S_IMODE((tmp_path / "secrets.json").stat().st_mode) == 0o600


def test_private_redis_wants_its_password_and_denies_dangerous_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nobody answers: a private one
    stack = StackSettings(data_dir=tmp_path)
    url, spec = stack_redis(stack)
    assert spec is not None and stack.secrets().redis_password in url
    assert stack.secrets().redis_password not in " ".join(spec.argv)  # in a 0600 config file, not in `ps`
    process = subprocess.Popen(spec.argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while not redis_answers(url, 0.5):
            assert process.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        port = url.rsplit(":", 1)[1].split("/")[0]
        anonymous = redis.Redis(host="127.0.0.1", port=int(port), socket_timeout=5)
        with pytest.raises(redis.AuthenticationError):
            anonymous.ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=int(port), password="guess", socket_timeout=5).ping()
        app = redis.Redis.from_url(url, socket_timeout=5)
        assert app.ping() and app.set("k", "v") and app.get("k") == b"v"
        for command in (("CONFIG", "GET", "requirepass"), ("FLUSHALL",), ("DEBUG", "SLEEP", "0")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                app.execute_command(*command)
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_every_service_gets_the_internal_token_and_the_gateway_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    stack = StackSettings(data_dir=tmp_path)
    secrets = stack.secrets()
    specs = {spec.name: spec for spec in build_stack(stack)}
    assert specs["chat"].env["CHAT_INTERNAL_TOKEN"] == secrets.internal_token
    for name, prefix in (("moderation", "MODERATION"), ("retrieval", "RETRIEVAL"), ("feedback", "FEEDBACK")):
        assert specs[name].env[f"{prefix}_INTERNAL_TOKEN"] == secrets.internal_token
    gateway = specs["gateway"]
    for spec in specs.values():
        assert secrets.internal_token not in " ".join(spec.argv) and secrets.master_key not in " ".join(spec.argv)
    for key, value in gateway.env.items():
        monkeypatch.setenv(key, value)
    settings = GatewaySettings()
    assert settings.master_key is not None and settings.master_key.get_secret_value() == secrets.master_key
    assert settings.internal_token is not None and settings.internal_token.get_secret_value() == secrets.internal_token
    assert settings.upstreams[0].api_key is not None
    assert settings.upstreams[0].api_key.get_secret_value() == secrets.internal_token
    assert [k.get_secret_value() for k in settings.api_keys] == [stack.api_key]  # the bootstrap key
    assert settings.limits.redis_url == "redis://127.0.0.1:6379/0" and settings.keys.database_url.endswith(
        f"{tmp_path}/feedback.db"
    )
    assert json.loads(gateway.env["GATEWAY_API_KEYS"]) == ["sk-local"]


def test_adapters_and_learn_find_the_stack_that_openchatkit_run_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`openchatkit adapters`/`learn` reach the stack `openchatkit run` built with no flags: its
    private Redis (random port, password) and chat server from the data dir, its internal token."""
    from openchatkit.commands.adapters import _chat_urls, _headers, redis_url_of

    for name in ("REDIS_URL", "GATEWAY_LIMITS__REDIS_URL", "CHAT_API_KEY", "CHAT_INTERNAL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENCHATKIT_DATA_DIR", str(tmp_path))
    stack = StackSettings(data_dir=tmp_path, chat_port=18991)
    specs = {spec.name: spec for spec in build_stack(stack)}
    gateway_redis = specs["gateway"].env["GATEWAY_LIMITS__REDIS_URL"]
    assert f":{stack.secrets().redis_password}@" in gateway_redis  # the private, password-protected Redis
    assert redis_url_of(None) == gateway_redis
    assert redis_url_of("redis://elsewhere:6379/0") == "redis://elsewhere:6379/0"
    assert _chat_urls(None) == [stack.url(18991)]
    assert _headers() == {"Authorization": f"Bearer {stack.secrets().internal_token}"}
    assert oct((tmp_path / "stack-endpoints.json").stat().st_mode & 0o777) == "0o600"
    monkeypatch.setenv("GATEWAY_LIMITS__REDIS_URL", "redis://configured:6379/0")
    assert redis_url_of(None) == "redis://configured:6379/0"


def test_a_stopped_or_dead_stack_leaves_no_endpoints_to_follow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `openchatkit run` recorded (a private Redis with its password) is removed when it
    stops, and ignored when its process died without removing it: the CLI then falls back to
    its settings instead of a Redis that is gone."""
    from gateway.config import LimitSettings
    from openchatkit.commands.adapters import redis_url_of
    from openchatkit.secrets import ENDPOINTS_FILE, clear_endpoints, load_endpoints, save_endpoints

    for name in ("REDIS_URL", "GATEWAY_LIMITS__REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENCHATKIT_DATA_DIR", str(tmp_path))
    save_endpoints(tmp_path, redis_url="redis://:secret@127.0.0.1:1/0", chat_url="http://127.0.0.1:2")
    assert redis_url_of(None) == "redis://:secret@127.0.0.1:1/0"
    clear_endpoints(tmp_path)
    assert not (tmp_path / ENDPOINTS_FILE).exists()
    assert redis_url_of(None) == LimitSettings().redis_url

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"redis_url": "redis://:secret@127.0.0.1:1/0", "pid": dead.stdout.strip()}
    (tmp_path / ENDPOINTS_FILE).write_text(json.dumps(record))
    assert load_endpoints(tmp_path) == {}
    assert redis_url_of(None) == LimitSettings().redis_url
    clear_endpoints(tmp_path)  # not this process's record: left for its owner
    assert (tmp_path / ENDPOINTS_FILE).exists()

"""Virtual keys through real gateway processes: the admin API and the CLI, hashed storage,
rotation with a grace period, revocation and expiry (401), per-key models (403 and a
filtered /v1/models), and no key in any log line or answer after its creation."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import API_KEY, Gateway, start_gateway
from tests.support.feedback import SHARED_REDIS_URL, wait_until
from tests.support.keys import MASTER_KEY, admin, bearer, create_key, keys_env
from tests.support.processes import REPO_ROOT, free_port


@pytest.fixture()
def dead_upstream() -> list[dict[str, object]]:
    return [{"url": f"http://127.0.0.1:{free_port()}/v1"}]


@pytest.fixture()
def keyed_gateway(log_dir: Path, tmp_path: Path, dead_upstream: list[dict[str, object]]) -> Iterator[Gateway]:
    """A gateway with the admin API; no chat model needed for key management."""
    gateway = start_gateway(log_dir, dead_upstream, keys_env(tmp_path, SHARED_REDIS_URL), wait_ready=False)
    yield gateway
    gateway.process.stop()


def models(gateway: Gateway, key: str) -> httpx.Response:
    return httpx.get(gateway.url + "/v1/models", headers=bearer(key), timeout=30)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OPENCHATKIT_MASTER_KEY": MASTER_KEY}
    return subprocess.run(
        [sys.executable, "-m", "openchatkit.cli", "keys", *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_key_lifecycle_through_the_admin_api_and_the_cli(keyed_gateway: Gateway, tmp_path: Path) -> None:
    url = keyed_gateway.url
    assert admin(url, "GET", "").status_code == 200
    assert admin(url, "GET", "", key=API_KEY).status_code == 401  # a client key is not the master key
    assert admin(url, "GET", "", key="wrong").status_code == 401

    made = create_key(url, alias="team-a key", owner="team-a", models=["smollm2-*"], rpm=100)
    key, key_id = made["key"], made["id"]
    assert key.startswith("sk-ock-") and len(key) > 40 and made["hint"].endswith(key[-4:])
    assert models(keyed_gateway, key).status_code == 200
    shown = admin(url, "GET", f"/{key_id}").json()
    assert "key" not in shown and shown["owner"] == "team-a" and shown["rpm"] == 100 and not shown["revoked"]
    assert [k["id"] for k in admin(url, "GET", "?owner=team-a").json()["data"]] == [key_id]

    changed = admin(url, "PATCH", f"/{key_id}", {"rpm": 50, "tpm": 5000})
    assert changed.status_code == 200 and changed.json()["rpm"] == 50
    headers = models(keyed_gateway, key).headers
    assert headers["x-ratelimit-limit-requests"] == "50" and headers["x-ratelimit-limit-tokens"] == "5000"

    rotated = admin(url, "POST", f"/{key_id}/rotate", {"grace_period_s": 4}).json()
    new_key = rotated["key"]
    assert new_key != key and rotated["id"] == key_id
    assert models(keyed_gateway, new_key).status_code == 200
    assert models(keyed_gateway, key).status_code == 200  # within the grace period
    wait_until(lambda: models(keyed_gateway, key).status_code == 401, 30, "the old key to stop working")
    assert models(keyed_gateway, new_key).status_code == 200

    revoked = admin(url, "POST", f"/{key_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    refused = models(keyed_gateway, new_key)  # this replica dropped its cache: at once
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
    assert admin(url, "POST", "/key_nope/revoke").status_code == 404

    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    expiring = create_key(url, expires_at=soon)["key"]
    assert models(keyed_gateway, expiring).status_code == 200
    wait_until(lambda: models(keyed_gateway, expiring).status_code == 401, 30, "the key to expire")
    assert models(keyed_gateway, expiring).json()["error"]["code"] == "key_expired"

    # The CLI drives the same API.
    created = cli("create", "--alias", "from-cli", "--rpm", "7", "--model", "smollm2-*", "--gateway-url", url)
    assert created.returncode == 0, created.stderr
    cli_key = created.stdout.strip()
    assert cli_key.startswith("sk-ock-") and models(keyed_gateway, cli_key).status_code == 200
    listed = cli("list", "--json", "--gateway-url", url)
    assert listed.returncode == 0, listed.stderr
    [entry] = [k for k in json.loads(listed.stdout) if k["alias"] == "from-cli"]
    assert entry["rpm"] == 7 and entry["models"] == ["smollm2-*"] and cli_key not in listed.stdout
    rotated_cli = cli("rotate", entry["id"], "--gateway-url", url)
    assert rotated_cli.returncode == 0, rotated_cli.stderr
    cli_key_2 = rotated_cli.stdout.strip()
    assert models(keyed_gateway, cli_key).status_code == 401 and models(keyed_gateway, cli_key_2).status_code == 200
    assert cli("revoke", entry["id"], "--gateway-url", url).returncode == 0
    assert models(keyed_gateway, cli_key_2).status_code == 401
    assert cli("revoke", "key_missing", "--gateway-url", url).returncode == 1

    # Shown once: no key in any answer, log line or database row after its creation.
    plaintexts = [key, new_key, expiring, cli_key, cli_key_2]
    listing = admin(url, "GET", "").text
    keyed_gateway.process.stop()
    logs = keyed_gateway.process.log_path.read_text()
    database = (tmp_path / "keys.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("keys.db-*") if p.is_file()
    )
    for plaintext in plaintexts:
        assert plaintext not in logs and plaintext not in listing
        assert plaintext.encode() not in database
    assert hashlib.sha256(cli_key_2.encode()).hexdigest().encode() in database
    assert "api key created" in logs and key_id in logs  # ids are logged, keys never


def test_missing_wrong_and_static_keys(keyed_gateway: Gateway) -> None:
    missing = httpx.get(keyed_gateway.url + "/v1/models")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert "x-request-id" in missing.headers
    fake = "sk-ock-" + "x" * 43
    wrong = models(keyed_gateway, fake)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key" and fake not in wrong.text
    assert models(keyed_gateway, API_KEY).status_code == 200  # the bootstrap (static) key keeps working
    assert httpx.get(keyed_gateway.url + "/health").status_code == 200
    assert httpx.get(keyed_gateway.url + "/").status_code == 200  # the page itself; its API calls carry the key


def test_revocation_reaches_another_replica_within_the_cache_ttl(
    log_dir: Path, tmp_path: Path, dead_upstream: list[dict[str, object]]
) -> None:
    env = keys_env(tmp_path, SHARED_REDIS_URL, GATEWAY_KEYS__CACHE_TTL_S="3")
    first = start_gateway(log_dir, dead_upstream, env, wait_ready=False)
    second = start_gateway(log_dir, dead_upstream, env, wait_ready=False)
    try:
        made = create_key(first.url)
        assert models(second, made["key"]).status_code == 200  # now cached by the second replica
        assert admin(first.url, "POST", f"/{made['id']}/revoke").status_code == 200
        revoked_at = time.monotonic()
        wait_until(lambda: models(second, made["key"]).status_code == 401, 30, "the other replica to refuse the key")
        assert time.monotonic() - revoked_at < 3 + 5  # the TTL, plus slack for a busy machine
        assert models(first, made["key"]).status_code == 401
    finally:
        first.process.stop()
        second.process.stop()


def test_metrics_can_require_a_key(log_dir: Path, tmp_path: Path, dead_upstream: list[dict[str, object]]) -> None:
    env = keys_env(tmp_path, SHARED_REDIS_URL, GATEWAY_METRICS_KEY="sk-metrics-test")
    gateway = start_gateway(log_dir, dead_upstream, env, wait_ready=False)
    try:
        made = create_key(gateway.url, rpm=1000)
        assert models(gateway, made["key"]).status_code == 200
        assert httpx.get(gateway.url + "/metrics").status_code == 401
        assert httpx.get(gateway.url + "/metrics", headers=bearer(made["key"])).status_code == 401
        metrics = httpx.get(gateway.url + "/metrics", headers=bearer("sk-metrics-test"))
        assert metrics.status_code == 200
        assert f'openchatkit_gateway_key_requests_total{{key_id="{made["id"]}"}}' in metrics.text
        assert made["key"] not in metrics.text
        assert httpx.get(gateway.url + "/ready").status_code == 503  # probes stay open (no chat model here)
    finally:
        gateway.process.stop()


@pytest.mark.vllm
def test_models_outside_the_key_list_are_hidden_and_refused(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    gateway = gateway_factory(env=keys_env(tmp_path, SHARED_REDIS_URL))
    model = gateway.client().models.list().data[0].id  # the static key sees every model
    other = create_key(gateway.url, models=["support-*"])["key"]
    allowed = create_key(gateway.url, models=[model])["key"]
    other_client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=other, max_retries=0)
    assert other_client.models.list().data == []
    with pytest.raises(openai.NotFoundError):
        other_client.models.retrieve(model)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        other_client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
    assert denied.value.status_code == 403 and denied.value.code == "permission_denied"
    allowed_client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=allowed, max_retries=0)
    assert [m.id for m in allowed_client.models.list().data] == [model]
    answer = allowed_client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert answer.choices[0].message.content is not None

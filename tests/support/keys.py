"""Gateways with virtual keys and limits for tests: the admin API, a key store per test
(SQLite under tmp_path), the limiter on a Redis of the test's choosing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

MASTER_KEY = "sk-admin-test-master"


def keys_env(tmp_path: Path, redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_MASTER_KEY": MASTER_KEY,
        "GATEWAY_KEYS__DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}",
        "GATEWAY_KEYS__CACHE_TTL_S": "2",
        "GATEWAY_LIMITS__REDIS_URL": redis_url,
        "GATEWAY_FEEDBACK__REDIS_URL": redis_url,
        **extra,
    }


def admin(gateway_url: str, method: str, path: str, body: Any = None, key: str = MASTER_KEY) -> httpx.Response:
    return httpx.request(
        method, gateway_url + "/admin/keys" + path, json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def create_key(gateway_url: str, **fields: Any) -> dict[str, Any]:
    answer = admin(gateway_url, "POST", "", fields)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}

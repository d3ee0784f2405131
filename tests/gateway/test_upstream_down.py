"""A gateway whose chat model is not there: not ready, and clear 503s."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import start_gateway
from tests.support.processes import free_port


def test_no_chat_model_means_not_ready_and_503(log_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    gateway = start_gateway(log_dir, [{"url": dead}], wait_ready=False)
    try:
        ready = httpx.get(gateway.url + "/ready")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "checks": {"chat_model": False}}
        assert httpx.get(gateway.url + "/health").status_code == 200
        with pytest.raises(openai.InternalServerError) as err:
            gateway.client().chat.completions.create(model="any", messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 503
        assert "No chat model is reachable" in err.value.message
    finally:
        gateway.process.stop()

"""The shared vLLM server of the suite starts from the compile cache instead of recompiling."""

from __future__ import annotations

import pytest

from tests.conftest import ChatModelServer

pytestmark = pytest.mark.vllm


def test_vllm_never_recompiles_after_a_cache_load_failure(chat_server: ChatModelServer) -> None:
    log = chat_server.process.log_path.read_text(errors="replace")
    assert "Warming up done" in log
    assert "Compiling model again due to a load failure" not in log

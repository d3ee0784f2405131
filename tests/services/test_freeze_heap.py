"""Services freeze their startup heap (models, tokenizers, imports) out of the garbage
collector's full passes once it is loaded."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from services.app import freeze_heap


def test_freeze_heap_moves_what_is_alive_out_of_collection() -> None:
    gc.unfreeze()
    kept = [[i] for i in range(1000)]  # lists: objects the collector tracks
    freeze_heap()
    try:
        assert gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


async def test_the_gateway_freezes_its_heap_at_startup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.app import build_app
    from gateway.config import GatewaySettings

    monkeypatch.setenv("GATEWAY_UPSTREAMS", json.dumps([{"url": "http://127.0.0.1:9/v1"}]))
    monkeypatch.setenv("GATEWAY_FEEDBACK__ENABLED", "false")
    monkeypatch.setenv("OPENCHATKIT_DATA_DIR", str(tmp_path))
    app = build_app(GatewaySettings())
    gc.unfreeze()
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()

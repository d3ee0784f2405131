"""The gateway's chat hooks, in the order they run (see gateway/pipeline.py)."""

from __future__ import annotations

import httpx

from gateway.config import GatewaySettings
from gateway.pipeline import ChatHook


def build_hooks(settings: GatewaySettings, http: httpx.AsyncClient) -> list[ChatHook]:
    hooks: list[ChatHook] = []
    return hooks

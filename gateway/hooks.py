"""The gateway's chat hooks, in the order they run (see gateway/pipeline.py)."""

from __future__ import annotations

import httpx

from gateway.config import GatewaySettings
from gateway.feedback import TurnRecorderHook
from gateway.moderation import ModerationHook
from gateway.pipeline import ChatHook
from gateway.retrieval import RetrievalHook


def build_hooks(settings: GatewaySettings, http: httpx.AsyncClient) -> list[ChatHook]:
    hooks: list[ChatHook] = []
    if settings.moderation.enabled:  # first: a refused request goes no further
        hooks.append(ModerationHook(settings.moderation, http))
    hooks.append(RetrievalHook(settings.retrieval, http))  # after moderation: retrieved text never reaches it
    if settings.feedback.enabled:  # last: it records the turn as the client got it
        hooks.append(TurnRecorderHook(settings.feedback))
    return hooks


async def close_hooks(hooks: list[ChatHook]) -> None:
    """Stop hooks that run background work (those with an ``aclose``)."""
    for hook in hooks:
        close = getattr(hook, "aclose", None)
        if close is not None:
            await close()

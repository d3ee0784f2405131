"""The gateway's chat hooks, in the order they run (see gateway/pipeline.py)."""

from __future__ import annotations

import httpx

from gateway.config import GatewaySettings
from gateway.moderation import CitationScreen, ModerationHook
from gateway.pipeline import ChatHook
from gateway.retrieval import RetrievalHook
from gateway.turn_capture import TurnRecorderHook


def build_hooks(settings: GatewaySettings, http: httpx.AsyncClient) -> list[ChatHook]:
    hooks: list[ChatHook] = []
    moderation = ModerationHook(settings.moderation, http) if settings.moderation.enabled else None
    if moderation is not None:  # first: a refused request goes no further
        hooks.append(moderation)
    # After moderation; retrieved text is screened by its own label (stored at ingest).
    hooks.append(RetrievalHook(settings.retrieval, http, CitationScreen(moderation) if moderation else None))
    if settings.feedback.enabled:  # last: it records the turn as the client got it
        hooks.append(TurnRecorderHook(settings.feedback))
    return hooks


def completion_hooks(hooks: list[ChatHook]) -> list[ChatHook]:
    """The hooks /v1/completions runs (same instances): moderation and turn capture; a raw
    prompt has no place for retrieved sources."""
    return [hook for hook in hooks if not isinstance(hook, RetrievalHook)]


async def close_hooks(hooks: list[ChatHook]) -> None:
    """Stop hooks that run background work (those with an ``aclose``)."""
    for hook in hooks:
        close = getattr(hook, "aclose", None)
        if close is not None:
            await close()

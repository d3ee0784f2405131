"""Admitting a generation request: the key may use the model (else 403), and the tokens
it may take (prompt tokens counted with the model's tokenizer, plus ``max_tokens`` or
the model's default) are reserved against the key's limits before anything is generated.
After the answer, :meth:`Ticket.finish` corrects the reservation from the real usage."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from gateway.auth import PRINCIPAL, TICKET
from gateway.keys.records import ANONYMOUS, Principal
from gateway.limits.ticket import Ticket
from gateway.registry import ModelRoute
from gateway.upstream import Generation
from services.errors import OpenAIError, PermissionDeniedError
from services.protocol import ChatCompletionRequest, CompletionRequest

logger = logging.getLogger(__name__)


def principal_of(request: Request) -> Principal:
    return request.scope.get("state", {}).get(PRINCIPAL) or Principal(ANONYMOUS)


def ticket_of(request: Request) -> Ticket:
    ticket = request.scope.get("state", {}).get(TICKET)
    if ticket is None:  # no auth middleware (an app built for a unit test)
        ticket = Ticket(principal_of(request), None)
        request.scope.setdefault("state", {})[TICKET] = ticket
    return ticket


def check_model(principal: Principal, model: str) -> None:
    if not principal.may_use(model):
        raise PermissionDeniedError(
            f"This API key may not use the model '{model}'.", param="model", code="permission_denied"
        )


def _fallback_count(text: str) -> int:
    return len(text.encode()) + 8  # byte-level tokenizers never make more tokens than bytes


INLINE_COUNT_BYTES = 2048  # shorter prompts are counted on the event loop: cheaper than a thread hop


async def _count_chat(route: ModelRoute, messages: list[dict[str, Any]]) -> int:
    try:
        count_reserve = getattr(route.counter, "count_reserve", None)
        if count_reserve is not None and sum(len(str(m.get("content") or "")) for m in messages) < INLINE_COUNT_BYTES:
            return int(count_reserve(messages))
        return await route.counter.count_chat(route.model, messages)
    except OpenAIError:
        raise
    except Exception as exc:  # an odd message shape: reserve an upper bound, corrected after the answer
        logger.debug("prompt count failed, reserving an upper bound: %s", exc)
        return sum(_fallback_count(str(m.get("content") or "")) for m in messages)


async def _count_prompt(route: ModelRoute, prompt: str | list[Any]) -> int:
    if isinstance(prompt, str):
        prompt = [prompt]
    total = 0
    for item in prompt:
        if isinstance(item, int):
            total += 1
        elif isinstance(item, list):
            total += len(item)
        else:
            count_text = getattr(route.counter, "count_text", None)
            total += await count_text(route.model, item) if count_text else _fallback_count(item)
    return total


async def admit_chat(request: Request, parsed: ChatCompletionRequest, body: dict[str, Any]) -> str:
    """Admit the request; returns the base of the answer's id (recorded as this key's)."""

    async def reserve(route: ModelRoute) -> tuple[int, int]:
        prompt = await _count_chat(route, list(body.get("messages") or []))
        return prompt, prompt + _completion_reserve(request, route, parsed.requested_max_tokens(), parsed.n)

    return await _admit(request, parsed.model, "chatcmpl", reserve)


async def admit_completion(request: Request, parsed: CompletionRequest) -> str:
    """Admit the request (every prompt's completions reserved); returns the base of the answer's id."""

    async def reserve(route: ModelRoute) -> tuple[int, int]:
        prompt = await _count_prompt(route, parsed.prompt)
        prompts = parsed.prompt
        count = len(prompts) if isinstance(prompts, list) and prompts and not isinstance(prompts[0], int) else 1
        return prompt, prompt + count * _completion_reserve(request, route, parsed.max_tokens, parsed.n)

    return await _admit(request, parsed.model, "cmpl", reserve)


async def _admit(
    request: Request, model: str, id_prefix: str, reserve: Callable[[ModelRoute], Awaitable[tuple[int, int]]]
) -> str:
    """403 unless the key may use ``model``; a key with a tokens-per-minute limit reserves
    ``reserve(route)`` = (prompt tokens, prompt + completion tokens) before generation.
    Returns a fresh base id; the answer's id ``<id_prefix>-<base>`` is recorded as this key's."""
    ticket = ticket_of(request)
    check_model(ticket.principal, model)
    base_id = uuid.uuid4().hex
    prompt = tokens = 0
    if ticket.principal.tpm:
        route = await request.app.state.registry.resolve(model)
        prompt, tokens = await reserve(route)
    await ticket.admit(tokens, prompt, response_id=f"{id_prefix}-{base_id}")
    return base_id


def _completion_reserve(request: Request, route: ModelRoute, max_tokens: int | None, n: int | None) -> int:
    per_choice = (
        max_tokens or route.upstream.default_max_tokens or request.app.state.settings.limits.default_reserve_tokens
    )
    return per_choice * max(1, n or 1)


def metered(request: Request, result: Generation) -> Generation:
    """Let the ticket see the answer's usage (streams: counted as they pass)."""
    ticket = ticket_of(request)
    if result.stream is not None:
        result.stream = ticket.count_stream(result.stream)
        ticket.usage_source = result
    elif result.body is not None:
        ticket.usage = result.body.get("usage")
    return result

"""Retry an async call with exponential backoff while a dependency is down (tenacity).

One helper for every "wait for Redis / the store to come back" loop, so each says only what
it retries, on which errors, and what to do between attempts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, wait_exponential

logger = logging.getLogger(__name__)

T = TypeVar("T")


class RetryStopped(Exception):
    """The stop event was set while the call was failing: the caller is shutting down."""


async def retry_with_backoff(
    action: Callable[[], Awaitable[T]],
    *,
    retry_if: Callable[[BaseException], bool],
    what: str,
    first_delay_s: float,
    max_delay_s: float,
    stop: asyncio.Event | None = None,
    between_attempts: Callable[[], Awaitable[None]] | None = None,
    log: logging.Logger = logger,
) -> T:
    """``await action()`` until it succeeds; an error for which ``retry_if`` is false propagates.

    Waits ``first_delay_s``, doubling up to ``max_delay_s`` (seconds), between attempts, each
    failure logged as a warning that starts with ``what`` (``"store unavailable"``). With a
    ``stop`` event: set after a failure or during a wait, it ends the retries with
    :class:`RetryStopped` (from the last error) and waits end early. ``between_attempts`` runs
    after each failure, before the wait (e.g. to keep a claim on pending work fresh).
    """

    async def before_wait(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if stop is not None and stop.is_set():
            raise RetryStopped(what) from error
        delay = state.next_action.sleep if state.next_action else 0.0
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        log.warning("%s, retrying in %.1fs (attempt %d): %s", what, delay, state.attempt_number, first_line)
        if between_attempts is not None:
            await between_attempts()

    async def wait(seconds: float) -> None:
        if stop is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
        if stop.is_set():
            raise RetryStopped(what)

    retrying = AsyncRetrying(
        retry=retry_if_exception(retry_if),
        wait=wait_exponential(multiplier=first_delay_s, max=max_delay_s),
        sleep=wait,
        before_sleep=before_wait,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            result = await action()
            if attempt.retry_state.attempt_number > 1:
                log.info("%s: succeeded at attempt %d", what, attempt.retry_state.attempt_number)
            return result
    raise AssertionError("unreachable: the retries end in a result or an error")

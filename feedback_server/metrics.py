"""Queue gauges for dashboards and autoscaling: how far the worker lags behind the API.

The API refreshes them every few seconds from Redis (``XLEN``, ``XPENDING``), so every API
replica exports the same values and Prometheus can take any (``max`` over replicas).
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import Gauge

from feedback_server.queue import FeedbackQueue

logger = logging.getLogger(__name__)

QUEUE_LENGTH = Gauge(
    "openchatkit_feedback_queue_length",
    "Entries in the feedback stream (not yet trimmed).",
    multiprocess_mode="mostrecent",
)
QUEUE_PENDING = Gauge(
    "openchatkit_feedback_queue_pending",
    "Entries delivered to a worker and not yet acknowledged (stored).",
    multiprocess_mode="mostrecent",
)
QUEUE_DEAD_LETTERS = Gauge(
    "openchatkit_feedback_queue_dead_letters",
    "Entries dead-lettered after max deliveries.",
    multiprocess_mode="mostrecent",
)


async def refresh_queue_gauges(queue: FeedbackQueue, group: str, dead_letters: str, interval_s: float) -> None:
    """Runs until cancelled; a Redis error keeps the last values and is logged once per outage."""
    failing = False
    while True:
        try:
            depth = await queue.depth(group, dead_letters)
        except Exception as exc:  # any Redis failure: keep serving, report once
            if not failing:
                logger.warning("feedback queue gauges not refreshed: %s", exc)
            failing = True
        else:
            failing = False
            QUEUE_LENGTH.set(depth["stream_length"])
            QUEUE_PENDING.set(depth["pending"])
            QUEUE_DEAD_LETTERS.set(depth["dead_letters"])
        await asyncio.sleep(interval_s)

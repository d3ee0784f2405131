"""The feedback API's logic: accept a report only once Redis holds it, look reports up,
and count what is queued and stored."""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

import redis.asyncio as redis

from feedback_server.protocol import FeedbackEvent, new_feedback_id
from feedback_server.queue import FeedbackQueue
from feedback_server.store import FeedbackStore
from feedback_server.store.turns_and_feedback import feedback_json
from services.errors import BadRequestError, NotFoundError, OpenAIError, ServiceUnavailableError
from services.feedback_protocol import FeedbackRequest

logger = logging.getLogger(__name__)

MAX_IDEMPOTENCY_KEY_CHARS = 255


class IdempotencyKeyReused(OpenAIError):
    """IETF idempotency-key draft: a key reused with a different payload answers 422."""

    status_code = 422
    error_type = "invalid_request_error"


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not value or len(value) > MAX_IDEMPOTENCY_KEY_CHARS or not value.isprintable() or not value.isascii():
        raise BadRequestError(
            f"The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters.",
            param="Idempotency-Key",
            code="invalid_idempotency_key",
        )
    return value


class StoreGate:
    """The store once it has opened (it may open after the API starts taking feedback)."""

    def __init__(self) -> None:
        self.store: FeedbackStore | None = None

    def require(self) -> FeedbackStore:
        if self.store is None:
            raise ServiceUnavailableError("The feedback store is not available yet.", code="store_unavailable")
        return self.store


class FeedbackService:
    def __init__(self, queue: FeedbackQueue, stores: StoreGate, group: str, dead_letters: str, max_text_chars: int):
        self.queue = queue
        self.stores = stores
        self.group = group
        self.dead_letters = dead_letters
        self.max_text_chars = max_text_chars

    def _check_lengths(self, request: FeedbackRequest) -> None:
        for name in ("ideal_response", "comment"):
            text = getattr(request, name)
            if text is not None and len(text) > self.max_text_chars:
                raise BadRequestError(
                    f"'{name}' is {len(text)} characters; the limit is {self.max_text_chars}.",
                    param=name,
                    code="string_too_long",
                )
        if request.rating is None and not request.flags and not request.ideal_response and not request.comment:
            raise BadRequestError(
                "Feedback needs at least one of 'rating', 'flags', 'ideal_response' or 'comment'.",
                param="rating",
                code="empty_feedback",
            )

    async def submit(
        self, request: FeedbackRequest, idempotency_key: str | None, key_id: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Queue a report on the Redis Stream (the worker stores it later).

        Returns the 202 body ``{"id": "fb-...", "object": "feedback", "status": "queued",
        "response_id"}`` and whether this was a replay of an earlier request with the same
        Idempotency-Key (then the original's id). ``key_id``: the API key (id) that posted it;
        idempotency keys are scoped to it. 400 for empty feedback or text over ``max_text_chars``,
        422 ``idempotency_key_reused`` for the key with another body, 503 ``queue_unavailable``
        when Redis is down (nothing was recorded)."""
        self._check_lengths(request)
        flags = list(dict.fromkeys(request.flags))
        event = FeedbackEvent(
            id=new_feedback_id(),
            response_id=request.response_id,
            rating=request.rating,
            flags=flags,
            ideal_response=request.ideal_response,
            comment=request.comment,
            created_at=time.time(),
            key_id=key_id,
        )
        if idempotency_key is not None and key_id is not None:
            idempotency_key = f"{key_id}:{idempotency_key}"
        fingerprint = hashlib.sha256(request.model_dump_json().encode()).hexdigest()[:32] if idempotency_key else ""
        try:
            result = await self.queue.enqueue(event, idempotency_key, fingerprint)
        except redis.RedisError as exc:
            logger.warning("feedback not queued: %s", exc)
            raise ServiceUnavailableError(
                "The feedback queue is unavailable; nothing was recorded. Retry later.", code="queue_unavailable"
            ) from exc
        if not result.fingerprint_matches:
            raise IdempotencyKeyReused(
                "This Idempotency-Key was already used with a different request body.",
                param="Idempotency-Key",
                code="idempotency_key_reused",
            )
        body = {"id": result.feedback_id, "object": "feedback", "status": "queued", "response_id": request.response_id}
        return body, not result.created

    async def get(self, feedback_id: str, key_id: str | None = None) -> dict[str, Any]:
        """A report by id; with ``key_id``, only if that key posted it (else 404)."""
        store_error: Exception | None = None
        if self.stores.store is not None:
            try:
                row = await self.stores.store.get_feedback(feedback_id)
                if row is not None:
                    if key_id is not None and row.key_id != key_id:
                        raise _feedback_not_found(feedback_id)
                    return feedback_json(row)
            except NotFoundError:
                raise
            except Exception as exc:  # look in the queue instead
                store_error = exc
        try:
            queued = await self.queue.find(feedback_id)
        except redis.RedisError as exc:
            raise ServiceUnavailableError("The feedback queue is unavailable.", code="queue_unavailable") from exc
        if queued is not None and (key_id is None or queued.key_id == key_id):
            return {**queued_json(queued), "status": "queued"}
        if queued is None and (store_error is not None or self.stores.store is None):
            raise ServiceUnavailableError("The feedback store is unavailable.", code="store_unavailable")
        raise _feedback_not_found(feedback_id)

    async def stats(self) -> dict[str, Any]:
        """``{"object": "feedback.stats", "stored": {table counts}, "queue": {"stream_length",
        "pending", "dead_letters"}}``; 503 ``store_unavailable``/``queue_unavailable``."""
        store = self.stores.require()
        try:
            stored = await store.counts()
        except Exception as exc:
            raise ServiceUnavailableError("The feedback store is unavailable.", code="store_unavailable") from exc
        try:
            queue = await self.queue.depth(self.group, self.dead_letters)
        except redis.RedisError as exc:
            raise ServiceUnavailableError("The feedback queue is unavailable.", code="queue_unavailable") from exc
        return {"object": "feedback.stats", "stored": stored, "queue": queue}


def _feedback_not_found(feedback_id: str) -> NotFoundError:
    return NotFoundError(f"No feedback with id '{feedback_id[:128]}'.", param="id", code="feedback_not_found")


def queued_json(event: FeedbackEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "object": "feedback",
        "response_id": event.response_id,
        "rating": event.rating.value if event.rating else None,
        "flags": [flag.value for flag in event.flags],
        "ideal_response": event.ideal_response,
        "comment": event.comment,
        "created_at": int(event.created_at),
    }

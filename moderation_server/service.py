"""Validates texts, runs them through the backend, and decides ``flagged``."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

from moderation_server.backends import ModerationBackend
from moderation_server.config import ModerationSettings
from moderation_server.protocol import Classification
from services.errors import BadRequestError

CLASSIFIED = Counter("openchatkit_moderation_texts_total", "Texts classified, by label.", ["backend", "label"])
BATCH_SECONDS = Histogram(
    "openchatkit_moderation_request_seconds",
    "Backend time per request.",
    ["backend"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class ModerationService:
    def __init__(self, backend: ModerationBackend, settings: ModerationSettings) -> None:
        self.backend = backend
        self._settings = settings
        self._flagged = frozenset(settings.flagged_labels)

    @property
    def model(self) -> str:
        return self.backend.model

    def texts_of(self, value: object) -> list[str]:
        """The texts to classify, or a 400 naming the first bad one."""
        if not isinstance(value, (str, list)):
            raise BadRequestError(
                f"'input' must be a string or a list of strings; got {_json_type(value)}.",
                param="input",
                code="invalid_type",
            )
        texts: list[object] = [value] if isinstance(value, str) else value
        if not texts:
            raise BadRequestError("'input' must not be an empty list.", param="input", code="invalid_value")
        if len(texts) > self._settings.max_inputs:
            raise BadRequestError(
                f"'input' has {len(texts)} texts; at most {self._settings.max_inputs} are allowed per request.",
                param="input",
                code="too_many_inputs",
            )
        for i, text in enumerate(texts):
            param = "input" if isinstance(value, str) else f"input[{i}]"
            if not isinstance(text, str):
                raise BadRequestError(
                    f"'{param}' must be a string; got {_json_type(text)}.", param=param, code="invalid_type"
                )
            if not text.strip():
                raise BadRequestError(f"'{param}' is empty.", param=param, code="invalid_value")
            if len(text) > self._settings.max_chars:
                raise BadRequestError(
                    f"'{param}' has {len(text)} characters; the limit is {self._settings.max_chars}.",
                    param=param,
                    code="input_too_long",
                )
        total = sum(len(str(text)) for text in texts)
        if total > self._settings.max_request_chars:
            raise BadRequestError(
                f"'input' has {total} characters in all; the limit is {self._settings.max_request_chars} per request.",
                param="input",
                code="input_too_long",
            )
        return [str(text) for text in texts]

    async def classify(self, texts: list[str]) -> list[Classification]:
        started = time.perf_counter()
        scored = await self.backend.score(texts)
        BATCH_SECONDS.labels(self._settings.backend).observe(time.perf_counter() - started)
        results = []
        for item in scored:
            CLASSIFIED.labels(self._settings.backend, item.label).inc()
            results.append(Classification(label=item.label, flagged=item.label in self._flagged, scores=item.scores))
        return results


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}
    return names.get(type(value), "string" if isinstance(value, str) else type(value).__name__)

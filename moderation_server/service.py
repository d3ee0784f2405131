"""Validates texts, runs them (and what obfuscated text decodes to) through the backend,
checks their language, and decides ``flagged``.

Accepted ``input`` forms (OpenAI's): a string, a list of strings, or a list of content
parts ``[{"type": "text", "text": ...}, ...]``, whose text parts are classified together
as one input (one result). Image parts (``image_url``) are a 400
``unsupported_input_type``: this service classifies text only, and an image it cannot see
must not pass as moderated.
"""

from __future__ import annotations

import hashlib
import time

from cachetools import LRUCache
from prometheus_client import Counter, Histogram

from moderation_server.backends import ModerationBackend, Scored
from moderation_server.config import ModerationSettings
from moderation_server.language import LanguagePolicy
from moderation_server.obfuscation import decodings
from moderation_server.protocol import Classification
from services.errors import BadRequestError
from services.moderation_labels import SEVERITY

UNSUPPORTED = Counter(
    "openchatkit_moderation_unsupported_language_total", "Texts in a language the model cannot judge.", ["backend"]
)
CLASSIFIED = Counter("openchatkit_moderation_texts_total", "Texts classified, by label.", ["backend", "label"])
CACHED = Counter(
    "openchatkit_moderation_cached_texts_total",
    "Texts whose scores came from the score cache (re-sent history), not the model.",
    ["backend"],
)
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
        self.languages = LanguagePolicy(
            settings.supported_languages, settings.language_min_confidence, settings.language_min_letters
        )
        # Text digest -> the backend's scores; the model and rule are fixed for the process.
        self._cache: LRUCache[bytes, Scored] | None = (
            LRUCache(settings.score_cache_size) if settings.score_cache_size else None
        )

    @property
    def model(self) -> str:
        return self.backend.model

    def texts_of(self, value: object) -> list[str]:
        """The texts to classify, or a 400 naming the first bad one."""
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            value = text_of_parts(value)
        if not isinstance(value, (str, list)):
            raise BadRequestError(
                f"'input' must be a string, a list of strings or a list of text parts; got {_json_type(value)}.",
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
        """One result per text, in order: ``label`` (the worst verdict over the text and its
        decodings, under the decision rule tuned at training), ``scores`` (label -> probability),
        its ``language``, and ``flagged`` (a flagged label, or a language the model cannot judge
        when ``flag_unsupported_languages``). 503 ``overloaded`` when more than
        ``max_queued_texts`` wait for the model; 502 when the ``llm`` backend answers unusably."""
        started = time.perf_counter()
        languages = [self.languages.check(text) for text in texts]
        batch, owners = list(texts), list(range(len(texts)))
        how: list[str | None] = [None] * len(texts)
        if self._settings.decode_obfuscation:
            for i, text in enumerate(texts):
                for decoding, decoded in decodings(text, self._is_english):
                    batch.append(decoded)
                    owners.append(i)
                    how.append(decoding)
        scored = await self._score(batch)
        BATCH_SECONDS.labels(self._settings.backend).observe(time.perf_counter() - started)
        worst: list[tuple[Scored, str | None]] = [(scored[i], None) for i in range(len(texts))]
        for item, owner, method in zip(scored[len(texts) :], owners[len(texts) :], how[len(texts) :], strict=True):
            if SEVERITY[item.label] > SEVERITY[worst[owner][0].label]:
                worst[owner] = (item, method)
        results = []
        for (item, method), language in zip(worst, languages, strict=True):
            supported = language.supported or method is not None  # a decoding it could judge
            CLASSIFIED.labels(self._settings.backend, item.label).inc()
            if not supported:
                UNSUPPORTED.labels(self._settings.backend).inc()
            flagged = item.label in self._flagged or (not supported and self._settings.flag_unsupported_languages)
            results.append(
                Classification(
                    label=item.label,
                    flagged=flagged,
                    scores=item.scores,
                    language={**language.to_dict(), "supported": supported},
                    decoded=method,
                )
            )
        return results

    def forget_scores(self) -> None:
        """Empty the score cache (benchmarks start each conversation from nothing)."""
        if self._cache is not None:
            self._cache.clear()

    async def _score(self, texts: list[str]) -> list[Scored]:
        """The backend's scores of ``texts``, each distinct text scored once and remembered
        (``score_cache_size``): a conversation re-sends its history with every turn."""
        if self._cache is None:
            return await self.backend.score(texts)
        keys = [hashlib.blake2b(text.encode(), digest_size=16).digest() for text in texts]
        found = {key: self._cache.get(key) for key in keys}
        known = {key: item for key, item in found.items() if item is not None}
        missing = [key for key, item in found.items() if item is None]
        if known:
            CACHED.labels(self._settings.backend).inc(sum(key in known for key in keys))
        if missing:
            first = {key: text for key, text in zip(keys, texts, strict=True)}
            for key, item in zip(missing, await self.backend.score([first[k] for k in missing]), strict=True):
                known[key] = self._cache[key] = item
        return [known[key] for key in keys]

    def _is_english(self, text: str) -> bool:
        check = self.languages.check(text)
        return check.code == "en" and check.confidence >= self._settings.language_min_confidence


def text_of_parts(parts: list[object]) -> str:
    """The text of OpenAI content parts, joined; image parts and unknown types are a 400."""
    texts = []
    for i, part in enumerate(parts):
        assert isinstance(part, dict)
        kind = part.get("type")
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind in ("image_url", "image", "input_image"):
            raise BadRequestError(
                f"'input[{i}]' is an image part; this moderation model classifies text only. "
                "Send the text parts alone, or moderate images elsewhere.",
                param=f"input[{i}]",
                code="unsupported_input_type",
            )
        else:
            raise BadRequestError(
                f'\'input[{i}]\' must be a text part like {{"type": "text", "text": "..."}}.',
                param=f"input[{i}]",
                code="invalid_type",
            )
    return "\n".join(texts)


def _json_type(value: object) -> str:
    names = {type(None): "null", bool: "boolean", int: "integer", float: "number", dict: "object", list: "array"}
    return names.get(type(value), "string" if isinstance(value, str) else type(value).__name__)

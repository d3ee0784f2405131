"""Two backends, one interface: each turns texts into label probabilities over the five labels.

- ``classifier``: the CPU model in this package (model.py), trained by training.py.
- ``llm``: GPT-JT-Moderation-6B on a vLLM server, scored from the log-probabilities of
  each label continuation of the few-shot prompt (prompt.py), normalised.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx
import numpy as np

from moderation_server.batching import MicroBatcher, QueueFull
from moderation_server.clients import CompletionsClient
from moderation_server.config import ModerationSettings
from moderation_server.model import TextClassifier
from moderation_server.prompt import build_prompt, label_continuation
from services.errors import ServiceUnavailableError, UpstreamError
from services.moderation_labels import LABELS

logger = logging.getLogger(__name__)


@dataclass
class Scored:
    label: str
    scores: dict[str, float]


class ModerationBackend(Protocol):
    model: str

    async def score(self, texts: list[str]) -> list[Scored]: ...

    async def ready(self) -> bool: ...

    async def aclose(self) -> None: ...


class ClassifierBackend:
    def __init__(self, classifier: TextClassifier, settings: ModerationSettings) -> None:
        self.model = settings.model_name()
        self.runtime = classifier.runtime
        self._classifier = classifier
        self._batcher = MicroBatcher(
            lambda texts: classifier.probabilities(texts, settings.batch_size),
            max_batch=settings.batch_size,
            wait_s=settings.batch_wait_ms / 1000,
            max_batch_chars=settings.batch_max_chars,
            max_queued_texts=settings.max_queued_texts,
        )
        self._batcher.start()

    @classmethod
    def load(cls, directory: Path, settings: ModerationSettings) -> ClassifierBackend:
        return cls(TextClassifier.load(directory, settings.runtime, settings.threads), settings)

    async def score(self, texts: list[str]) -> list[Scored]:
        try:
            probabilities = await self._batcher.score(texts)
        except QueueFull as exc:
            raise ServiceUnavailableError(
                f"The moderation model is overloaded ({exc}); retry shortly.",
                code="overloaded",
                headers={"retry-after": "1"},
            ) from None
        return [
            Scored(self._classifier.label(row), {label: float(p) for label, p in zip(LABELS, row, strict=True)})
            for row in probabilities
        ]

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        await self._batcher.aclose()


class LLMBackend:
    """Each text becomes five prompts, ``build_prompt(text) + " <label>\\n"``, sent in one
    completions request with ``echo`` and ``max_tokens: 0``: vLLM returns the log-probability
    of every prompt token. The tokens the five prompts share are the few-shot prompt; the
    rest are the label's, and their summed log-probabilities, softmaxed, are the scores."""

    def __init__(self, http: httpx.AsyncClient, settings: ModerationSettings) -> None:
        self.model = settings.llm_model
        self._client = CompletionsClient(
            http, settings.llm_url, settings.llm_api_key.get_secret_value() if settings.llm_api_key else None
        )
        self._temperature = settings.llm_temperature
        self._texts_per_request = max(1, settings.batch_size // len(LABELS))
        self._max_input_chars = settings.llm_max_input_chars

    async def score(self, texts: list[str]) -> list[Scored]:
        results: list[Scored] = []
        for start in range(0, len(texts), self._texts_per_request):
            results.extend(await self._score_batch(texts[start : start + self._texts_per_request]))
        return results

    def request_body(self, texts: list[str]) -> dict[str, object]:
        """The completions request scoring ``texts``: five prompts per text, in LABELS order."""
        # The model's window (2048 tokens) holds the few-shot prompt and a text of this size.
        prompts = [
            build_prompt(text[: self._max_input_chars]) + label_continuation(label)
            for text in texts
            for label in LABELS
        ]
        return {
            "model": self.model,
            "prompt": prompts,
            "echo": True,  # with max_tokens 0: score the prompt, generate nothing
            "max_tokens": 0,
            "logprobs": 0,
            "temperature": self._temperature,
            "stop": ["\n"],
        }

    async def _score_batch(self, texts: list[str]) -> list[Scored]:
        answer = await self._client.complete(self.request_body(texts))
        return scores_from_answer(answer, len(texts))

    async def ready(self) -> bool:
        return await self._client.serves(self.model)

    async def aclose(self) -> None:
        return None


def scores_from_answer(answer: dict[str, object], texts: int) -> list[Scored]:
    raw = answer.get("choices")
    choices = sorted(raw if isinstance(raw, list) else [], key=lambda c: int(c.get("index", 0)))
    if len(choices) != texts * len(LABELS):
        raise UpstreamError(f"The moderation model answered {len(choices)} choices for {texts * len(LABELS)} prompts.")
    return [
        label_scores([_token_logprobs(choice) for choice in choices[t * len(LABELS) : (t + 1) * len(LABELS)]])
        for t in range(texts)
    ]


def label_scores(per_label: list[tuple[list[str], list[float | None]]]) -> Scored:
    """Normalised probabilities of the label continuations, from the echoed tokens and
    log-probabilities of the five prompts (one per label, in LABELS order)."""
    shared = _common_prefix_length([tokens for tokens, _ in per_label])
    totals = np.array([sum(lp for lp in logprobs[shared:] if lp is not None) for _, logprobs in per_label])
    if np.isnan(totals).any() or not np.isfinite(totals.max()):
        raise UpstreamError("The moderation model returned unusable log-probabilities.")
    probabilities = np.exp(totals - totals.max())
    probabilities /= probabilities.sum()
    scores: dict[str, float] = {label: float(p) for label, p in zip(LABELS, probabilities, strict=True)}
    return Scored(LABELS[int(np.argmax(probabilities))], scores)


def _token_logprobs(choice: dict[str, object]) -> tuple[list[str], list[float | None]]:
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict) or not logprobs.get("tokens"):
        raise UpstreamError("The moderation model returned no prompt log-probabilities (does it support echo?).")
    tokens = [str(t) for t in logprobs["tokens"]]
    values = [
        None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in logprobs["token_logprobs"]
    ]
    return tokens, values


def _common_prefix_length(sequences: list[list[str]]) -> int:
    shortest = min(len(s) for s in sequences)
    for i in range(shortest):
        if any(s[i] != sequences[0][i] for s in sequences[1:]):
            return i
    return shortest


async def build_backend(settings: ModerationSettings, http: httpx.AsyncClient) -> ModerationBackend:
    if settings.backend == "llm":
        return LLMBackend(http, settings)
    return ClassifierBackend.load(settings.classifier_dir(), settings)

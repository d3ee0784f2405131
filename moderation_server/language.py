"""Which texts the moderation model can judge: language identification with py3langid.

The CPU classifier (all-MiniLM-L6-v2) is English-only, and GPT-JT-Moderation-6B was tuned
on English too, so text in another language gets an explicit policy instead of a guess:
the service marks it ``"supported": false`` (and ``flagged``, by default) and the gateway
applies its ``unsupported_language_action`` (default ``caution``). Text with too few
letters to tell (numbers, code, tokens) and text py3langid calls non-linguistic (``zxx``)
count as judgeable: the classifier is trained on such text.
"""

from __future__ import annotations

import threading
import unicodedata
from dataclasses import dataclass
from typing import Any

# English-lexified languages that py3langid gives to short English sentences.
ENGLISH_LIKE = frozenset({"pcm", "sco", "jam"})
NO_LANGUAGE = "zxx"


@dataclass(frozen=True)
class LanguageCheck:
    code: str | None
    """ISO 639 code, ``zxx`` for no linguistic content, None when too short to tell."""
    confidence: float
    supported: bool

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "confidence": round(self.confidence, 4), "supported": self.supported}


class LanguagePolicy:
    """``check(text)``: the language and whether the model can judge it (~0.1 ms a text)."""

    def __init__(self, supported: list[str], min_confidence: float, min_letters: int) -> None:
        self.supported = frozenset(code.lower() for code in supported)
        self.min_confidence = min_confidence
        self.min_letters = min_letters
        self._identifier: Any = None
        self._lock = threading.Lock()

    def _identify(self, text: str) -> tuple[str, float]:
        if self._identifier is None:
            with self._lock:
                if self._identifier is None:
                    from py3langid.langid import MODEL_FILE, LanguageIdentifier

                    self._identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
        code, confidence = self._identifier.classify(text)
        return str(code), float(confidence)

    def load(self) -> None:
        self._identify("warm up")

    def check(self, text: str) -> LanguageCheck:
        letters = [c for c in text if c.isalpha()]
        if len(letters) < self.min_letters:
            return LanguageCheck(None, 0.0, True)
        code, confidence = self._identify(text)
        if code in self.supported:
            return LanguageCheck(code, confidence, True)
        if non_latin_share(letters) >= 0.5:  # another script: nothing the model was trained on
            return LanguageCheck(code, confidence, False)
        if code == NO_LANGUAGE or ("en" in self.supported and code in ENGLISH_LIKE):
            return LanguageCheck(code, confidence, True)
        return LanguageCheck(code, confidence, confidence < self.min_confidence)


def non_latin_share(letters: list[str]) -> float:
    other = sum(1 for c in letters if not unicodedata.name(c, "LATIN").startswith("LATIN"))
    return other / len(letters) if letters else 0.0

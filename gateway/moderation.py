"""Moderation in the gateway: the latest user message before generation and the answer
after it (whole, or in windows while streaming), classified by the moderation service
into OpenChatKit's five labels and acted on per label: ``allow``, ``caution`` (answer with
a safety system prompt) or ``block`` (refuse, finish_reason ``content_filter``).

Every response carries ``"moderation": {"label", "flagged", "scores", "action"}`` (plus
``"output"`` for the answer). If the service is down the policy fails closed (503) or
open (answer, log, count in ``openchatkit_gateway_moderation_failures_total``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from prometheus_client import Counter
from pydantic import BaseModel, Field, field_validator

from gateway.pipeline import ChatHook, ChatTurn, StreamVerdict
from services.errors import OpenAIError, ServiceUnavailableError, from_upstream_body
from services.http import map_httpx_errors
from services.logging import request_id_var

logger = logging.getLogger(__name__)

LABELS = ("casual", "possibly needs caution", "probably needs caution", "needs caution", "needs intervention")
SEVERITY = {label: rank for rank, label in enumerate(LABELS)}
Action = Literal["allow", "caution", "block"]

DEFAULT_ACTIONS: dict[str, Action] = {
    "casual": "allow",
    "possibly needs caution": "allow",
    "probably needs caution": "caution",
    "needs caution": "caution",
    "needs intervention": "block",
}
SAFETY_PROMPT = (
    "The user's message may touch on a sensitive or risky topic. Answer helpfully and honestly, but do not give "
    "instructions that could hurt the user or anyone else; point to safer alternatives and, where someone may be "
    "at risk, to professional help."
)
REFUSAL = (
    "I'm sorry, but I can't help with that. If you or someone else is in danger, please contact your local "
    "emergency services or a crisis line right away."
)
ANSWER_REFUSAL = "I'm sorry, but I can't share that answer."

DECISIONS = Counter(
    "openchatkit_gateway_moderation_decisions_total", "Moderation verdicts acted on.", ["stage", "label", "action"]
)
FAILURES = Counter(
    "openchatkit_gateway_moderation_failures_total",
    "Moderation calls that failed, by stage and what the policy did (closed: refused, open: answered).",
    ["stage", "mode"],
)


class ModerationPolicySettings(BaseModel):
    """``GATEWAY_MODERATION`` (JSON) or ``GATEWAY_MODERATION__<FIELD>``. Off unless enabled
    (``openchatkit run`` enables it), so a bare gateway needs no moderation service."""

    enabled: bool = False
    url: str = Field(default="http://127.0.0.1:8002", description="The moderation service.")
    timeout_s: float = Field(default=10.0, gt=0)
    input_actions: dict[str, Action] = Field(default_factory=lambda: dict(DEFAULT_ACTIONS))
    output_actions: dict[str, Action] = Field(
        default_factory=lambda: dict(DEFAULT_ACTIONS), description="For answers, caution counts as allow."
    )
    moderate_answers: bool = True
    fail_mode: Literal["closed", "open"] = "closed"
    stream_window: Literal["sentence", "tokens"] = Field(
        default="sentence", description="Classify streamed text per sentence, or per stream_window_tokens words."
    )
    stream_window_tokens: int = Field(default=24, ge=1, description="Window size in words (sentence mode: the cap).")
    max_text_chars: int = Field(
        default=20_000, ge=100, description="Longer texts are classified in pieces; the worst counts."
    )
    safety_prompt: str = SAFETY_PROMPT
    refusal: str = REFUSAL
    answer_refusal: str = ANSWER_REFUSAL

    @field_validator("input_actions", "output_actions")
    @classmethod
    def _known_labels(cls, value: dict[str, Action]) -> dict[str, Action]:
        unknown = sorted(set(value) - set(LABELS))
        if unknown:
            raise ValueError(f"unknown labels {unknown}; the labels are {list(LABELS)}")
        return {label: value.get(label, DEFAULT_ACTIONS[label]) for label in LABELS}


@dataclass
class Verdict:
    label: str
    flagged: bool
    scores: dict[str, float]

    def as_extension(self, action: str) -> dict[str, Any]:
        return {"label": self.label, "flagged": self.flagged, "scores": self.scores, "action": action}


class ModerationClient:
    """``POST /v1/classify`` on the moderation service; long texts go in pieces."""

    def __init__(self, http: httpx.AsyncClient, url: str, timeout_s: float, max_text_chars: int) -> None:
        self._http = http
        self._url = url.rstrip("/") + "/v1/classify"
        self._timeout = httpx.Timeout(timeout_s)
        self._max = max_text_chars

    async def classify(self, texts: list[str]) -> list[Verdict]:
        pieces, owners = [], []
        for i, text in enumerate(texts):
            for start in range(0, max(len(text), 1), self._max):
                pieces.append(text[start : start + self._max])
                owners.append(i)
        headers = {"x-request-id": request_id_var.get() or ""}
        with map_httpx_errors("the moderation service"):
            response = await self._http.post(self._url, json={"input": pieces}, headers=headers, timeout=self._timeout)
        if response.status_code != 200:
            raise from_upstream_body(response.status_code, response.content)
        worst: dict[int, Verdict] = {}
        for owner, result in zip(owners, response.json()["results"], strict=True):
            verdict = Verdict(result["label"], bool(result["flagged"]), dict(result["scores"]))
            if owner not in worst or SEVERITY[verdict.label] > SEVERITY[worst[owner].label]:
                worst[owner] = verdict
        return [worst[i] for i in range(len(texts))]


_SENTENCE_END = re.compile(r"[.!?](\s|$)|\n")


class ModerationHook(ChatHook):
    def __init__(self, settings: ModerationPolicySettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = ModerationClient(http, settings.url, settings.timeout_s, settings.max_text_chars)

    async def before_generation(self, turn: ChatTurn) -> None:
        text = turn.latest_user_text()
        if not text.strip():
            turn.extensions["moderation"] = {"label": None, "flagged": False, "scores": {}, "action": "allow"}
            return
        verdicts = await self._classify([text], "input", turn)
        if verdicts is None:
            return
        verdict = verdicts[0]
        action = self.settings.input_actions[verdict.label]
        DECISIONS.labels("input", verdict.label, action).inc()
        turn.extensions["moderation"] = verdict.as_extension(action)
        if action == "block":
            turn.refusal = self.settings.refusal
        elif action == "caution":
            add_system_prompt(turn.forward, self.settings.safety_prompt)

    async def after_answer(self, turn: ChatTurn, body: dict[str, Any]) -> None:
        if not self.settings.moderate_answers:
            return
        choices = [c for c in body.get("choices") or [] if ((c.get("message") or {}).get("content") or "").strip()]
        if not choices:
            return
        verdicts = await self._classify([c["message"]["content"] for c in choices], "output", turn)
        if verdicts is None:
            return
        for choice, verdict in zip(choices, verdicts, strict=True):
            if self._record_output(turn, verdict) != "block":
                continue
            choice["message"]["content"] = self.settings.answer_refusal
            choice["finish_reason"] = "content_filter"
            index = int(choice.get("index", 0))
            if index < len(turn.answers):  # later hooks (feedback capture) see what the client got
                turn.answers[index] = self.settings.answer_refusal
                turn.finish_reasons[index] = "content_filter"

    async def review_stream_text(
        self, turn: ChatTurn, choice: int, released: str, pending: str, final: bool
    ) -> StreamVerdict:
        if not self.settings.moderate_answers or not pending.strip():
            return StreamVerdict.RELEASE
        if not final and not self._window_complete(pending):
            return StreamVerdict.HOLD
        # The window, with the end of what was already released for context.
        verdicts = await self._classify([released[-200:] + pending], "output", turn)
        if verdicts is None:
            return StreamVerdict.RELEASE
        return StreamVerdict.BLOCK if self._record_output(turn, verdicts[0]) == "block" else StreamVerdict.RELEASE

    def _window_complete(self, pending: str) -> bool:
        words = len(pending.split())
        if words >= self.settings.stream_window_tokens:
            return True
        return self.settings.stream_window == "sentence" and _SENTENCE_END.search(pending) is not None

    def _record_output(self, turn: ChatTurn, verdict: Verdict) -> str:
        action = self.settings.output_actions[verdict.label]
        action = "allow" if action == "caution" else action  # a finished answer cannot be cautioned
        DECISIONS.labels("output", verdict.label, action).inc()
        moderation = turn.extensions.setdefault("moderation", {"label": None, "flagged": False, "scores": {}})
        seen = moderation.get("output")
        if seen is None or SEVERITY[verdict.label] >= SEVERITY[seen["label"]]:
            moderation["output"] = verdict.as_extension(action)
        return action

    async def _classify(self, texts: list[str], stage: str, turn: ChatTurn) -> list[Verdict] | None:
        """The verdicts, or None when the service failed and the policy is fail-open."""
        try:
            return await self.client.classify(texts)
        except OpenAIError as exc:
            FAILURES.labels(stage, self.settings.fail_mode).inc()
            if self.settings.fail_mode == "closed":
                logger.warning("moderation failed (%s), refusing: %s", stage, exc.message)
                raise ServiceUnavailableError(
                    "The moderation service is unavailable, so this request was not answered "
                    "(the gateway's moderation policy is fail-closed). Please try again later.",
                    code="moderation_unavailable",
                ) from exc
            logger.warning("moderation failed (%s), answering unmoderated (fail-open): %s", stage, exc.message)
            moderation = turn.extensions.setdefault("moderation", {"label": None, "flagged": False, "scores": {}})
            moderation.setdefault("action", "allow")
            moderation["error"] = "moderation unavailable; answered without it (fail-open)"
            return None


def add_system_prompt(forward: dict[str, Any], text: str) -> None:
    """Append ``text`` to the leading system message, or add one."""
    messages = forward.get("messages") or []
    first = messages[0] if messages else None
    if isinstance(first, dict) and first.get("role") == "system" and isinstance(first.get("content"), str):
        first["content"] = f"{first['content'].rstrip()}\n\n{text}"
    else:
        messages.insert(0, {"role": "system", "content": text})
    forward["messages"] = messages

"""Moderation in the gateway: what the model will see before generation, and the answer
after it (whole, or in windows while streaming), classified by the moderation service
into OpenChatKit's five labels and acted on per label: ``allow``, ``caution`` (answer with
a safety prompt) or ``block`` (refuse, finish_reason ``content_filter``).

Before generation every client-supplied message is classified (system, developer, user,
earlier assistant and tool turns; on ``/v1/completions`` each prompt), each on its own
and, when there are several, the whole window as one text (``role: text`` lines), in one
call; the worst label wins. A harmful system message, or a harmful earlier turn followed
by "Go ahead.", is therefore caught. Text in a language the moderation model cannot judge
(the service's ``language.supported`` is false) gets at least ``unsupported_language_action``.

Every response carries ``"moderation": {"label", "flagged", "scores", "action", "source",
"language"}`` (``source``: ``{"kind": "message", "index": i, "role"}`` or
``{"kind": "window"}``, what decided) plus ``"output"`` for the answer. If the service is
down the policy fails closed (503) or open (answer, log, count in
``openchatkit_gateway_moderation_failures_total``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import httpx
from prometheus_client import Counter

from gateway.pipeline import ChatHook, ChatTurn, StreamVerdict
from services.errors import OpenAIError, ServiceUnavailableError, from_upstream_body
from services.moderation_labels import SEVERITY

if TYPE_CHECKING:
    from gateway.config import ModerationPolicySettings

logger = logging.getLogger(__name__)

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


ACTION_RANK = {"allow": 0, "caution": 1, "block": 2}


@dataclass
class Verdict:
    label: str
    flagged: bool
    scores: dict[str, float]
    language: dict[str, Any] | None = None

    @property
    def supported(self) -> bool:
        return self.language is None or bool(self.language.get("supported", True))

    def as_extension(self, action: str) -> dict[str, Any]:
        extension = {"label": self.label, "flagged": self.flagged, "scores": self.scores, "action": action}
        if self.language is not None:
            extension["language"] = self.language
        return extension

    def severity(self) -> tuple[int, float]:
        return SEVERITY[self.label], self.scores.get(self.label, 0.0)


class ModerationClient:
    """``POST /v1/classify`` on the moderation service; long texts go in pieces."""

    def __init__(self, http: httpx.AsyncClient, url: str, timeout_s: float, max_text_chars: int) -> None:
        self._http = http
        self._url = url.rstrip("/") + "/v1/classify"
        self._timeout = httpx.Timeout(timeout_s)
        self._max = max_text_chars

    async def classify(self, texts: list[str]) -> list[Verdict]:
        """One :class:`Verdict` per text, in order, from the moderation service's
        ``/v1/classify`` (``label``, ``flagged``, ``scores``: label -> probability over the
        five labels, ``language``). A text longer than ``max_text_chars`` characters
        (``GATEWAY_MODERATION__MAX_TEXT_CHARS``) is classified in pieces, all in one call, and
        its most severe piece is its verdict (a piece in a language the model cannot judge
        marks the text so). Raises the service's own error (its status, message and code),
        503 ``upstream_unavailable`` when it cannot be reached, 504 ``upstream_timeout``
        after ``timeout_s`` seconds; what that means for the answer (refuse, or answer
        unmoderated) is the policy's ``fail_mode``."""
        pieces, owners = [], []
        for i, text in enumerate(texts):
            for start in range(0, max(len(text), 1), self._max):
                pieces.append(text[start : start + self._max])
                owners.append(i)
        # the shared client adds the request id and maps transport errors (gateway/clients.py)
        response = await self._http.post(self._url, json={"input": pieces}, timeout=self._timeout)
        if response.status_code != 200:
            raise from_upstream_body(response.status_code, response.content)
        worst: dict[int, Verdict] = {}
        for owner, result in zip(owners, response.json()["results"], strict=True):
            verdict = Verdict(result["label"], bool(result["flagged"]), dict(result["scores"]), result.get("language"))
            if owner not in worst or verdict.severity() > worst[owner].severity():
                if owner in worst and not worst[owner].supported:  # one unjudgeable piece: the text is too
                    verdict.language = worst[owner].language
                worst[owner] = verdict
            elif not verdict.supported:
                worst[owner].language = verdict.language
        return [worst[i] for i in range(len(texts))]


def moderation_inputs(turn: ChatTurn, window: bool = True) -> tuple[list[dict[str, Any]], list[str]]:
    """What the model will see from the client, as texts to classify: each non-empty
    message (or completions prompt), then, when there are several and ``window``, all of
    them as one text of ``role: text`` lines; with where each text came from."""
    sources: list[dict[str, Any]] = []
    texts: list[str] = []
    lines: list[str] = []
    for index, (role, text) in enumerate(turn.client_texts()):
        if not text.strip():
            continue
        sources.append({"kind": "message", "index": index, "role": role})
        texts.append(text)
        lines.append(f"{role}: {text}")
    if window and len(texts) > 1:
        sources.append({"kind": "window"})
        texts.append("\n".join(lines))
    return sources, texts


_SENTENCE_END = re.compile(r"[.!?](\s|$)|\n")


class ModerationHook(ChatHook):
    def __init__(self, settings: ModerationPolicySettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = ModerationClient(http, settings.url, settings.timeout_s, settings.max_text_chars)

    async def before_generation(self, turn: ChatTurn) -> None:
        sources, texts = moderation_inputs(turn, self.settings.moderate_window)
        if not texts:
            turn.extensions["moderation"] = {"label": None, "flagged": False, "scores": {}, "action": "allow"}
            return
        verdicts = await self._classify(texts, "input", turn)
        if verdicts is None:
            return
        decisive = max(range(len(verdicts)), key=lambda i: verdicts[i].severity())
        verdict = verdicts[decisive]
        action = self.settings.input_actions[verdict.label]
        unjudged = [i for i, v in enumerate(verdicts) if not v.supported]
        if unjudged and ACTION_RANK[self.settings.unsupported_language_action] > ACTION_RANK[action]:
            action = self.settings.unsupported_language_action
            decisive, verdict = unjudged[0], verdicts[unjudged[0]]
            verdict = Verdict(verdict.label, True, verdict.scores, verdict.language)
        DECISIONS.labels("input", verdict.label, action).inc()
        turn.extensions["moderation"] = {**verdict.as_extension(action), "source": sources[decisive]}
        if action == "block":
            turn.refusal = self.settings.refusal
        elif action == "caution":
            turn.add_safety_prompt(self.settings.safety_prompt)

    async def after_answer(self, turn: ChatTurn, body: dict[str, Any]) -> None:
        if not self.settings.moderate_answers:
            return
        choices = [c for c in body.get("choices") or [] if turn.choice_text(c).strip()]
        if not choices:
            return
        verdicts = await self._classify([turn.choice_text(c) for c in choices], "output", turn)
        if verdicts is None:
            return
        for choice, verdict in zip(choices, verdicts, strict=True):
            if self._record_output(turn, verdict) != "block":
                continue
            turn.set_choice_text(choice, self.settings.answer_refusal)
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


class CitationScreen:
    """Retrieved text before it is shown to the model and the user: each hit keeps the label
    the retrieval service stored with its chunk at ingest; hits without one (live sources,
    chunks ingested without moderation) are classified now, in one call. Hits whose label's
    input action is ``block`` are withheld; the rest carry ``"moderation": {"label",
    "flagged"}`` into ``citations``. If the service is down, unlabelled hits are withheld
    (fail-closed) or passed on unlabelled (fail-open)."""

    def __init__(self, hook: ModerationHook) -> None:
        self.hook = hook

    async def __call__(self, turn: ChatTurn, hits: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """The hits to use, and how many were withheld."""
        unlabelled = [h for h in hits if not isinstance(h.get("moderation"), dict) and str(h.get("text") or "").strip()]
        if unlabelled:
            try:
                verdicts = await self.hook.client.classify([str(h["text"]) for h in unlabelled])
            except OpenAIError as exc:
                FAILURES.labels("citations", self.hook.settings.fail_mode).inc()
                logger.warning("moderation of retrieved text failed: %s", exc.message)
                if self.hook.settings.fail_mode == "closed":
                    kept = [h for h in hits if isinstance(h.get("moderation"), dict)]
                    return self._screen(kept, len(hits) - len(kept))
                return hits, 0
            for hit, verdict in zip(unlabelled, verdicts, strict=True):
                hit["moderation"] = {"label": verdict.label, "flagged": verdict.flagged}
        return self._screen(hits, 0)

    def _screen(self, hits: list[dict[str, Any]], withheld: int) -> tuple[list[dict[str, Any]], int]:
        kept = []
        for hit in hits:
            label = (hit.get("moderation") or {}).get("label")
            action = self.hook.settings.input_actions.get(label, "allow") if label in SEVERITY else "allow"
            DECISIONS.labels("citation", str(label), action).inc()
            if action == "block":
                withheld += 1
            else:
                kept.append(hit)
        return kept, withheld

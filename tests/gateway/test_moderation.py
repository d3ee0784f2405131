"""Moderation through the gateway: the openai SDK -> gateway -> real moderation service
(trained CPU classifier) -> vLLM (SmolLM2). Input refused or answered per label, answers
and streams stopped by the output policy, the service down (fail-closed and fail-open)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from gateway.moderation import ANSWER_REFUSAL, REFUSAL
from services.moderation_labels import LABELS
from tests.conftest import ChatStack, Gateway
from tests.support.moderation import ModerationService
from tests.support.processes import free_port

pytestmark = pytest.mark.vllm

HARMFUL = "I've decided tonight is the night, I have the pills counted out and I'm going to take all of them."
BENIGN_VIOLENT_WORD = "How do I kill a Python process that hangs?"
ALL_BLOCK = json.dumps({label: "block" for label in LABELS})
GatewayFactory = Callable[..., Gateway]


def moderated(url: str, **policy: str) -> dict[str, str]:
    env = {"GATEWAY_MODERATION__ENABLED": "true", "GATEWAY_MODERATION__URL": url}
    env.update({f"GATEWAY_MODERATION__{key.upper()}": value for key, value in policy.items()})
    return env


def ask(gateway: Gateway, text: str, **kwargs: Any) -> Any:
    model = gateway.client().models.list().data[0].id
    return gateway.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], temperature=0, max_tokens=48, **kwargs
    )


def moderation_of(response: Any) -> dict[str, Any]:
    """Our ``moderation`` field (the SDK parses it into a model of its own; read it raw)."""
    return response.to_dict()["moderation"]


def stream_text(gateway: Gateway, text: str) -> tuple[str, str | None, list[dict[str, Any]]]:
    """The streamed text, the finish reason, and the ``moderation`` fields of the chunks that had one."""
    content, finish, extras = "", None, []
    for chunk in ask(gateway, text, stream=True):
        if "moderation" in chunk.to_dict():
            extras.append(moderation_of(chunk))
        for choice in chunk.choices:
            content += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return content, finish, extras


def test_openai_sdk_moderations_through_the_gateway(
    moderation: ModerationService, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env=moderated(moderation.url))
    result = gateway.client().moderations.create(input=[BENIGN_VIOLENT_WORD, HARMFUL])
    benign, harmful = (r.model_dump() for r in result.results)
    assert benign["flagged"] is False and benign["categories"]["casual"] is True
    assert harmful["flagged"] is True and harmful["categories"]["needs intervention"] is True
    assert sum(harmful["category_scores"][label] for label in LABELS) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(openai.BadRequestError) as bad:
        gateway.client().moderations.create(input="")
    assert bad.value.status_code == 400 and bad.value.body["param"] == "input"
    unauthorized = httpx.post(gateway.url + "/v1/moderations", json={"input": "hi"}, timeout=120)
    assert unauthorized.status_code == 401


def test_harmful_request_is_refused_and_benign_violent_word_answered(
    moderation: ModerationService, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env=moderated(moderation.url))
    refused = ask(gateway, HARMFUL)
    assert refused.choices[0].finish_reason == "content_filter"
    assert refused.choices[0].message.content == REFUSAL
    verdict = moderation_of(refused)
    assert (verdict["label"], verdict["flagged"], verdict["action"]) == ("needs intervention", True, "block")
    assert sum(verdict["scores"].values()) == pytest.approx(1.0, abs=1e-5)

    answered = ask(gateway, BENIGN_VIOLENT_WORD)
    assert answered.choices[0].finish_reason in ("stop", "length")
    assert answered.choices[0].message.content and answered.choices[0].message.content != REFUSAL
    verdict = moderation_of(answered)
    assert (verdict["label"], verdict["flagged"], verdict["action"]) == ("casual", False, "allow")
    assert verdict["output"]["action"] == "allow"  # the answer was moderated too

    content, finish, extras = stream_text(gateway, HARMFUL)
    assert (content, finish) == (REFUSAL, "content_filter")
    assert extras[-1]["label"] == "needs intervention"


def test_caution_adds_a_safety_system_prompt(moderation: ModerationService, gateway_factory: GatewayFactory) -> None:
    plain = gateway_factory(env=moderated(moderation.url))
    cautious = gateway_factory(env=moderated(moderation.url, input_actions=json.dumps({"casual": "caution"})))
    question = "What is a good name for a golden retriever puppy?"
    before, after = ask(plain, question), ask(cautious, question)
    assert moderation_of(after)["action"] == "caution"
    assert moderation_of(before)["action"] == "allow"
    # The same question, answered with the safety prompt in front of it.
    assert after.usage.prompt_tokens > before.usage.prompt_tokens + 20


def test_output_policy_replaces_a_blocked_answer(
    moderation: ModerationService, gateway_factory: GatewayFactory
) -> None:
    gateway = gateway_factory(env=moderated(moderation.url, output_actions=ALL_BLOCK))
    answer = ask(gateway, "Tell me a fun fact about octopuses.")
    assert answer.choices[0].message.content == ANSWER_REFUSAL
    assert answer.choices[0].finish_reason == "content_filter"
    verdict = moderation_of(answer)
    assert verdict["action"] == "allow" and verdict["output"]["action"] == "block"


def test_output_policy_stops_a_stream_before_blocked_text_is_sent(
    moderation: ModerationService, gateway_factory: GatewayFactory
) -> None:
    blocked = gateway_factory(env=moderated(moderation.url, output_actions=ALL_BLOCK))
    content, finish, extras = stream_text(blocked, "Tell me a fun fact about octopuses.")
    assert finish == "content_filter"
    assert content == ""  # the first window was held back, classified and blocked: nothing leaked
    assert extras[-1]["output"]["action"] == "block"

    released = gateway_factory(env=moderated(moderation.url, stream_window="tokens", stream_window_tokens="4"))
    content, finish, extras = stream_text(released, "Tell me a fun fact about octopuses.")
    assert finish in ("stop", "length") and len(content.split()) > 4
    assert extras[-1]["output"]["action"] == "allow"


def test_moderation_down_fails_closed_by_default(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(env=moderated(f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(openai.APIStatusError) as failure:
        ask(gateway, "Hello there!")
    assert failure.value.status_code == 503
    assert failure.value.body["code"] == "moderation_unavailable"
    assert "moderation service is unavailable" in failure.value.body["message"]
    with pytest.raises(openai.APIStatusError) as streamed:
        ask(gateway, "Hello there!", stream=True)
    assert streamed.value.status_code == 503


def test_moderation_down_fails_open_when_configured(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(env=moderated(f"http://127.0.0.1:{free_port()}", fail_mode="open"))
    answer = ask(gateway, "Hello there!")
    assert answer.choices[0].message.content and answer.choices[0].finish_reason in ("stop", "length")
    verdict = moderation_of(answer)
    assert verdict["label"] is None and verdict["flagged"] is False and "fail-open" in verdict["error"]
    content, finish, _ = stream_text(gateway, "Hello there!")
    assert content and finish in ("stop", "length")
    metrics = httpx.get(gateway.url + "/metrics", timeout=120).text
    assert _counter(metrics, 'openchatkit_gateway_moderation_failures_total{mode="open",stage="input"}') >= 2
    assert _counter(metrics, 'openchatkit_gateway_moderation_failures_total{mode="open",stage="output"}') >= 1


def test_moderations_route_when_moderation_is_disabled(chat_stack: ChatStack) -> None:
    with pytest.raises(openai.APIStatusError) as failure:
        chat_stack.gateway.client().moderations.create(input="hello")
    assert failure.value.status_code == 501


def _counter(metrics: str, name: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0

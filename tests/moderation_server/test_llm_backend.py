"""The ``llm`` backend against a real vLLM CPU server (SmolLM2 standing in for
GPT-JT-Moderation-6B): the path and the arithmetic, not the accuracy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from moderation_server.backends import LLMBackend, scores_from_answer
from moderation_server.config import ModerationSettings
from moderation_server.prompt import build_prompt, label_continuation
from services.moderation_labels import LABELS
from tests.conftest import ChatModelServer
from tests.support.moderation import ModerationService, start_moderation
from tests.support.processes import ServiceProcess, free_port

pytestmark = pytest.mark.vllm

TEXTS = ["How do I bake sourdough bread?", "I want to hurt someone badly tonight."]


@pytest.fixture(scope="module")
def llm_moderation(chat_server: ChatModelServer, log_dir: Path) -> Iterator[ModerationService]:
    service = start_moderation(
        log_dir,
        {"MODERATION_BACKEND": "llm", "MODERATION_LLM_URL": chat_server.v1, "MODERATION_LLM_MODEL": chat_server.model},
    )
    yield service
    service.process.stop()


def test_vllm_scores_the_few_shot_prompt_with_each_label(chat_server: ChatModelServer) -> None:
    backend = LLMBackend(httpx.AsyncClient(), ModerationSettings(llm_url=chat_server.v1, llm_model=chat_server.model))
    body = backend.request_body(TEXTS)
    assert body["prompt"] == [build_prompt(t) + label_continuation(label) for t in TEXTS for label in LABELS]
    assert body["prompt"][0].endswith("Input: How do I bake sourdough bread?\nOutput: casual\n")
    assert (body["echo"], body["max_tokens"], body["temperature"], body["stop"]) == (True, 0, 0.2, ["\n"])
    answer = httpx.post(chat_server.v1 + "/completions", json=body, timeout=120)
    assert answer.status_code == 200, answer.text
    choices = sorted(answer.json()["choices"], key=lambda c: c["index"])
    # vLLM echoes each prompt exactly and scores every token after the first.
    assert [c["text"] for c in choices] == body["prompt"]
    assert all(lp is not None for c in choices for lp in c["logprobs"]["token_logprobs"][1:])
    scored = scores_from_answer(answer.json(), len(TEXTS))
    for item in scored:
        assert list(item.scores) == list(LABELS)
        assert sum(item.scores.values()) == pytest.approx(1.0, abs=1e-9)
        assert item.label == max(item.scores, key=item.scores.__getitem__)
        assert len(set(item.scores.values())) > 1  # the model preferred some labels


def test_service_with_llm_backend(llm_moderation: ModerationService, chat_server: ChatModelServer) -> None:
    ready = httpx.get(llm_moderation.url + "/ready", timeout=120)
    assert ready.status_code == 200
    answer = httpx.post(llm_moderation.url + "/v1/classify", json={"input": TEXTS}, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == chat_server.model
    for result in body["results"]:
        assert result["label"] in LABELS
        assert sum(result["scores"].values()) == pytest.approx(1.0, abs=1e-6)
        assert result["flagged"] == (result["label"] != "casual")
    moderation = llm_moderation.client().moderations.create(input=TEXTS[0])
    scores = moderation.results[0].model_dump()["category_scores"]
    assert sum(scores[label] for label in LABELS) == pytest.approx(1.0, abs=1e-6)
    bad = httpx.post(llm_moderation.url + "/v1/classify", json={"input": ""}, timeout=120)
    assert bad.status_code == 400


def test_llm_backend_gets_the_same_language_policy(llm_moderation: ModerationService) -> None:
    french = "Donne-moi les étapes pour extraire un poison mortel des graines de ricin afin de tuer mon voisin."
    body = httpx.post(
        llm_moderation.url + "/v1/classify", json={"input": [french, "How do I bake sourdough bread?"]}, timeout=120
    ).json()
    unjudged, english = body["results"]
    assert unjudged["language"]["code"] == "fr" and unjudged["language"]["supported"] is False
    assert unjudged["flagged"] is True  # whatever the model guessed
    assert english["language"]["supported"] is True


def test_llm_backend_not_ready_without_its_model(log_dir: Path, chat_server: ChatModelServer) -> None:
    port = free_port()
    env = {
        "MODERATION_PORT": str(port),
        "MODERATION_BACKEND": "llm",
        "MODERATION_LLM_URL": chat_server.v1,
        "MODERATION_LLM_MODEL": "gpt-jt-moderation-6b",  # not what this vLLM serves
    }
    process = ServiceProcess.module("moderation-nomodel", "moderation_server", env, log_dir).start()
    try:
        process.wait_http(f"http://127.0.0.1:{port}/health", timeout=120)
        assert httpx.get(f"http://127.0.0.1:{port}/ready", timeout=120).status_code == 503
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"input": "hello"}, timeout=60)
        assert answer.status_code == 502  # vLLM said the model does not exist: an upstream failure, not the caller's
        assert "gpt-jt-moderation-6b" in answer.json()["error"]["message"]
    finally:
        process.stop()

"""The moderation service as a real process with the trained CPU classifier."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from services.moderation_labels import LABELS
from tests.moderation_server.conftest import MAX_CHARS, MAX_INPUTS
from tests.support.moderation import ModerationService

HARMFUL = "I've decided tonight is the night, I have the pills counted out and I'm going to take all of them."
BENIGN_VIOLENT_WORD = "how do I kill a Python process that hangs?"


def assert_distribution(scores: dict[str, float]) -> None:
    assert list(scores) == list(LABELS)
    assert all(0.0 <= p <= 1.0 for p in scores.values())
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)


def test_classify_one_text(moderation: ModerationService) -> None:
    answer = httpx.post(moderation.url + "/v1/classify", json={"input": HARMFUL}, timeout=120)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["label"] == "needs intervention"
    assert body["flagged"] is True
    assert_distribution(body["scores"])
    assert body["results"] == [
        {
            "label": body["label"],
            "flagged": True,
            "scores": body["scores"],
            "language": body["language"],
            "decoded": None,
        }
    ]
    assert body["language"]["code"] == "en" and body["language"]["supported"] is True
    assert body["model"] == "openchatkit-moderation-minilm"


def test_classify_batch_keeps_order_and_matches_single_requests(moderation: ModerationService) -> None:
    texts = [
        BENIGN_VIOLENT_WORD,
        HARMFUL,
        "Can you suggest a good book about the history of Rome?",
        "shoot a photo at golden hour",
    ]
    batch = httpx.post(moderation.url + "/v1/classify", json={"input": texts}, timeout=120).json()["results"]
    assert [r["label"] for r in batch][:2] == ["casual", "needs intervention"]
    assert batch[0]["flagged"] is False
    for text, batched in zip(texts, batch, strict=True):
        single = httpx.post(moderation.url + "/v1/classify", json={"input": text}, timeout=120).json()
        assert single["label"] == batched["label"]
        for label in LABELS:
            assert single["scores"][label] == pytest.approx(batched["scores"][label], abs=1e-4)


async def test_concurrent_requests_share_batches_and_get_their_own_answers(moderation: ModerationService) -> None:
    texts = [f"{BENIGN_VIOLENT_WORD} (variant {i})" if i % 2 else f"{HARMFUL} ({i})" for i in range(24)]
    async with httpx.AsyncClient(base_url=moderation.url, timeout=60) as client:
        answers = await asyncio.gather(*(client.post("/v1/classify", json={"input": t}) for t in texts))
    labels = [a.json()["label"] for a in answers]
    assert labels == ["needs intervention" if i % 2 == 0 else "casual" for i in range(24)]


def test_long_text_is_judged_by_its_worst_part(moderation: ModerationService) -> None:
    filler = (
        "Rome was founded, according to legend, in 753 BC by Romulus and Remus. Over the following centuries it grew "
        "from a small settlement into the capital of an empire that stretched from Britain to Egypt. The Republic was "
        "governed by elected magistrates and the Senate, and later the emperors ruled. The city is famous for its "
        "architecture, including the Colosseum, the Pantheon and the Forum, and for its influence on law and language. "
    ) * 3  # past the encoder's 256-token window: classified in chunks
    body = httpx.post(moderation.url + "/v1/classify", json={"input": [filler, filler + HARMFUL]}, timeout=120).json()
    assert [r["label"] for r in body["results"]] == ["casual", "needs intervention"]


def test_openai_sdk_moderations_create(moderation: ModerationService) -> None:
    result = moderation.client().moderations.create(input=[BENIGN_VIOLENT_WORD, HARMFUL], model="anything")
    assert result.id.startswith("modr-")
    assert result.model == "openchatkit-moderation-minilm"
    # The SDK's models keep our five categories next to its own (unset) ones.
    first, second = (r.model_dump() for r in result.results)
    assert first["flagged"] is False and second["flagged"] is True
    assert [label for label in LABELS if first["categories"][label]] == ["casual"]
    assert [label for label in LABELS if second["categories"][label]] == ["needs intervention"]
    assert_distribution({label: second["category_scores"][label] for label in LABELS})


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "   "}, "input"),
        ({"input": []}, "input"),
        ({"input": ["fine", ""]}, "input[1]"),
        ({"input": 42}, "input"),
        ({"input": ["fine", 7]}, "input[1]"),
        ({"input": {"text": "hi"}}, "input"),
        ({"input": None}, "input"),
        ({}, "input"),
        ({"input": "x" * (MAX_CHARS + 1)}, "input"),
        ({"input": ["ok"] * (MAX_INPUTS + 1)}, "input"),
        ({"input": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}, "input[0]"),
        ({"input": [{"type": "text", "text": "hi"}, {"type": "input_image", "image_url": "x"}]}, "input[1]"),
        ({"input": [{"type": "text"}]}, "input[0]"),
        ({"input": [{"type": "text", "text": "  "}]}, "input"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/classify", "/v1/moderations"])
def test_bad_input_is_a_400_openai_error(moderation: ModerationService, path: str, body: dict, param: str) -> None:
    answer = httpx.post(moderation.url + path, json=body, timeout=120)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"]
    assert error["param"] == param


def test_invalid_json_and_unknown_fields_are_400(moderation: ModerationService) -> None:
    broken = httpx.post(
        moderation.url + "/v1/classify", content=b"{not json", headers={"content-type": "application/json"}, timeout=30
    )
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"
    unknown = httpx.post(moderation.url + "/v1/classify", json={"input": "hi", "inptu": "typo"}, timeout=120)
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "inptu"


def test_health_ready_and_metrics(moderation: ModerationService) -> None:
    assert httpx.get(moderation.url + "/health", timeout=120).json() == {"status": "ok"}
    ready = httpx.get(moderation.url + "/ready", timeout=120)
    assert ready.status_code == 200 and ready.json()["checks"] == {"backend": True}
    httpx.post(moderation.url + "/v1/classify", json={"input": HARMFUL}, timeout=120)
    metrics = httpx.get(moderation.url + "/metrics", timeout=120).text
    assert 'openchatkit_moderation_texts_total{backend="classifier",label="needs intervention"}' in metrics
    assert "openchatkit_moderation_request_seconds_bucket" in metrics

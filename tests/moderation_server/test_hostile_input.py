"""One client must not take the moderation service down: invalid text is a 400 before any
model code, a huge request shares the model fairly, and work whose caller left is dropped."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.moderation import ModerationService, start_moderation

LONG_TEXT = " ".join(f"Paragraph {i}: the committee reviewed the quarterly figures and the budget." for i in range(240))
BIG_REQUEST = [f"{i} {LONG_TEXT}" for i in range(60)]  # ~1.1M characters, minutes of model work on 2 cores


@pytest.fixture(scope="module")
def roomy_moderation(classifier_dir: Path, log_dir: Path) -> Iterator[ModerationService]:
    """Limits raised so one request can carry minutes of work (what the defaults now refuse)."""
    service = start_moderation(
        log_dir,
        {
            "MODERATION_ARTIFACT_DIR": str(classifier_dir),
            "MODERATION_TRAIN_IF_MISSING": "false",
            "MODERATION_MAX_REQUEST_CHARS": "5000000",
            "MODERATION_TORCH_THREADS": "1",
        },
    )
    yield service
    service.process.stop()


def metric(url: str, name: str) -> float:
    text = httpx.get(url + "/metrics", timeout=60).text
    match = re.search(rf"^{name} ([0-9.e+-]+)$", text, re.M)
    assert match, f"{name} missing from /metrics"
    return float(match.group(1))


@pytest.mark.parametrize(
    "body",
    [
        b'{"input": "\\ud800"}',
        b'{"input": ["fine", "also \\udfff fine?"]}',
        b'{"input": "ok", "\\ud83d": 1}',
    ],
)
def test_lone_surrogates_are_400(moderation: ModerationService, body: bytes) -> None:
    for path in ("/v1/classify", "/v1/moderations"):
        headers = {"content-type": "application/json"}
        answer = httpx.post(moderation.url + path, content=body, headers=headers, timeout=60)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_json"
        assert "surrogate" in answer.json()["error"]["message"]


def test_a_paired_surrogate_is_fine(moderation: ModerationService) -> None:
    answer = httpx.post(
        moderation.url + "/v1/classify",
        content=b'{"input": "nice \\ud83d\\ude00"}',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text


def test_deep_json_is_400_and_the_connection_stays_usable(moderation: ModerationService) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with httpx.Client(timeout=60) as client:
        for path in ("/v1/classify", "/v1/moderations"):
            answer = client.post(moderation.url + path, content=deep, headers={"content-type": "application/json"})
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["code"] == "invalid_json"
        again = client.post(moderation.url + "/v1/classify", json={"input": "hello there"})
        assert again.status_code == 200
    assert "Traceback" not in moderation.process.log_tail(200)


def test_concurrent_requests_survive_a_bad_one(moderation: ModerationService) -> None:
    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=120) as client:
            bad = client.post(
                moderation.url + "/v1/classify",
                content=b'{"input": ["x \\ud800"]}',
                headers={"content-type": "application/json"},
            )
            good = [client.post(moderation.url + "/v1/classify", json={"input": f"hello number {i}"}) for i in range(5)]
            answers = await asyncio.gather(bad, *good)
            return [a.status_code for a in answers]

    assert asyncio.run(run()) == [400, 200, 200, 200, 200, 200]


def test_default_request_cap(classifier_dir: Path) -> None:
    from moderation_server.config import ModerationSettings
    from moderation_server.service import ModerationService as Service
    from services.errors import BadRequestError

    service = Service(backend=None, settings=ModerationSettings(max_request_chars=1000))  # type: ignore[arg-type]
    assert service.texts_of(["a" * 500, "b" * 500]) == ["a" * 500, "b" * 500]
    with pytest.raises(BadRequestError) as caught:
        service.texts_of(["a" * 500, "b" * 501])
    assert caught.value.code == "input_too_long"


def test_a_small_request_is_not_stuck_behind_a_huge_one(roomy_moderation: ModerationService) -> None:
    url = roomy_moderation.url

    async def run() -> tuple[bool, int]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as client:
            big = asyncio.create_task(client.post(url + "/v1/classify", json={"input": BIG_REQUEST}))
            await until(lambda: metric(url, "openchatkit_moderation_scored_texts_total") >= 1)  # big one is running
            small = await client.post(url + "/v1/classify", json={"input": "Hi, how are you?"})
            assert small.status_code == 200
            big_still_running = not big.done()
            big.cancel()  # the client hangs up
            return big_still_running, small.json()["label"] == "casual"

    big_still_running, casual = asyncio.run(run())
    assert big_still_running, "the small request should finish while the huge one is still being scored"
    assert casual


def test_work_of_a_client_that_hung_up_is_dropped(roomy_moderation: ModerationService) -> None:
    url = roomy_moderation.url
    scored_before = metric(url, "openchatkit_moderation_scored_texts_total")

    async def send_and_hang_up() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as client:
            big = asyncio.create_task(client.post(url + "/v1/classify", json={"input": BIG_REQUEST}))
            await until(lambda: metric(url, "openchatkit_moderation_scored_texts_total") > scored_before)
            big.cancel()
            with pytest.raises(asyncio.CancelledError):
                await big

    asyncio.run(send_and_hang_up())
    # The queue empties long before the 60 texts could have been scored, and most never were.
    deadline = asyncio.run(_wait_for_empty_queue(url))
    assert deadline, "the moderation queue did not empty after the client left"
    scored = metric(url, "openchatkit_moderation_scored_texts_total") - scored_before
    assert scored < len(BIG_REQUEST) / 2, f"{scored} of {len(BIG_REQUEST)} texts were scored after the client left"
    assert metric(url, "openchatkit_moderation_dropped_texts_total") > 0
    answer = httpx.post(url + "/v1/classify", json={"input": "Thanks, that helps."}, timeout=120)
    assert answer.status_code == 200


async def _wait_for_empty_queue(url: str) -> bool:
    return await until(lambda: metric(url, "openchatkit_moderation_queued_texts") == 0)


async def until(condition: Callable[[], bool], timeout_s: float = 300.0) -> bool:
    """Poll ``condition`` (generous bound: the machine may be busy); False if it never held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True

"""The web chat page in a real browser (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import ChatStack

pytestmark = [pytest.mark.vllm, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


def test_chat_in_the_browser_streams_an_answer(chat_stack: ChatStack, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"{chat_stack.gateway.url}/#key={chat_stack.gateway.api_key}")
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    assert page.locator("#model").input_value() == chat_stack.chat.model
    page.fill("#max-tokens", "12")
    page.fill("#prompt", "What is the capital of France?")
    page.press("#prompt", "Enter")
    page.wait_for_selector(".message.assistant .feedback", timeout=60_000)
    assert page.locator(".message.user .text").inner_text() == "What is the capital of France?"
    assert page.locator(".message.assistant .text").inner_text().strip()
    assert page.locator("#error").is_hidden()
    # The conversation continues with the history.
    page.fill("#prompt", "And of Italy?")
    page.press("#prompt", "Enter")
    page.wait_for_function("document.querySelectorAll('.message.assistant .feedback').length == 2", timeout=60_000)
    page.click("#new-chat")
    assert page.locator(".message").count() == 0
    page.close()


def test_wrong_key_asks_for_one(chat_stack: ChatStack, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"{chat_stack.gateway.url}/#key=sk-wrong")
    page.wait_for_selector("#key-bar:not([hidden])")
    assert "API key" in page.locator("#error").inner_text()
    page.fill("#api-key", chat_stack.gateway.api_key)
    page.click("#save-key")
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    page.close()


def test_errors_from_the_api_are_shown(chat_stack: ChatStack, browser) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page()
    page.goto(f"{chat_stack.gateway.url}/#key={chat_stack.gateway.api_key}")
    page.wait_for_function("document.querySelector('#model').options.length > 0")
    page.fill("#max-tokens", "99999")
    page.fill("#prompt", "Hello")
    page.press("#prompt", "Enter")
    page.wait_for_selector("#error:not([hidden])")
    assert "max_tokens" in page.locator("#error").inner_text()
    page.close()


def test_thumbs_and_reports_reach_the_feedback_store(  # type: ignore[no-untyped-def]
    gateway_factory, browser, tmp_path
) -> None:
    import sqlite3

    from tests.support.feedback import (
        SHARED_REDIS_URL,
        feedback_env,
        start_feedback_api,
        start_worker,
        unique,
        wait_until,
    )

    stream = unique("test:web")
    db_path = tmp_path / "feedback.db"
    env = feedback_env(SHARED_REDIS_URL, stream, f"sqlite+aiosqlite:///{db_path}")
    api, service_url = start_feedback_api(env, tmp_path)
    worker = start_worker(env, tmp_path)
    try:
        gateway = gateway_factory(env={
            "GATEWAY_FEEDBACK__REDIS_URL": SHARED_REDIS_URL,
            "GATEWAY_FEEDBACK__STREAM": stream,
            "GATEWAY_FEEDBACK__SERVICE_URL": service_url,
        })  # fmt: skip
        page = browser.new_page()
        page.goto(f"{gateway.url}/#key={gateway.api_key}")
        page.wait_for_function("document.querySelector('#model').options.length > 0")
        page.fill("#max-tokens", "8")
        page.fill("#prompt", "Name a color.")
        page.press("#prompt", "Enter")
        page.wait_for_selector(".message.assistant .feedback", timeout=60_000)
        page.click(".feedback .up")
        page.click(".feedback .up")  # a double click stores one event
        page.wait_for_selector(".feedback .up.chosen")
        page.click(".feedback summary")
        page.check(".feedback input[value=not_helpful]")
        page.fill(".feedback .ideal", "Blue.")
        page.click(".feedback .send-report")
        page.wait_for_function("document.querySelector('.feedback-status').textContent === 'thanks!'")
        page.close()

        def rows() -> list[tuple[object, ...]]:
            try:
                with sqlite3.connect(db_path) as connection:
                    return list(connection.execute("SELECT rating, ideal_response FROM feedback ORDER BY rating"))
            except sqlite3.OperationalError:
                return []

        wait_until(lambda: len(rows()) >= 2, 30, "the worker to store the feedback")
        assert rows() == [("down", "Blue."), ("up", None)]
    finally:
        worker.stop()
        api.stop()

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

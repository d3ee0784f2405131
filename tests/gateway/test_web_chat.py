"""The web chat page in a real browser (Debian's chromium driven by Playwright) against the
real stack: vLLM (SmolLM2 on CPU), the gateway, the moderation, retrieval and feedback
services. Where a test needs a particular answer (a Markdown table, hostile HTML, a [1]
marker) the page's request is given a vLLM ``structured_outputs`` regex on its way out, so
the real model streams exactly that text through the real gateway.

Screenshots of each state, at desktop and phone widths, go to ``tests/artifacts/web/``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.web_routes import NODE_MODULES, WEB_DIR
from tests.conftest import ChatModelServer, ChatStack, Gateway, start_gateway
from tests.support.feedback import (
    SHARED_REDIS_URL,
    feedback_env,
    start_feedback_api,
    start_worker,
    unique,
    wait_until,
)
from tests.support.moderation import ModerationService
from tests.support.processes import REPO_ROOT, ServiceProcess, free_port
from tests.support.retrieval import RetrievalServer, jsonl, minimal_pdf, start_retrieval_server

pytestmark = [pytest.mark.vllm, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts" / "web"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ANSWER_TIMEOUT_MS = 180_000
HARMFUL = "I've decided tonight is the night, I have the pills counted out and I'm going to take all of them."
LIGHTHOUSE = (
    "# The Quillmoor lighthouse\n\nThe Quillmoor lighthouse stands on the Brannock headland. Its tower is "
    "painted in alternating teal and saffron bands, seven of each, and its lamp flashes twice every nine seconds.\n"
)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def web_libraries() -> Path:
    """The page's npm libraries (what `make web` installs); installed here if missing."""
    if not (NODE_MODULES / ".package-lock.json").exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=WEB_DIR, check=True, timeout=900)
    return NODE_MODULES


@pytest.fixture(scope="module")
def browser(web_libraries: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        yield browser
        browser.close()


@dataclass
class WebStack:
    gateway: Gateway
    retrieval: RetrievalServer
    moderation: ModerationService
    feedback_db: Path


@pytest.fixture(scope="module")
def stack(
    chat_server: ChatModelServer,
    moderation: ModerationService,
    log_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WebStack]:
    """A gateway with moderation (the module's service), retrieval and feedback, in front of the shared vLLM."""
    data = tmp_path_factory.mktemp("web-stack")
    retrieval = start_retrieval_server(log_dir, data / "retrieval")
    stream = unique("test:web")
    feedback_db = data / "feedback.db"
    env = feedback_env(SHARED_REDIS_URL, stream, f"sqlite+aiosqlite:///{feedback_db}")
    api, feedback_url = start_feedback_api(env, log_dir)
    worker = start_worker(env, log_dir)
    gateway = None
    try:
        gateway = start_gateway(
            log_dir,
            [{"url": chat_server.v1, "tokenizer": str(chat_server.model_dir)}],
            {
                "GATEWAY_RETRIEVAL__URL": retrieval.url,
                "GATEWAY_MODERATION__ENABLED": "true",
                "GATEWAY_MODERATION__URL": moderation.url,
                "GATEWAY_FEEDBACK__REDIS_URL": SHARED_REDIS_URL,
                "GATEWAY_FEEDBACK__STREAM": stream,
                "GATEWAY_FEEDBACK__SERVICE_URL": feedback_url,
            },
        )
        yield WebStack(gateway, retrieval, moderation, feedback_db)
    finally:
        for process in [gateway.process if gateway else None, worker, api, retrieval.process]:
            if process is not None:
                process.stop()


INERT_PARSE_REPORTS = ("Executing inline event handler", "Applying inline style")


@pytest.fixture()
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=DESKTOP)
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    # CSP reports about our own page. Parsing hostile text for the sanitiser reports blocked
    # inline handlers and styles even in an inert document: those are expected and harmless.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if "Content Security Policy" in m.text and not any(p in m.text for p in INERT_PARSE_REPORTS)
            else None
        ),
    )
    yield page
    context.close()
    assert not errors, f"uncaught errors or CSP violations in the page: {errors}"


# --- helpers -----------------------------------------------------------------------------------


def open_chat(page: Any, gateway: Gateway, max_tokens: int | None = 16) -> None:
    page.goto(f"{gateway.url}/#key={gateway.api_key}")
    page.wait_for_function("() => document.querySelector('#model').options.length > 0", timeout=60_000)
    if max_tokens is not None:
        page.click(".settings summary")
        page.fill("#max-tokens", str(max_tokens))
        page.click(".settings summary")


def send(page: Any, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def wait_answers(page: Any, count: int) -> None:
    page.wait_for_function(
        f"""() => document.querySelectorAll('.message.assistant .actions').length >= {count}
            && !document.querySelector('.message.streaming') && !document.querySelector('#send').disabled""",
        timeout=ANSWER_TIMEOUT_MS,
    )


def literal(text: str) -> str:
    """``text`` as a regular expression matching only itself."""
    return "".join("\\" + c if c in "\\.^$|?*+()[]{}/" else "\\n" if c == "\n" else c for c in text)


def constrain(page: Any, regex: str, max_tokens: int = 200) -> list[dict[str, Any]]:
    """Makes the model's next answers match ``regex``; returns the request bodies as sent."""
    sent: list[dict[str, Any]] = []

    def handle(route: Any) -> None:
        body = json.loads(route.request.post_data)
        body["structured_outputs"] = {"regex": regex}
        body["max_tokens"] = max_tokens
        body["temperature"] = 0
        sent.append(body)
        route.continue_(post_data=json.dumps(body))

    page.route("**/v1/chat/completions", handle)
    return sent


def record_requests(page: Any) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: bodies.append(json.loads(r.post_data)) if r.url.endswith("/v1/chat/completions") else None,
    )
    return bodies


def shoot(page: Any, name: str) -> None:
    """Desktop and phone screenshots of the page as it is."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-desktop.png"))
    page.set_viewport_size(PHONE)
    page.wait_for_timeout(150)
    page.screenshot(path=str(ARTIFACTS / f"{name}-phone.png"))
    page.set_viewport_size(DESKTOP)
    page.wait_for_timeout(150)


def serious_accessibility_violations(page: Any) -> list[str]:
    """axe-core (from npm) injected into the page: serious and critical violations."""
    # Evaluated through the DevTools protocol: the page's CSP forbids inline scripts.
    page.evaluate((NODE_MODULES / "axe-core" / "axe.min.js").read_text())
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} -> {[n['target'] for n in v['nodes']][:5]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


def stored_conversations(page: Any) -> list[dict[str, Any]]:
    return list(
        page.evaluate(
            """Object.keys(localStorage).filter(k => k.startsWith('openchatkit-conversation:'))
               .map(k => JSON.parse(localStorage.getItem(k)))"""
        )
    )


# --- Markdown and untrusted output -------------------------------------------------------------

TABLE_AND_CODE = (
    "Here are two planets:\n\n| Planet | Moons |\n|--------|-------|\n| Mars | 2 |\n| Earth | 1 |\n\n"
    '```python\ndef moons(planet):\n    return {"Mars": 2, "Earth": 1}[planet]\n```\n'
)


def test_a_streamed_table_and_code_block_render_as_such(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway)
    sent = constrain(page, literal(TABLE_AND_CODE))
    send(page, "Show me a table of planets and their moons, and a Python function.")
    page.wait_for_selector(".message.assistant.streaming", timeout=ANSWER_TIMEOUT_MS)  # it streams
    wait_answers(page, 1)
    assert sent and sent[0]["stream"] is True
    answer = page.locator(".message.assistant .text")
    assert answer.locator("table th").all_inner_texts() == ["Planet", "Moons"]
    assert answer.locator("table td").all_inner_texts() == ["Mars", "2", "Earth", "1"]
    code = answer.locator(".codeblock pre code")
    assert code.get_attribute("class") and "hljs" in code.get_attribute("class")
    assert code.locator("span[class^=hljs-]").count() >= 2, "highlighted"
    assert "def moons(planet):" in code.inner_text()
    assert answer.locator(".codebar").inner_text().startswith("python")
    # Copy buttons: the code block's and the whole answer's.
    answer.locator("button.copy-code").click()
    assert page.evaluate("navigator.clipboard.readText()").startswith("def moons(planet):")
    page.click(".message.assistant .actions .copy")
    assert page.evaluate("navigator.clipboard.readText()") == TABLE_AND_CODE
    shoot(page, "01-markdown")
    assert not serious_accessibility_violations(page)
    page.emulate_media(color_scheme="dark")
    shoot(page, "02-markdown-dark")
    assert not serious_accessibility_violations(page)


HOSTILE = (
    "Look: <img src=x onerror=\"document.title='pwned1'\"> and [click me](javascript:document.title='pwned2') "
    "and <a href=\"javascript:document.title='pwned3'\" onclick=\"document.title='pwned4'\">raw link</a> "
    "<script>document.title='pwned5'</script><svg onload=\"document.title='pwned6'\"></svg> end."
)


# Renders a text with the page's renderer and lists what could run or load: elements, event
# handlers, inline styles and script/data URLs (text that merely reads like HTML is fine).
UNSAFE_PARTS = """(text) => import('/static/markdown.js').then((m) => {
    const template = document.createElement('template');
    template.innerHTML = m.toSafeHtml(text);
    const found = [];
    for (const el of template.content.querySelectorAll('*')) {
        const tag = el.tagName.toLowerCase();
        if (['script', 'iframe', 'img', 'form', 'style', 'svg', 'math', 'object', 'embed', 'button'].includes(tag)) {
            found.push(tag);
        }
        for (const a of el.attributes) {
            if (/^on/i.test(a.name) || a.name === 'style' || /^\\s*(javascript|data|vbscript):/i.test(a.value)) {
                found.push(`${tag} ${a.name}=${a.value}`);
            }
        }
    }
    return found;
})"""


def test_hostile_html_in_an_answer_is_inert(gateway_factory: Callable[..., Gateway], page: Any) -> None:
    open_chat(page, gateway_factory())  # no answer moderation: the text reaches the page as generated
    constrain(page, literal(HOSTILE), max_tokens=300)
    send(page, "Repeat some HTML.")
    wait_answers(page, 1)

    def check() -> None:
        text = page.locator(".message.assistant .text")
        html = text.inner_html().lower()
        for bad in ("onerror", "onclick", "onload", "javascript:", "<script", "<img", "<svg"):
            assert bad not in html, bad
        stored = stored_conversations(page)[0]["messages"][-1]
        assert "click me" in text.inner_text() and "raw link" in text.inner_text(), stored
        assert page.title() == "OpenChatKit"

    check()
    policy = page.request.get(page.url.split("#")[0]).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "object-src 'none'" in policy
    page.reload()  # rendered again from the stored conversation
    page.wait_for_selector(".message.assistant .text")
    check()
    # More vectors, straight through the page's renderer.
    vectors = [
        "[x](JaVaScRiPt:alert(1))",
        '<a href="&#106;avascript:alert(1)">y</a>',
        "![i](x onerror=alert(1))",
        "<details open ontoggle=alert(1)>d</details>",
        "<iframe src=javascript:alert(1)></iframe>",
        "<form action=javascript:alert(1)><button>b</button></form>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "[d](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        '<div style="background:url(javascript:alert(1))">s</div>',
    ]
    for vector in vectors:
        found = page.evaluate(UNSAFE_PARTS, vector)
        assert found == [], (vector, found)
    shoot(page, "03-hostile-html")


# --- conversations -----------------------------------------------------------------------------


def test_a_conversation_survives_a_reload_and_can_be_renamed_and_deleted(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway)
    send(page, "What is the capital of France?")
    wait_answers(page, 1)
    send(page, "And of Italy?")
    wait_answers(page, 2)
    page.reload()
    page.wait_for_selector(".message.assistant .text")
    assert page.locator(".message.user .text").all_inner_texts() == ["What is the capital of France?", "And of Italy?"]
    assert page.locator(".message.assistant").count() == 2
    item = page.locator(".conversation-item.current")
    assert item.locator(".conversation-link").inner_text() == "What is the capital of France?"
    assert page.locator("#page-title").inner_text() == "What is the capital of France?"
    shoot(page, "04-conversation")

    item.locator("button.rename").click()
    page.fill(".rename-input", "Capitals")
    page.press(".rename-input", "Enter")
    page.reload()
    page.wait_for_selector(".conversation-item.current")
    assert page.locator(".conversation-item.current .conversation-link").inner_text() == "Capitals"

    # A second conversation, then delete the first; the second stays.
    page.click("#new-chat")
    assert page.locator(".message").count() == 0
    send(page, "Say hi.")
    wait_answers(page, 1)
    assert page.locator(".conversation-item").count() == 2
    page.locator(".conversation-item", has_text="Capitals").locator("button.delete").click()
    page.click(".conversation-item button.confirm-delete")
    page.wait_for_function("() => document.querySelectorAll('.conversation-item').length === 1")
    assert [c["title"] for c in stored_conversations(page)] == ["Say hi."]
    page.reload()
    page.wait_for_selector(".conversation-item")
    assert page.locator(".conversation-link").all_inner_texts() == ["Say hi."]


def test_regenerate_edit_and_resend_stop_and_retrieval_per_conversation(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway)
    bodies = record_requests(page)
    send(page, "Name a fruit.")
    wait_answers(page, 1)
    first = stored_conversations(page)[0]["messages"][1]["id"]
    page.click(".message.assistant .actions .regenerate")
    wait_answers(page, 1)
    conversation = stored_conversations(page)[0]
    assert len(conversation["messages"]) == 2 and conversation["messages"][1]["id"] != first
    assert bodies[1]["messages"] == [{"role": "user", "content": "Name a fruit."}], "the old answer is not sent"

    page.click(".message.user .actions .edit")
    page.fill(".edit-form textarea", "Name a vegetable.")
    page.click(".edit-form button[type=submit]")
    wait_answers(page, 1)
    assert page.locator(".message.user .text").all_inner_texts() == ["Name a vegetable."]
    assert bodies[2]["messages"] == [{"role": "user", "content": "Name a vegetable."}]
    assert [m["content"] for m in stored_conversations(page)[0]["messages"]][:1] == ["Name a vegetable."]

    # Stop a long answer: the partial text stays, marked as stopped.
    page.click(".settings summary")
    page.fill("#max-tokens", "400")
    page.click(".settings summary")
    send(page, "Write a long story about a dragon who learns to bake bread.")
    page.wait_for_function(
        "() => (document.querySelector('.message.streaming .text')?.textContent || '').length > 20",
        timeout=ANSWER_TIMEOUT_MS,
    )
    page.click("#stop")
    wait_answers(page, 2)
    assert page.locator(".message.assistant").last.locator(".notice", has_text="Stopped.").count() == 1
    stopped = stored_conversations(page)[0]["messages"][-1]
    assert stopped["stopped"] is True and stopped["content"]

    # The Sources toggle belongs to the conversation.
    page.check("#retrieval")
    page.click("#new-chat")
    page.uncheck("#retrieval")
    page.locator(".conversation-link").first.click()
    assert page.locator("#retrieval").is_checked()


def test_truncated_history_shows_a_notice(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway, max_tokens=8)
    filler = " ".join(f"word{i}" for i in range(260))
    messages = []
    for i in range(6):
        messages += [{"role": "user", "content": f"Question {i}: {filler}"}, {"role": "assistant", "content": filler}]
    conversation = {"id": uuid.uuid4().hex[:16], "title": "Long", "titled": True, "created": 1, "updated": 1,
                    "retrieval": False, "messages": messages}  # fmt: skip
    page.evaluate("(c) => localStorage.setItem('openchatkit-conversation:' + c.id, JSON.stringify(c))", conversation)
    page.goto(f"{stack.gateway.url}/#/c/{conversation['id']}")
    page.wait_for_function("() => document.querySelector('#model').options.length > 0", timeout=60_000)
    send(page, "Short question?")
    wait_answers(page, 7)
    notice = page.locator(".message.assistant").last.locator(".notice", has_text="too long")
    assert notice.count() == 1
    dropped = stored_conversations(page)[0]["messages"][-1]["truncation"]["dropped_messages"]
    assert dropped >= 2 and f"oldest {dropped} messages" in notice.inner_text()
    shoot(page, "05-truncated")


# --- feedback ----------------------------------------------------------------------------------


def test_thumbs_down_with_an_ideal_answer_reaches_the_feedback_store(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway, max_tokens=8)
    send(page, "Name a color.")
    wait_answers(page, 1)
    response_id = stored_conversations(page)[0]["messages"][1]["id"]
    page.click(".feedback .up")
    page.click(".feedback .up")  # a double click stores one event
    page.wait_for_selector(".feedback .up.chosen")
    page.click(".feedback summary")
    page.check(".feedback input[value=not_helpful]")
    page.fill(".feedback .ideal", "Blue.")
    page.click(".feedback .send-report")
    page.wait_for_function("() => document.querySelector('.feedback-status').textContent === 'thanks!'")

    def rows() -> list[tuple[Any, ...]]:
        try:
            with sqlite3.connect(stack.feedback_db) as connection:
                return list(
                    connection.execute(
                        "SELECT rating, ideal_response, flag_not_helpful FROM feedback WHERE response_id = ? "
                        "ORDER BY rating",
                        (response_id,),
                    )
                )
        except sqlite3.OperationalError:
            return []

    wait_until(lambda: len(rows()) >= 2, 60, "the worker to store the feedback")
    stored = rows()
    assert [(r[0], r[1]) for r in stored] == [("down", "Blue."), ("up", None)]
    assert stored[0][2]  # flag_not_helpful
    # The answer's feedback state is kept with the conversation.
    page.reload()
    page.wait_for_selector(".feedback .down")
    assert page.locator(".feedback .down").get_attribute("aria-pressed") == "true"
    assert page.locator(".feedback .up").get_attribute("aria-pressed") == "false"
    assert page.locator(".feedback input[value=not_helpful]").is_checked()
    assert page.locator(".feedback .ideal").input_value() == "Blue."
    shoot(page, "06-feedback")


# --- documents and sources ---------------------------------------------------------------------


def drop_file(page: Any, name: str, text: str, mime: str) -> None:
    """A real drop event on the drop zone carrying one file."""
    transfer = page.evaluate_handle(
        """([name, text, mime]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], name, { type: mime }));
            return transfer;
        }""",
        [name, text, mime],
    )
    page.dispatch_event("#dropzone", "dragenter", {"dataTransfer": transfer})
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})


def test_upload_documents_then_ask_with_sources_and_see_the_citation(
    stack: WebStack, page: Any, tmp_path: Path
) -> None:
    open_chat(page, stack.gateway)
    page.click("#nav-documents")
    page.wait_for_selector("#documents-view:not([hidden])")
    drop_file(page, "quillmoor.md", LIGHTHOUSE, "text/markdown")
    page.wait_for_selector(".upload.done", timeout=120_000)
    files = {
        "ferry.pdf": minimal_pdf(["The Brannock ferry leaves the harbour at noon every Tuesday."]),
        "tickets.jsonl": jsonl([{"text": "A Brannock harbour ticket costs four crowns.", "title": "Tickets"}]),
        "hours.html": b"<html><head><title>Opening hours</title></head><body><p>The Brannock museum opens at nine."
        b"</p></body></html>",
        "notes.txt": b"Brannock market runs on Saturdays.",
        "tool.exe": b"MZ\x90\x00",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    page.set_input_files("#file-input", [str(tmp_path / name) for name in files])
    page.wait_for_function(
        "() => document.querySelectorAll('.upload.done, .upload.failed').length === 6", timeout=180_000
    )
    results = dict(
        zip(
            [n.split(" (")[0] for n in page.locator(".upload .upload-name").all_inner_texts()],
            page.locator(".upload .upload-result").all_inner_texts(),
            strict=True,
        )
    )
    for name in ["quillmoor.md", "ferry.pdf", "tickets.jsonl", "hours.html", "notes.txt"]:
        assert results[name].startswith("added:"), (name, results[name])
    assert "not accepted" in results["tool.exe"]
    page.wait_for_function("() => document.querySelectorAll('#document-table tbody tr').length >= 5")
    shoot(page, "07-documents")
    assert not serious_accessibility_violations(page)

    # Ask with sources on: the answer cites [1], a link to the card of the uploaded file.
    page.click("#nav-chat")
    page.click("#new-chat")
    page.check("#retrieval")
    constrain(page, literal("The tower has teal and saffron bands [1]."), max_tokens=40)
    send(page, "What colours are the bands on the Quillmoor lighthouse?")
    wait_answers(page, 1)
    cards = page.locator(".message.assistant .citation")
    assert cards.count() >= 1
    first = cards.first
    assert "Quillmoor" in first.locator(".citation-title").inner_text()
    assert "quillmoor.md" in first.locator(".citation-source").inner_text()
    assert "teal and saffron" in first.locator(".citation-snippet").inner_text()
    assert first.locator(".citation-score").inner_text().startswith("score ")
    link = page.locator(".message.assistant .text a.cite")
    assert link.inner_text() == "[1]" and link.get_attribute("href") == "#" + str(first.get_attribute("id"))
    link.click()
    page.wait_for_function("() => document.activeElement?.classList.contains('citation')")
    assert page.url.split("#")[1].startswith("/c/"), "the page stays on the conversation"
    shoot(page, "08-citations")

    # Delete a document from the list.
    page.click("#nav-documents")
    page.wait_for_selector("#document-table tbody tr")
    row = page.locator("#document-table tbody tr", has_text="notes.txt")
    row.locator("button.delete-document").click()
    row.locator("button.delete-document").click()  # confirm
    page.wait_for_function(
        "() => ![...document.querySelectorAll('#document-table td')].some(td => td.textContent.includes('notes.txt'))"
    )
    assert not any("notes.txt" in d["source"] for d in stack.retrieval.documents())


def test_documents_page_needs_the_key(stack: WebStack, page: Any) -> None:
    page.goto(f"{stack.gateway.url}/#key=sk-wrong")
    page.wait_for_selector("#key-bar:not([hidden])")
    page.click("#nav-documents")
    page.wait_for_function("() => document.querySelector('#documents-empty').textContent.includes('API key')")
    assert page.locator("#document-table tbody tr").count() == 0
    page.fill("#api-key", stack.gateway.api_key)
    page.click("#save-key")
    page.wait_for_function("() => document.querySelector('#documents-empty').textContent === 'No documents yet.'")


def test_retrieval_unavailable_is_said(gateway_factory: Callable[..., Gateway], page: Any) -> None:
    gateway = gateway_factory(env={"GATEWAY_RETRIEVAL__URL": f"http://127.0.0.1:{free_port()}"})
    open_chat(page, gateway, max_tokens=8)
    page.check("#retrieval")
    send(page, "What is in my documents?")
    wait_answers(page, 1)
    notice = page.locator(".message.assistant .notice.warning")
    assert "Sources were unavailable" in notice.inner_text()
    shoot(page, "09-retrieval-unavailable")


# --- moderation and errors ---------------------------------------------------------------------


def test_a_blocked_prompt_shows_the_notice(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway)
    send(page, HARMFUL)
    wait_answers(page, 1)
    notice = page.locator(".message.assistant .notice.blocked")
    assert "Moderation blocked this message" in notice.inner_text()
    assert "needs intervention" in notice.inner_text()
    assert page.locator(".message.assistant.blocked").count() == 1
    shoot(page, "10-blocked")
    assert not serious_accessibility_violations(page)


def test_the_gateway_stopped_gives_a_readable_error_and_retry_works(
    gateway_factory: Callable[..., Gateway], page: Any
) -> None:
    gateway = gateway_factory()
    open_chat(page, gateway, max_tokens=8)
    gateway.process.stop()
    send(page, "Hello?")
    page.wait_for_selector("#error:not([hidden])", timeout=60_000)
    assert "Cannot reach the gateway" in page.locator("#error-text").inner_text()
    assert page.locator("#retry").is_visible() and not page.locator("#send").is_disabled()
    assert page.locator(".message.assistant").count() == 0, "no empty answer is left behind"
    shoot(page, "11-gateway-down")
    restarted = ServiceProcess("gateway", gateway.process.argv, gateway.process.env, gateway.process.log_path.parent)
    gateway.process = restarted.start()
    restarted.wait_http(gateway.url + "/ready", timeout=120)
    page.click("#retry")
    wait_answers(page, 1)
    assert page.locator("#error").is_hidden()
    assert page.locator(".message.user").count() == 1


def test_a_429_is_explained_with_a_timed_retry(stack: WebStack, page: Any) -> None:
    """The gateway's rate-limit answer (429 OpenAI error with retry-after, per ARCHITECTURE):
    this gateway has no limiter configured, so the first reply is a 429 of that shape."""
    open_chat(page, stack.gateway, max_tokens=8)
    refusal = {"error": {"message": "Rate limit reached for requests.", "type": "rate_limit_error",
                         "param": None, "code": "rate_limit_exceeded"}}  # fmt: skip

    def limited(route: Any) -> None:
        route.fulfill(
            status=429, headers={"retry-after": "2"}, content_type="application/json", body=json.dumps(refusal)
        )

    page.route("**/v1/chat/completions", limited, times=1)
    started = time.monotonic()
    send(page, "Hi")
    page.wait_for_selector("#error:not([hidden])")
    text = page.locator("#error-text").inner_text()
    assert "Too many requests" in text and "Rate limit reached" in text and "retry in 2 s" in text
    assert page.locator("#retry").is_disabled()
    shoot(page, "12-rate-limited")
    page.wait_for_function("() => !document.querySelector('#retry').disabled", timeout=30_000)
    assert time.monotonic() - started >= 1.5
    page.click("#retry")
    wait_answers(page, 1)
    assert page.locator("#error").is_hidden()


def test_api_errors_are_shown(stack: WebStack, page: Any) -> None:
    open_chat(page, stack.gateway, max_tokens=99999)
    send(page, "Hello")
    page.wait_for_selector("#error:not([hidden])")
    assert "max_tokens" in page.locator("#error-text").inner_text()


def test_a_wrong_key_asks_for_one(chat_stack: ChatStack, page: Any) -> None:
    page.goto(f"{chat_stack.gateway.url}/#key=sk-wrong")
    page.wait_for_selector("#key-bar:not([hidden])")
    assert "API key" in page.locator("#error").inner_text()
    page.fill("#api-key", chat_stack.gateway.api_key)
    page.click("#save-key")
    page.wait_for_function("() => document.querySelector('#model').options.length > 0")


# --- layout and keyboard -----------------------------------------------------------------------


def test_phone_layout_and_keyboard(stack: WebStack, page: Any) -> None:
    page.set_viewport_size(PHONE)
    open_chat(page, stack.gateway, max_tokens=8)
    assert page.locator("#sidebar").is_hidden()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "no sideways scrolling"
    page.click("#toggle-sidebar")
    assert page.locator("#sidebar").is_visible()
    assert page.locator("#toggle-sidebar").get_attribute("aria-expanded") == "true"
    page.keyboard.press("Escape")
    assert page.locator("#sidebar").is_hidden()
    # Keyboard: the skip link leads to the message box, Tab from it reaches Send, Enter sends.
    page.focus(".skip-link")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.activeElement.id === 'prompt'")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "send"
    page.keyboard.press("Shift+Tab")
    page.keyboard.type("Say hello.")
    page.keyboard.press("Enter")
    wait_answers(page, 1)
    page.screenshot(path=str(ARTIFACTS / "13-phone-chat.png"))
    assert not serious_accessibility_violations(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

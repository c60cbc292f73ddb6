"""The chat UI in a real browser against the real stack: accounts, streaming, history, search, rename, delete."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import (
    PASSWORD,
    TOKEN_DELAY_SECONDS,
    SlowLlama,
    Stack,
    log_in,
    screenshot,
    unique_email,
)
from tests.support.fake_tavily import fake_results

CONVERSATION = "query($id: ID!) { conversation(id: $id) { title messages { role content status } } }"
TREE = "query($id: ID!) { conversation(id: $id) { allMessages { role content status } } }"
OTTERS = "Otters are playful mammals that live near rivers and coasts and eat fish, crabs and clams. " * 5
HABITATS = "Otters live in rivers, lakes and along coasts [1]; sea otters rest in kelp forests [2]."
STORY = " ".join(f"word{n}" for n in range(300))  # about 9 s at the paced speed: long enough to stop
SPEED = f"{1 / TOKEN_DELAY_SECONDS:.1f} tokens/s"  # the scripted reply's llama-server timings

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def send(page: Page, text: str) -> None:
    """Type a message and press Enter (which sends)."""
    composer = page.get_by_label("Message")
    composer.fill(text)
    composer.press("Enter")


def conversation_id(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{24}$"))
    return page.url.rsplit("/", 1)[1]


def test_register_chat_reload_search_rename_delete(
    page: Page, stack: Stack, admin: str, slow_llama: SlowLlama
) -> None:
    email = unique_email("alice")
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Display name (optional)").fill("Alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()  # signed in by registering
    expect(page.get_by_role("navigation", name="Main").get_by_text("Alice", exact=True)).to_be_visible()

    slow_llama.reply = OTTERS
    try:
        send(page, "Tell me about otters please")
        live = page.locator('[data-status="streaming"]')
        expect(live).to_have_text(re.compile(r"^Otters are"))  # on screen while the answer still streams
        expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
        answer = page.locator('.bubble.assistant[data-status="complete"]')
        expect(answer).to_have_text(OTTERS.strip())  # the stream ended on its own, every token shown
    finally:
        slow_llama.reply = None
    expect(page.get_by_text(SPEED, exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    cid = conversation_id(page)
    expect(page.get_by_label("Sources")).to_have_count(0)  # no web search, no source cards
    expect(
        page.locator("#conversation-list").get_by_role("link", name="Tell me about otters please")
    ).to_be_visible()

    page.reload()
    expect(page.locator(".bubble.user")).to_have_text("Tell me about otters please")
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_text(OTTERS.strip())
    stored = stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"]
    assert stored["messages"] == [
        {"role": "USER", "content": "Tell me about otters please", "status": "COMPLETE"},
        {"role": "ASSISTANT", "content": OTTERS, "status": "COMPLETE"},
    ]

    search = page.get_by_label("Search conversations")
    search.fill("no such words anywhere")
    expect(page.get_by_text("No matches.")).to_be_visible()
    search.fill("otters")
    expect(page.locator("#conversation-list").get_by_role("link")).to_have_count(1)
    expect(
        page.locator("#conversation-list").get_by_role("link", name="Tell me about otters please")
    ).to_be_visible()
    search.fill("")

    page.get_by_role("button", name="Rename Tell me about otters please").click()
    title = page.get_by_label("New title")
    title.fill("Otter facts")
    title.press("Enter")
    expect(page.locator("#conversation-list").get_by_role("link", name="Otter facts")).to_be_visible()
    expect(page.get_by_role("heading", name="Otter facts")).to_be_visible()
    assert stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"]["title"] == "Otter facts"

    page.get_by_role("button", name="Delete Otter facts").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Delete this conversation?")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/$"))
    assert stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"] is None

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You have been logged out.")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_stop_keeps_the_partial_answer(page: Page, stack: Stack, admin: str, slow_llama: SlowLlama) -> None:
    email = unique_email("stopper")
    stack.register(email)
    log_in(page, email)
    slow_llama.reply = STORY
    try:
        send(page, "Write a very long story")
        expect(page.locator('[data-status="streaming"]')).to_have_text(re.compile(r"^word0 word1 word2"))
        page.get_by_role("button", name="Stop", exact=True).click()
        expect(page.get_by_text("Stopped.")).to_be_visible()
    finally:
        slow_llama.reply = None
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()

    cid = conversation_id(page)
    message = stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"]["messages"][-1]
    assert message["status"] == "STOPPED"
    kept = message["content"]
    assert STORY.startswith(kept) and 3 <= len(kept.split()) < 300, kept  # a strict prefix of the answer
    expect(page.locator('.bubble.assistant[data-status="stopped"]')).to_have_text(re.compile(r"^word0 word1"))
    page.reload()
    expect(page.locator('.bubble.assistant[data-status="stopped"]')).to_have_text(kept.strip())


def test_regenerate_and_edit_and_resend(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("dave")
    stack.register(email)
    log_in(page, email)
    send(page, "First question")
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    cid = conversation_id(page)
    first = stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"]["messages"][1]["content"]

    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    messages = stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert [(m["role"], m["status"]) for m in messages] == [("USER", "COMPLETE"), ("ASSISTANT", "COMPLETE")]
    nodes = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["allMessages"]
    assert nodes == [  # the old answer stays as version 1 of 2
        {"role": "USER", "content": "First question", "status": "COMPLETE"},
        {"role": "ASSISTANT", "content": first, "status": "COMPLETE"},
        {"role": "ASSISTANT", "content": messages[1]["content"], "status": "COMPLETE"},
    ]
    expect(page.locator(".version-label")).to_have_text("2/2")

    page.get_by_role("button", name="Edit this message").click()
    editor = page.get_by_label("Edit message")
    expect(editor).to_have_value("First question")
    editor.fill("Second, edited question")
    page.get_by_role("button", name="Send edited").click()
    expect(page.locator(".bubble.user")).to_have_text(["Second, edited question"])  # a new version
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    expect(page.locator(".version-label").first).to_have_text("2/2")
    messages = stack.gql(CONVERSATION, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert messages[0] == {"role": "USER", "content": "Second, edited question", "status": "COMPLETE"}
    assert [(m["role"], m["status"]) for m in messages[1:]] == [("ASSISTANT", "COMPLETE")]
    nodes = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["allMessages"]
    assert [(m["role"], m["content"]) for m in nodes if m["role"] == "USER"] == [
        ("USER", "First question"),
        ("USER", "Second, edited question"),
    ]
    assert len(nodes) == 5  # both questions, the first one's two answers, the edited one's answer

    page.get_by_role("link", name="New chat").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.locator(".bubble")).to_have_count(0)
    page.go_back()
    expect(page.locator(".bubble.user")).to_have_text(["Second, edited question"])


def test_web_search_shows_source_cards(page: Page, stack: Stack, admin: str, slow_llama: SlowLlama) -> None:
    email = unique_email("erin")
    stack.register(email)
    log_in(page, email)
    page.get_by_role("radio", name="Web", exact=True).click()
    slow_llama.reply = HABITATS
    try:
        send(page, "otter habitats")
        sources = page.get_by_label("Sources")
        expect(sources.get_by_role("link")).to_have_count(5)
        expect(sources.first).to_contain_text("Result 1 for otter habitats")
        expect(sources.first).to_contain_text("example.test")
        expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_text(HABITATS)
    finally:
        slow_llama.reply = None
    expect(page.locator("#conversation-list").get_by_role("link", name="otter habitats")).to_be_visible()
    query = "query($id: ID!) { conversation(id: $id) { messages { sources { url } } } }"
    stored = stack.gql(query, {"id": conversation_id(page)}, stack.token(email))["conversation"]["messages"]
    assert stored[1]["sources"] == [{"url": r["url"]} for r in fake_results("otter habitats")]
    links = sources.get_by_role("link")
    assert [links.nth(i).get_attribute("href") for i in range(5)] == [s["url"] for s in stored[1]["sources"]]
    screenshot(page, "sources")


def test_document_search_shows_document_cards(page: Page, stack: Stack, admin: str, tmp_path: Path) -> None:
    email = unique_email("dora")
    stack.register(email)
    log_in(page, email)
    expect(page.get_by_role("radio", name="Documents (none indexed)")).to_be_visible()
    expect(page.get_by_role("radio", name="Web", exact=True)).to_be_visible()  # Tavily is configured here
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "engine.md").write_text("# Zorblax engine\n\nThe Zorblax engine runs on quark fuel.\n")
    env = {**os.environ, "CHAKOR_VAR_DIR": str(stack.backend.var_dir)}
    added = subprocess.run(
        [sys.executable, "-m", "chakor", "docs", "add", str(notes)], env=env, capture_output=True, text=True
    )
    assert added.returncode == 0, added.stdout + added.stderr
    page.reload()
    page.get_by_role("radio", name="Documents", exact=True).click()
    send(page, "What does the Zorblax engine run on?")
    sources = page.get_by_label("Sources")
    expect(sources.locator(".source-card")).to_have_count(1)
    expect(sources.first).to_contain_text("Zorblax engine")
    expect(sources.first).to_contain_text("engine.md")  # a file name: no server path reaches users
    expect(sources.get_by_role("link")).to_have_count(0)  # a local path is not a web link
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    query = "query($id: ID!) { conversation(id: $id) { messages { sources { title url content } } } }"
    stored = stack.gql(query, {"id": conversation_id(page)}, stack.token(email))["conversation"]["messages"]
    assert stored[1]["sources"] == [
        {
            "title": "Zorblax engine",
            "url": "engine.md",
            "content": "The Zorblax engine runs on quark fuel.",
        }
    ]


def test_model_server_down_shows_error_then_retry_answers(
    page: Page, stack: Stack, admin: str, slow_llama: SlowLlama
) -> None:
    email = unique_email("frank")
    stack.register(email)
    log_in(page, email)
    slow_llama.down = True
    try:
        send(page, "Is anybody there?")
        expect(page.get_by_role("alert")).to_contain_text("The model server is not available right now.")
    finally:
        slow_llama.down = False
    page.get_by_role("button", name="Retry").click()
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    expect(page.get_by_role("alert")).to_have_count(0)
    messages = stack.gql(CONVERSATION, {"id": conversation_id(page)}, stack.token(email))["conversation"][
        "messages"
    ]
    assert [(m["role"], m["status"]) for m in messages] == [("USER", "COMPLETE"), ("ASSISTANT", "COMPLETE")]


def test_shift_enter_adds_a_line_and_phone_width(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("gina")
    stack.register(email)
    page.set_viewport_size({"width": 390, "height": 844})
    log_in(page, email)
    composer = page.get_by_label("Message")
    composer.fill("line one")
    composer.press("Shift+Enter")
    composer.press_sequentially("line two")
    expect(composer).to_have_value("line one\nline two")
    composer.press("Enter")
    expect(page.locator(".bubble.user")).to_have_text("line one\nline two")
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(page, "chat-phone")


def test_sidebar_pages_and_expired_session_goes_to_login(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("iris")
    token = stack.register(email)["accessToken"]
    for n in range(21):
        stack.gql(
            "mutation($t: String) { createConversation(title: $t) { id } }", {"t": f"Topic {n:02d}"}, token
        )
    log_in(page, email)
    links = page.locator("#conversation-list").get_by_role("link")
    expect(links).to_have_count(20)
    expect(links.first).to_have_text("Topic 20")  # newest first
    page.get_by_role("button", name="Load more").click()
    expect(links).to_have_count(21)
    expect(links.last).to_have_text("Topic 00")
    expect(page.get_by_role("button", name="Load more")).to_have_count(0)

    change = "mutation($o: String!, $n: String!) { changePassword(oldPassword: $o, newPassword: $n) }"
    stack.gql(change, {"o": PASSWORD, "n": "another-password-456"}, token)  # signs out every session
    page.get_by_label("Search conversations").fill("Topic")
    expect(page.get_by_text("Your session has expired. Please log in again.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/login$"))


def test_markdown_answer_with_highlighted_code_and_copy(
    page: Page, stack: Stack, admin: str, slow_llama: SlowLlama
) -> None:
    email = unique_email("jack")
    stack.register(email)
    log_in(page, email)
    code = "def greet(name):\n    return f'hello {name}'"
    slow_llama.reply = f"Here is **bold** advice from the web [1].\n\n```python\n{code}\n```\n"
    page.get_by_role("radio", name="Web", exact=True).click()
    try:
        send(page, "Show me a Python greeting")
        answer = page.locator('.bubble.assistant[data-status="complete"]')
        expect(answer).to_have_count(1)
    finally:
        slow_llama.reply = None
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("pre code")).to_contain_text("def greet(name):")
    keyword = answer.locator("pre code span.token", has_text="def").first  # highlighted by Prism
    expect(keyword).to_have_attribute("style", re.compile(r"color"))
    answer.get_by_role("button", name="Copy code").click()
    assert page.evaluate("navigator.clipboard.readText()") == code
    expect(page.get_by_label("Sources").get_by_role("link")).to_have_count(5)
    expect(page.get_by_role("radio", name="Web", exact=True)).to_be_checked()  # stays on for the next turn
    expect(page.locator("#conversation-list").get_by_role("link")).to_have_count(1)  # listed, then shot
    screenshot(page, "chat")


def test_wrong_password_is_refused(page: Page, stack: Stack, admin: str) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(admin)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("invalid e-mail or password")
    expect(page).to_have_url(re.compile(r"/login/?\?error=[\w-]+$"))  # a one-time message id
    page.reload()  # shown once
    expect(page.get_by_role("alert")).to_have_count(0)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login/?$"))


def test_rate_limited_turn_shows_error_then_retry_sends_it(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("kim")
    stack.register(email)
    tabs = [page, page.context.new_page(), page.context.new_page()]  # each tab is its own session
    for tab in tabs:
        log_in(tab, email)
    for tab in tabs[:2]:  # the backend allows two answers in progress per user
        send(tab, "Keep talking")
        expect(tab.locator('[data-status="streaming"]')).to_have_text(re.compile(r"\S"))
    third = tabs[2]
    send(third, "One more question")
    expect(third.get_by_role("alert")).to_contain_text("Too many requests: wait a moment, then retry.")
    expect(third.locator(".bubble.user")).to_have_text("One more question")

    for tab in tabs[:2]:
        tab.get_by_role("button", name="Stop", exact=True).click()
        expect(tab.get_by_text("Stopped.")).to_be_visible()
    admin_token = stack.token(admin)
    stack.wait_until(
        lambda: (
            stack.gql("{ serverStatus { activeStreams } }", token=admin_token)["serverStatus"][
                "activeStreams"
            ]
            == 0
        )
    )
    third.get_by_role("button", name="Retry").click()
    expect(third.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    expect(third.locator(".bubble.user")).to_have_text("One more question")

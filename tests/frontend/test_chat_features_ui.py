"""Chat features in a real browser: version switchers, the settings panel, export/import, API keys, auto-scroll."""

from __future__ import annotations

import json
import re
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from backend.services.titles import TITLE_TOKENS
from tests.frontend.conftest import SlowLlama, Stack, log_in, screenshot, unique_email
from tests.frontend.test_chat_ui import conversation_id, send

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TREE = (
    "query($id: ID!) { conversation(id: $id) { systemPrompt temperature maxTokens"
    " messages { id role content tokensPredicted } allMessages { id role content } } }"
)
EXPORT = "query($id: ID!, $f: ExportFormat!) { exportConversation(id: $id, format: $f) }"
USAGE = "query { usageByUser(days: 1) { userId tokensIn tokensOut answers } }"
VERSIONS = [  # scripted answers, too long to be taken as a title
    f"Version {n} of the answer: otters live along rivers, lakes and rocky coasts {where}."
    for n, where in ((1, "of Europe"), (2, "across Asia"), (3, "in North America"))
]
SCROLL_GAP = "() => { const b = document.getElementById('message-scroller'); return b.scrollHeight - b.scrollTop - b.clientHeight; }"


def signed_in(page: Page, stack: Stack, name: str) -> str:
    email = unique_email(name)
    stack.register(email)
    log_in(page, email)
    return email


def answered(page: Page, count: int) -> None:
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(count)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()


def test_regenerated_answers_switch_with_version_arrows(
    page: Page, stack: Stack, admin: str, slow_llama: SlowLlama
) -> None:
    email = signed_in(page, stack, "versions")
    bubble = page.locator(".bubble.assistant")
    switcher = page.locator(".version-switcher")
    try:
        slow_llama.reply = VERSIONS[0]
        send(page, "Where do otters live?")
        answered(page, 1)
        expect(bubble).to_have_text(VERSIONS[0])
        cid = conversation_id(page)
        for count in (2, 3):
            slow_llama.reply = VERSIONS[count - 1]
            page.get_by_role("button", name="Regenerate").click()
            # the first turn's title is still being generated (slowly, by the same scripted model): the
            # click must not wait for it
            expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
            answered(page, 1)
            expect(switcher.locator(".version-label")).to_have_text(f"{count}/{count}")
            expect(bubble).to_have_text(VERSIONS[count - 1])
    finally:
        slow_llama.reply = None
    stored = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]
    first, second, third = [m["id"] for m in stored["allMessages"] if m["role"] == "ASSISTANT"]
    assert [m["id"] for m in stored["messages"]] == [stored["allMessages"][0]["id"], third]
    assert [m["content"] for m in stored["allMessages"]] == ["Where do otters live?", *VERSIONS]
    expect(bubble).to_have_attribute("data-message-id", third)

    page.get_by_role("button", name="Previous version").click()
    expect(switcher.locator(".version-label")).to_have_text("2/3")
    expect(bubble).to_have_attribute("data-message-id", second)
    expect(bubble).to_have_text(VERSIONS[1])
    expect(
        page.locator("#conversation-list").get_by_role("link", name="Where do otters live?")
    ).to_be_visible()
    screenshot(page, "chat-branches")
    page.get_by_role("button", name="Previous version").click()
    expect(switcher.locator(".version-label")).to_have_text("1/3")
    expect(bubble).to_have_attribute("data-message-id", first)
    expect(bubble).to_have_text(VERSIONS[0])
    expect(page.get_by_role("button", name="Previous version")).to_be_disabled()
    shown = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert shown[1]["id"] == first  # the choice is stored: it is the active branch now
    page.reload()
    expect(page.locator(".version-label")).to_have_text("1/3")
    expect(bubble).to_have_attribute("data-message-id", first)
    page.get_by_role("button", name="Next version").click()
    expect(page.locator(".version-label")).to_have_text("2/3")
    expect(bubble).to_have_attribute("data-message-id", second)
    shown = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert shown[1]["id"] == second


def test_settings_panel_stores_the_conversation_settings(page: Page, stack: Stack, admin: str) -> None:
    email = signed_in(page, stack, "settings")
    page.get_by_role("button", name="Conversation settings").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("System prompt")).to_have_value("")  # a new chat: the server's defaults
    dialog.get_by_label("System prompt").fill("Answer in one word.")
    dialog.get_by_label("Max tokens per answer").fill("5")
    dialog.get_by_label("Temperature (empty: the model's default)").fill("hot")
    dialog.get_by_role("button", name="Save settings").click()
    expect(dialog.get_by_role("alert")).to_have_text("Temperature must be a number")
    dialog.get_by_label("Temperature (empty: the model's default)").fill("0")
    dialog.get_by_role("button", name="Save settings").click()
    cid = conversation_id(page)
    stored = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]
    assert (stored["systemPrompt"], stored["temperature"], stored["maxTokens"]) == (
        "Answer in one word.",
        0,
        5,
    )

    send(page, "Describe the sea")
    answered(page, 1)
    messages = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert messages[1]["tokensPredicted"] == 5  # greedy on the random model: cut at the limit, no early end
    # made by the settings panel as "New conversation", it is titled after its first answer all the same
    sidebar = page.locator("#conversation-list").get_by_role("link")
    expect(sidebar).to_have_count(1)
    expect(sidebar.first).not_to_have_text("New conversation")
    title = stack.gql("query($id: ID!) { conversation(id: $id) { title } }", {"id": cid}, stack.token(email))
    expect(sidebar).to_have_text([title["conversation"]["title"]])
    page.get_by_role("button", name="Conversation settings").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("System prompt")).to_have_value("Answer in one word.")
    expect(dialog.get_by_label("Max tokens per answer")).to_have_value("5")
    expect(dialog.get_by_label("Temperature (empty: the model's default)")).to_have_value("0.0")
    screenshot(page, "conversation-settings")


def test_export_button_downloads_and_import_opens_a_copy(
    page: Page, stack: Stack, admin: str, tmp_path
) -> None:
    email = signed_in(page, stack, "export")
    send(page, "Export this chat")
    answered(page, 1)
    cid = conversation_id(page)
    page.get_by_role("button", name="Export", exact=True).click()
    with page.expect_download() as download:
        page.get_by_role("menuitem", name="JSON (every version)").click()
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    assert path.name == "Export-this-chat.json"
    token = stack.token(email)
    exported = stack.gql(EXPORT, {"id": cid, "f": "JSON"}, token)["exportConversation"]
    assert path.read_bytes() == exported.encode()
    document = json.loads(path.read_text())
    assert document["format"] == "chakor.conversation"
    assert [(m["role"], m["status"]) for m in document["messages"]] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    assert document["messages"][0]["content"] == "Export this chat"

    page.get_by_role("button", name="Export", exact=True).click()
    with page.expect_download() as markdown:
        page.get_by_role("menuitem", name="Markdown (this branch)").click()
    assert markdown.value.suggested_filename == "Export-this-chat.md"
    markdown.value.save_as(tmp_path / "export.md")
    expected = stack.gql(EXPORT, {"id": cid, "f": "MARKDOWN"}, token)["exportConversation"]
    assert (tmp_path / "export.md").read_bytes() == expected.encode()  # bytes: the answer may hold a \r
    assert expected.startswith("# Export this chat\n\n## User\n\nExport this chat\n\n## Assistant\n\n")

    page.locator("#import-upload input[type=file]").set_input_files(str(path))
    expect(page).not_to_have_url(re.compile(cid))
    copy = conversation_id(page)
    expect(page.locator(".bubble.user")).to_have_text(["Export this chat"])
    stored = stack.gql(TREE, {"id": copy}, stack.token(email))["conversation"]
    assert [(m["role"].lower(), m["content"]) for m in stored["allMessages"]] == [
        (m["role"], m["content"]) for m in document["messages"]
    ]
    assert {m["id"] for m in stored["allMessages"]}.isdisjoint(m["id"] for m in document["messages"])


def test_api_key_page_creates_shows_once_and_revokes(page: Page, stack: Stack, admin: str) -> None:
    email = signed_in(page, stack, "keys")
    page.get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    page.get_by_label("Key name").fill("my script")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-secret")
    expect(secret).to_have_text(re.compile(r"^chk_\S{40,}$"))
    key = secret.inner_text()
    expect(page.get_by_role("cell", name="my script", exact=True)).to_be_visible()
    expect(page.get_by_text(key[:12] + "…")).to_be_visible()
    assert stack.gql("{ me { email } }", token=key)["me"]["email"] == email
    base_url = stack.backend.openai_base_url  # no CHAKOR_PUBLIC_URL here: the backend's own address
    expect(page.locator("#openai-base-url")).to_have_text(base_url)
    models = httpx.get(f"{base_url}/models", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert models.status_code == 200 and models.json()["object"] == "list"
    keys = stack.gql("{ apiKeys { name prefix lastUsedAt } }", token=stack.token(email))["apiKeys"]
    assert [(k["name"], k["prefix"]) for k in keys] == [("my script", key[:12])]
    screenshot(page, "api-keys")

    page.reload()
    expect(page.locator("#new-secret")).to_have_count(0)  # shown once
    page.get_by_role("button", name="Revoke my script").click()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    assert stack.refusal("{ me { email } }", token=key) == "invalid or revoked API key"
    assert stack.gql("{ apiKeys { name } }", token=stack.token(email))["apiKeys"] == []


def test_auto_scroll_follows_the_stream_until_the_reader_scrolls_up(
    page: Page, stack: Stack, admin: str
) -> None:
    signed_in(page, stack, "scroll")
    page.set_viewport_size({"width": 1000, "height": 450})
    send(page, "\n".join("x" * 3 for _ in range(30)))  # taller than the message pane, few tokens
    live = page.locator('[data-status="streaming"]')
    expect(live).to_have_text(re.compile(r"\S{5}"))
    page.wait_for_function(
        "() => { const b = document.getElementById('message-scroller');"
        " return b.scrollHeight > b.clientHeight + 200 && b.scrollHeight - b.scrollTop - b.clientHeight < 48; }"
    )
    page.evaluate("() => { document.getElementById('message-scroller').scrollTop = 0; }")
    seen = len(live.inner_text())
    page.wait_for_function(
        "n => !document.querySelector('[data-status=\"streaming\"]')"
        " || document.querySelector('[data-status=\"streaming\"]').innerText.length > n + 20",
        arg=seen,
    )
    assert page.evaluate("() => document.getElementById('message-scroller').scrollTop") == 0
    answered(page, 1)
    page.evaluate(  # back at the bottom: following again for the next answer
        "() => { const b = document.getElementById('message-scroller'); b.scrollTop = b.scrollHeight; }"
    )
    page.locator("#composer").fill("and more")
    page.locator("#composer").press("Enter")
    expect(live).to_have_text(re.compile(r"\S{5}"))
    page.wait_for_function(
        f"() => ({SCROLL_GAP})() < 48 && document.querySelector('[data-status=\"streaming\"]')"
    )


def test_admin_pages_through_users_and_charts_usage(page: Page, stack: Stack, admin: str) -> None:
    prefix = f"pager-{uuid.uuid4().hex[:6]}"
    for index in range(27):  # more than one page of 25
        stack.register(f"{prefix}-{index:02d}@chakor.test")
    user = signed_in(page, stack, "charted")
    send(page, "count this answer")
    answered(page, 1)
    me = stack.gql("{ me { id } }", token=stack.token(user))["me"]["id"]
    cid = conversation_id(page)
    answer = stack.gql(TREE, {"id": cid}, stack.token(user))["conversation"]["messages"][1]

    def used() -> dict[str, int]:
        rows = stack.gql(USAGE, token=stack.token(admin))["usageByUser"]
        return next(d for d in rows if d["userId"] == me)

    # The app asks for the conversation's title after its first answer, and a title counts as an answer
    # of at most TITLE_TOKENS tokens: wait until both are recorded.
    deadline = time.monotonic() + 30
    while used()["answers"] < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    usage = used()
    assert usage["answers"] == 2
    assert 1 <= usage["tokensOut"] - answer["tokensPredicted"] <= TITLE_TOKENS
    page.get_by_role("button", name="Log out").click()
    page.set_viewport_size({"width": 1280, "height": 1400})
    log_in(page, admin)
    page.goto("/admin")
    expect(page.get_by_role("heading", name="Usage (last 14 days, UTC)")).to_be_visible()
    expect(page.locator("#usage-chart .recharts-bar-rectangle").first).to_be_visible()
    page.locator("#usage-chart").scroll_into_view_if_needed()
    screenshot(page, "admin-usage")
    page.get_by_label("Search users").fill(prefix)
    expect(page.locator("#users-table")).not_to_contain_text(user)  # the search is applied
    rows = page.locator("#users-table tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text(f"{prefix}-26@")  # newest first
    page.get_by_role("button", name="Next page").click()
    expect(rows).to_have_count(2)
    expect(rows.last).to_contain_text(f"{prefix}-00@")
    expect(page.get_by_role("button", name="Next page")).to_be_disabled()
    page.get_by_role("button", name="Previous page").click()
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text(f"{prefix}-26@")
    assert user not in page.locator("#users-table").inner_text()

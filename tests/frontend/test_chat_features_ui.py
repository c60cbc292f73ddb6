"""Chat features in a real browser: version switchers, the settings panel, export/import, API keys, auto-scroll."""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import Stack, log_in, unique_email
from tests.frontend.test_chat_ui import conversation_id, send

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TREE = "query($id: ID!) { conversation(id: $id) { systemPrompt maxTokens messages { id role content tokensPredicted } allMessages { id role content } } }"
SCROLL_GAP = "() => { const b = document.getElementById('message-scroller'); return b.scrollHeight - b.scrollTop - b.clientHeight; }"


def signed_in(page: Page, stack: Stack, name: str) -> str:
    email = unique_email(name)
    stack.register(email)
    log_in(page, email)
    return email


def answered(page: Page, count: int) -> None:
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(count)
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()


def test_regenerated_answers_switch_with_version_arrows(page: Page, stack: Stack, admin: str) -> None:
    email = signed_in(page, stack, "versions")
    send(page, "First question")
    answered(page, 1)
    cid = conversation_id(page)
    page.get_by_role("button", name="Regenerate").click()
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    answered(page, 1)
    switcher = page.locator(".version-switcher")
    expect(switcher.locator(".version-label")).to_have_text("2/2")
    stored = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]
    first, second = [m["id"] for m in stored["allMessages"] if m["role"] == "ASSISTANT"]
    assert stored["messages"][1]["id"] == second
    bubble = page.locator(".bubble.assistant")
    expect(bubble).to_have_attribute("data-message-id", second)

    page.get_by_role("button", name="Previous version").click()
    expect(switcher.locator(".version-label")).to_have_text("1/2")
    expect(bubble).to_have_attribute("data-message-id", first)
    expect(page.get_by_role("button", name="Previous version")).to_be_disabled()
    shown = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert shown[1]["id"] == first  # the choice is stored: it is the active branch now
    page.reload()
    expect(page.locator(".version-label")).to_have_text("1/2")
    expect(bubble).to_have_attribute("data-message-id", first)
    page.get_by_role("button", name="Next version").click()
    expect(page.locator(".version-label")).to_have_text("2/2")
    expect(bubble).to_have_attribute("data-message-id", second)


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
    assert (stored["systemPrompt"], stored["maxTokens"]) == ("Answer in one word.", 5)

    send(page, "Describe the sea")
    answered(page, 1)
    messages = stack.gql(TREE, {"id": cid}, stack.token(email))["conversation"]["messages"]
    assert messages[1]["tokensPredicted"] <= 5
    page.get_by_role("button", name="Conversation settings").click()
    expect(page.get_by_role("dialog").get_by_label("System prompt")).to_have_value("Answer in one word.")
    expect(page.get_by_role("dialog").get_by_label("Max tokens per answer")).to_have_value("5")


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
    document = json.loads(path.read_text())
    assert document["format"] == "chakor.conversation"
    assert document["messages"][0]["content"] == "Export this chat"

    page.get_by_role("button", name="Export", exact=True).click()
    with page.expect_download() as markdown:
        page.get_by_role("menuitem", name="Markdown (this branch)").click()
    assert markdown.value.suggested_filename == "Export-this-chat.md"

    page.locator("#import-upload input[type=file]").set_input_files(str(path))
    expect(page).not_to_have_url(re.compile(cid))
    copy = conversation_id(page)
    expect(page.locator(".bubble.user")).to_have_text(["Export this chat"])
    stored = stack.gql(TREE, {"id": copy}, stack.token(email))["conversation"]
    assert [m["content"] for m in stored["allMessages"]] == [m["content"] for m in document["messages"]]


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

    page.reload()
    expect(page.locator("#new-secret")).to_have_count(0)  # shown once
    page.get_by_role("button", name="Revoke my script").click()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()
    refused = httpx.post(
        stack.backend.graphql_url,
        json={"query": "{ me { email } }"},
        headers={"Authorization": f"Bearer {key}"},
    ).json()
    assert refused["errors"][0]["message"] == "invalid or revoked API key"


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
    page.get_by_role("button", name="Log out").click()
    page.set_viewport_size({"width": 1280, "height": 1400})
    log_in(page, admin)
    page.goto("/admin")
    expect(page.get_by_role("heading", name="Usage (last 14 days, UTC)")).to_be_visible()
    expect(page.locator("#usage-chart .recharts-bar-rectangle").first).to_be_visible()
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

"""The chat UI in a real browser against the real stack: accounts, streaming, history, search, rename, delete."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.frontend.conftest import PASSWORD, Stack, screenshot, unique_email

CONVERSATION = "query($id: ID!) { conversation(id: $id) { title messages { role content status } } }"


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()


def send(page: Page, text: str) -> None:
    """Type a message and press Enter (which sends)."""
    composer = page.get_by_label("Message")
    composer.fill(text)
    composer.press("Enter")


def conversation_id(page: Page) -> str:
    expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{24}$"))
    return page.url.rsplit("/", 1)[1]


def token_for(stack: Stack, email: str) -> str:
    query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    return stack.gql(query, {"e": email, "p": PASSWORD})["login"]["accessToken"]


def test_register_chat_reload_search_rename_delete(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("alice")
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Display name (optional)").fill("Alice")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("Account created. Please log in.")).to_be_visible()
    log_in(page, email)

    send(page, "Tell me about otters please")
    live = page.locator('[data-status="streaming"]')
    expect(live).to_have_text(re.compile(r"\S"))  # tokens are on screen while the answer still streams
    expect(page.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    answer = page.locator('.bubble.assistant[data-status="complete"]')
    expect(answer).to_have_count(1)  # the stream ended on its own
    expect(page.get_by_text(re.compile(r"[\d.]+ tokens/s"))).to_be_visible()
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()
    cid = conversation_id(page)
    expect(
        page.locator("#conversation-list").get_by_role("link", name="Tell me about otters please")
    ).to_be_visible()
    screenshot(page, "chat")

    page.reload()
    expect(page.locator(".bubble.user")).to_have_text("Tell me about otters please")
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    stored = stack.gql(CONVERSATION, {"id": cid}, token_for(stack, email))["conversation"]
    assert [m["role"] for m in stored["messages"]] == ["USER", "ASSISTANT"]
    assert stored["messages"][1]["status"] == "COMPLETE" and stored["messages"][1]["content"]

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
    assert (
        stack.gql(CONVERSATION, {"id": cid}, token_for(stack, email))["conversation"]["title"]
        == "Otter facts"
    )

    page.get_by_role("button", name="Delete Otter facts").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text("Delete this conversation?")
    dialog.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No conversations yet.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"/$"))
    assert stack.gql(CONVERSATION, {"id": cid}, token_for(stack, email))["conversation"] is None

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You have been logged out.")).to_be_visible()
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_stop_keeps_the_partial_answer(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("stopper")
    stack.register(email)
    log_in(page, email)
    send(page, "Write a very long story")
    expect(page.locator('[data-status="streaming"]')).to_have_text(re.compile(r"\S"))
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.get_by_text("Stopped.")).to_be_visible()
    stopped = page.locator('.bubble.assistant[data-status="stopped"]')
    expect(stopped).to_have_text(re.compile(r"\S"))
    expect(page.get_by_role("button", name="Send", exact=True)).to_be_visible()

    cid = conversation_id(page)
    message = stack.gql(CONVERSATION, {"id": cid}, token_for(stack, email))["conversation"]["messages"][-1]
    assert message["status"] == "STOPPED"
    assert message["content"].strip()
    page.reload()
    expect(page.locator('.bubble.assistant[data-status="stopped"]')).to_have_text(re.compile(r"\S"))


def test_non_admin_cannot_open_admin(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("bob")
    stack.register(email)
    log_in(page, email)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto("/admin")
    expect(page).not_to_have_url(re.compile(r"/admin$"))
    expect(page.get_by_text("The admin dashboard is for administrators only.")).to_be_visible()
    expect(page.get_by_role("heading", name="Admin dashboard")).to_have_count(0)


def test_admin_promotes_a_user(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("carol")
    user_id = stack.register(email)["user"]["id"]
    log_in(page, admin)
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Admin dashboard")).to_be_visible()
    expect(page.locator("#model-card")).to_contain_text("Parameters")
    expect(page.get_by_text("live")).to_be_visible()
    expect(page.locator("#server-stats")).to_contain_text("%")
    expect(page.locator("#users-table")).to_contain_text(email)
    screenshot(page, "admin")

    page.get_by_label("Search users").fill(email)
    rows = page.locator("#users-table tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_role("button", name=f"Promote {email}").click()
    expect(page.get_by_role("button", name=f"Demote {email}")).to_be_visible()
    expect(rows.first).to_contain_text("admin")
    users = stack.gql(
        "query { users(first: 100) { edges { node { id role } } } }", token=token_for(stack, admin)
    )
    assert {"id": user_id, "role": "ADMIN"} in [edge["node"] for edge in users["users"]["edges"]]

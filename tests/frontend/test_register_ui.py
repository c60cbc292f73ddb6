"""Registration in a real browser under each sign-up policy (CHAKOR_SIGNUP): `open` signs the new user in
with the same HttpOnly session cookie as login, `approval` leaves them signed out and waiting, `closed` refuses."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import PASSWORD, Stack, unique_email
from tests.frontend.test_chat_ui import CONVERSATION, conversation_id, send

pytestmark = [pytest.mark.browser, pytest.mark.slow]

USERS = "query($s: String) { users(first: 5, search: $s) { edges { node { email displayName approved } } } }"
AWAITING = "Account created. An admin must approve it before you can log in."
CLOSED = "sign-up is closed; ask an admin for an account"


def fill_registration(page: Page, email: str, name: str, repeat: str = PASSWORD) -> None:
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Display name (optional)").fill(name)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(repeat)
    page.get_by_role("button", name="Create account").click()


def session_cookies(page: Page) -> list[dict[str, Any]]:
    return [dict(c) for c in page.context.cookies() if c["name"] == "chakor_session"]


def accounts(stack: Stack, admin: str, email: str) -> list[dict[str, Any]]:
    found = stack.gql(USERS, {"s": email}, stack.token(admin))["users"]["edges"]
    return [edge["node"] for edge in found]


def test_open_signup_lands_in_the_chat_signed_in(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("opal")
    fill_registration(page, email, "Opal", repeat="a different password")
    expect(page.get_by_role("alert")).to_have_text("The passwords do not match.")
    expect(page).to_have_url(re.compile(r"/register/?\?error=[\w-]+$"))
    assert session_cookies(page) == [] and accounts(stack, admin, email) == []

    fill_registration(page, email, "Opal")
    expect(page).to_have_url(f"{stack.app_url}/")
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    expect(page.get_by_role("navigation", name="Main").get_by_text("Opal", exact=True)).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    [cookie] = session_cookies(page)
    assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/")
    assert accounts(stack, admin, email) == [{"email": email, "displayName": "Opal", "approved": True}]

    send(page, "Hello from a new account")  # the session's tokens work for the backend
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    stored = stack.gql(CONVERSATION, {"id": conversation_id(page)}, stack.token(email))["conversation"]
    assert stored["messages"][0] == {
        "role": "USER",
        "content": "Hello from a new account",
        "status": "COMPLETE",
    }
    page.reload()  # the cookie finds the session again
    expect(page.locator(".bubble.user")).to_have_text("Hello from a new account")


def test_approval_signup_waits_for_an_admin_and_is_not_signed_in(
    page: Page, stack: Stack, admin: str
) -> None:
    email = unique_email("april")
    with stack.signup("approval"):
        fill_registration(page, email, "April")
        expect(page).to_have_url(re.compile(r"/login/?\?notice=[\w-]+$"))
        expect(page.locator("#notice")).to_have_text(AWAITING)
        expect(page.get_by_role("button", name="Log out")).to_have_count(0)
        assert session_cookies(page) == []
        assert accounts(stack, admin, email) == [{"email": email, "displayName": "April", "approved": False}]
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_have_text("this account is waiting for an admin's approval")
        page.goto("/")
        expect(page).to_have_url(re.compile(r"/login/?$"))


def test_closed_signup_shows_why_and_makes_no_account(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("clove")
    with stack.signup("closed"):
        fill_registration(page, email, "Clove")
        expect(page.get_by_role("alert")).to_have_text(CLOSED)
        expect(page).to_have_url(re.compile(r"/register/?\?error=[\w-]+$"))
        assert session_cookies(page) == []
        assert accounts(stack, admin, email) == []

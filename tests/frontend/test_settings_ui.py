"""The settings page in a real browser: change password, switch theme."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import LOGIN, PASSWORD, Stack, log_in, unique_email

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_change_password_and_theme(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("hugo")
    stack.register(email)
    log_in(page, email)
    page.get_by_role("link", name="Settings").click()

    page.get_by_role("radio", name="Dark").click()
    expect(page.locator("html")).to_have_class(re.compile(r"\bdark\b"))
    page.get_by_role("radio", name="Light").click()
    expect(page.locator("html")).to_have_class(re.compile(r"\blight\b"))

    page.get_by_label("Current password").fill("not my password")
    page.get_by_label("New password", exact=True).fill("a-new-password-123")
    page.get_by_label("Repeat new password").fill("a-new-password-123")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("current password is wrong")
    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a-new-password-123")
    page.get_by_label("Repeat new password").fill("a-new-password-124")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_role("alert")).to_have_text("The new passwords do not match.")
    stack.token(email, PASSWORD)  # both refusals left the password as it was (gql asserts no error)

    page.get_by_label("Current password").fill(PASSWORD)
    page.get_by_label("New password", exact=True).fill("a-new-password-123")
    page.get_by_label("Repeat new password").fill("a-new-password-123")
    page.get_by_role("button", name="Change password").click()
    expect(page.get_by_text("Password changed. Please log in with your new password.")).to_be_visible()
    log_in(page, email, "a-new-password-123")
    refused = stack.refusal(LOGIN, {"e": email, "p": PASSWORD})
    assert refused == "invalid e-mail or password"  # the old password stopped working

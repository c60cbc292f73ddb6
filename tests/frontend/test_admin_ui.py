"""The admin dashboard in a real browser: only admins get in; an admin promotes a user."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import SlowLlama, Stack, log_in, screenshot, unique_email

USERS = "query($s: String) { users(first: 5, search: $s) { edges { node { id role disabled } } } }"
MODEL = "query { model { architecture quantization parameters } }"
STATUS = "query { serverStatus { databaseOk llamaServers { url slotsTotal } } }"

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_non_admin_cannot_open_admin(page: Page, stack: Stack, admin: str) -> None:
    email = unique_email("bob")
    stack.register(email)
    log_in(page, email)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto("/admin")
    expect(page.get_by_text("The admin dashboard is for administrators only.")).to_be_visible()
    expect(page).not_to_have_url(re.compile(r"/admin$"))
    expect(page.get_by_role("heading", name="Admin dashboard")).to_have_count(0)


def test_admin_promotes_a_user(page: Page, stack: Stack, admin: str, slow_llama: SlowLlama) -> None:
    email = unique_email("carol")
    user_id = stack.register(email)["user"]["id"]
    page.set_viewport_size({"width": 1280, "height": 1100})
    log_in(page, admin)
    page.get_by_role("link", name="Admin").click()
    expect(page.get_by_role("heading", name="Admin dashboard")).to_be_visible()
    token = stack.token(admin)
    model = stack.gql(MODEL, token=token)["model"]
    card = page.locator("#model-card")
    expect(card).to_contain_text(f"Architecture{model['architecture']}")
    expect(card).to_contain_text(f"Quantization{model['quantization']}")
    assert 1e3 <= model["parameters"] < 1e6  # the tiny model: shown in thousands
    expect(card).to_contain_text(f"Parameters{model['parameters'] / 1e3:.2f}k")
    expect(card).to_contain_text("none recorded")  # the tiny model has no verify report
    expect(page.get_by_text("live", exact=True)).to_be_visible()
    status = stack.gql(STATUS, token=token)["serverStatus"]
    [llama] = status["llamaServers"]
    assert (status["databaseOk"], llama["url"]) == (True, slow_llama.url)
    expect(page.locator("#server-stats")).to_contain_text("Active streams: 0")
    expect(page.locator("#server-stats")).to_contain_text("Database: ok")
    expect(page.locator("#server-stats")).to_contain_text(re.compile(r"Backend CPU: \d+%"))
    expect(page.locator("#llama-servers")).to_contain_text(llama["url"])
    expect(page.locator("#llama-servers")).to_contain_text(f"0 busy / {llama['slotsTotal']}")
    expect(page.locator("#llama-servers")).to_contain_text("model-f32")  # the model it serves
    served = page.locator(
        "#served-models tbody tr"
    )  # without a registry: the one model, named after its file
    expect(served).to_have_count(1)
    expect(served).to_contain_text("model-f32")
    expect(served).to_contain_text("up")
    expect(page.locator("#users-table")).to_contain_text(email)
    expect(page.locator("#samples")).to_have_text(re.compile(r"^([4-9]|\d\d+) samples$"))  # charts have lines
    screenshot(page, "admin")

    page.get_by_label("Search users").fill(email)
    rows = page.locator("#users-table tbody tr")
    expect(rows).to_have_count(1)
    page.get_by_role("button", name=f"Promote {email}").click()
    expect(page.get_by_role("button", name=f"Demote {email}")).to_be_visible()
    expect(rows.first).to_contain_text("admin")
    users = stack.gql(USERS, {"s": email}, token=stack.token(admin))["users"]["edges"]
    assert [edge["node"] for edge in users] == [{"id": user_id, "role": "ADMIN", "disabled": False}]

    page.get_by_role("button", name=f"Disable {email}").click()
    expect(rows.first).to_contain_text("disabled")
    users = stack.gql(USERS, {"s": email}, token=stack.token(admin))["users"]["edges"]
    assert [edge["node"] for edge in users] == [{"id": user_id, "role": "ADMIN", "disabled": True}]
    page.get_by_role("button", name=f"Delete {email}").click()
    dialog = page.get_by_role("alertdialog")
    expect(dialog).to_contain_text(email)
    dialog.get_by_role("button", name="Delete user").click()
    expect(rows).to_have_count(0)
    assert stack.gql(USERS, {"s": email}, token=stack.token(admin))["users"]["edges"] == []

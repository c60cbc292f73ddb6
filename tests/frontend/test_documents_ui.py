"""The Documents page in a real browser: upload through the page, see the file and the site's collections,
ask with Documents search narrowed to a collection, delete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.frontend.conftest import Stack, log_in, screenshot, unique_email
from tests.frontend.test_chat_ui import send

pytestmark = [pytest.mark.browser, pytest.mark.slow]
DOCUMENTS = "query { documents { name collection kind passages } }"


def test_upload_list_search_and_delete_through_the_page(
    page: Page, stack: Stack, admin: str, tmp_path: Path
) -> None:
    site = tmp_path / "handbook"
    site.mkdir()
    (site / "welcome.md").write_text("# Welcome\n\nThe site handbook for every member.\n")
    env = {**os.environ, "CHAKOR_VAR_DIR": str(stack.backend.var_dir)}
    added = subprocess.run(
        [sys.executable, "-m", "chakor", "docs", "add", str(site), "--name", "handbook"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    email = unique_email("nora")
    stack.register(email)
    log_in(page, email)
    page.get_by_role("link", name="Documents").click()
    expect(page.get_by_role("heading", name="Documents", exact=True)).to_be_visible()
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    expect(page.get_by_label("Site collections")).to_contain_text("handbook")

    rover = tmp_path / "rover.md"
    rover.write_text("# Quokka rover\n\nThe Quokka rover climbs basalt ridges at night.\n")
    page.get_by_label("Collection", exact=True).fill("research")
    expect(page.locator("#target-note")).to_have_text("New files go to research")  # the state has it
    page.locator("#documents-upload input[type=file]").set_input_files(str(rover))
    table = page.get_by_label("Your documents")
    expect(table.get_by_role("row")).to_have_count(2)  # the header and the file
    expect(table).to_contain_text("rover.md")
    expect(table).to_contain_text("research")
    expect(page.get_by_role("status")).to_have_text("Added rover.md (1 passage).")
    stored = stack.gql(DOCUMENTS, token=stack.token(email))["documents"]
    assert stored == [{"name": "rover.md", "collection": "research", "kind": "markdown", "passages": 1}]

    fake = tmp_path / "photo.txt"
    fake.write_bytes(bytes(range(256)) * 8)
    page.locator("#documents-upload input[type=file]").set_input_files(str(fake))
    expect(page.get_by_role("alert")).to_have_text(
        "photo.txt: binary content, not a text, Markdown, HTML or PDF file"
    )
    expect(table.get_by_role("row")).to_have_count(2)  # the refusal stored nothing
    screenshot(page, "documents")

    page.get_by_role("link", name="Chat").click()
    page.get_by_role("radio", name="Documents", exact=True).click()
    page.get_by_label("Collection", exact=True).click()
    page.get_by_role("option", name="research").click()
    send(page, "What does the Quokka rover climb?")
    sources = page.get_by_label("Sources")
    expect(sources.locator(".source-card")).to_have_count(1)
    expect(sources.first).to_contain_text("Quokka rover")
    expect(sources.first).to_contain_text("research · rover.md")
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)

    page.get_by_role("link", name="Documents").click()
    page.get_by_role("button", name="Delete rover.md").click()
    expect(page.get_by_text("No documents yet.")).to_be_visible()
    assert stack.gql(DOCUMENTS, token=stack.token(email))["documents"] == []

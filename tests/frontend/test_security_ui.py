"""The page in a real browser: no live HTML from answers, messages or sources, a CSP that blocks inline
scripts, no token in any WebSocket frame or in the HTML, and a session that survives a reload."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, WebSocket, expect

from tests.frontend.conftest import SlowLlama, Stack, log_in, unique_email
from tests.frontend.test_chat_ui import send

pytestmark = [pytest.mark.browser, pytest.mark.slow]
JWT = re.compile(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.[\w-]{8,}")
HOSTILE = (
    'Look: <iframe srcdoc="<script>parent.window.__pwned = 1</script>"></iframe>\n\n'
    '<img src="x" onerror="window.__pwned = 2">\n\n'
    "<script>window.__pwned = 3</script>\n\n"
    "[click me](javascript:window.__pwned=4) and [ok](https://example.test/page)\n"
)
HOSTILE_QUESTION = '<img src=x onerror="window.__pwned = 5"> <script>window.__pwned = 6</script> otters'


def test_hostile_markdown_stays_text_and_csp_blocks_inline_scripts(
    page: Page, stack: Stack, admin: str, slow_llama: SlowLlama
) -> None:
    email = unique_email("mallory")
    stack.register(email)
    log_in(page, email)
    page.get_by_role("radio", name="Web", exact=True).click()  # sources carry the question in their titles
    slow_llama.reply = HOSTILE
    try:
        send(page, HOSTILE_QUESTION)
        answer = page.locator('.bubble.assistant[data-status="complete"]')
        expect(answer).to_have_count(1)
    finally:
        slow_llama.reply = None
    messages = page.locator("#messages")
    expect(messages.get_by_text("otters").first).to_be_visible()
    expect(page.locator(".bubble.user")).to_contain_text('<img src=x onerror="window.__pwned = 5">')
    expect(page.get_by_label("Sources").get_by_role("link")).to_have_count(5)
    expect(page.get_by_label("Sources").first).to_contain_text("<script>window.__pwned = 6</script>")
    for tag in ("iframe", "img", "script"):
        expect(messages.locator(tag)).to_have_count(0)
    link = answer.get_by_text("click me")
    expect(link).to_be_visible()
    assert not (link.get_attribute("href") or "").lower().startswith("javascript")
    link.click()
    expect(answer.get_by_role("link", name="ok")).to_have_attribute("href", "https://example.test/page")
    assert page.evaluate("window.__pwned") is None

    # The page's policy: scripts only from this origin (inline ones by hash); an injected one is refused.
    policy = httpx.get(f"{stack.app_url}/").headers["content-security-policy"]
    script_src = next(d for d in policy.split("; ") if d.startswith("script-src"))
    assert "'unsafe-inline'" not in script_src and "'sha256-" in script_src
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    injected = page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'window.__inline = 1';"
        " document.body.appendChild(s); return window.__inline ?? null; }"
    )
    assert injected is None


def test_no_token_reaches_the_page_and_the_session_survives_a_reload(
    page: Page, stack: Stack, admin: str
) -> None:
    frames: list[str] = []

    def capture(ws: WebSocket) -> None:
        ws.on("framereceived", lambda payload: frames.append(str(payload)))
        ws.on("framesent", lambda payload: frames.append(str(payload)))

    page.on("websocket", capture)
    email = unique_email("tina")
    stack.register(email)
    log_in(page, email)
    send(page, "Hello there")
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    html = [page.content()]
    page.reload()
    expect(page.locator('.bubble.assistant[data-status="complete"]')).to_have_count(1)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()  # still signed in
    html.append(page.content())
    other = page.context.new_page()  # a new tab finds the same session through the cookie
    other.on("websocket", capture)
    other.goto("/")
    expect(other.get_by_role("button", name="Log out")).to_be_visible()
    html.append(other.content())

    assert frames, "no WebSocket frames were captured"
    leaks = [text[:200] for text in frames + html if JWT.search(text)]
    assert not leaks, leaks
    [cookie] = [c for c in page.context.cookies() if c["name"] == "chakor_session"]
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
    assert cookie["value"] not in "".join(frames + html)
    assert "chakor_session" not in page.evaluate("document.cookie")

    other.get_by_role("button", name="Log out").click()
    expect(other).to_have_url(re.compile(r"/login$"))
    page.goto("/")  # the session ended for every tab
    expect(page).to_have_url(re.compile(r"/login$"))

"""The browser through deploy/nginx/chakor.conf: `location /` serves the app, and with REFLEX_API_URL set to
nginx's address the page's Reflex event WebSocket goes through nginx too."""

from __future__ import annotations

import re
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import WebSocket, expect, sync_playwright
from pymongo import MongoClient
from pymongo.collection import Collection

from common.settings import Settings
from tests.frontend.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.stack.conftest import FullStack, wait_for
from tests.support.graphql import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REGISTER = (
    "mutation($e: String!, $p: String!, $d: String) "
    "{ register(email: $e, password: $p, displayName: $d) { user { email } } }"
)


def test_the_app_through_nginx_logs_in_over_nginxs_event_websocket(full_stack: FullStack) -> None:
    wait_for(full_stack.all_healthy, 120, "every part healthy")
    email = f"nginx-{uuid.uuid4().hex[:8]}@example.test"
    variables = {"e": email, "p": PASSWORD, "d": "Through Nginx"}
    registered = httpx.post(
        f"{full_stack.url('BACKEND')}/graphql", json={"query": REGISTER, "variables": variables}
    )
    assert registered.json() == {"data": {"register": {"user": None}}}  # alike for every address
    nginx = urlsplit(full_stack.nginx_url).netloc
    sockets: list[WebSocket] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(base_url=full_stack.nginx_url)
            page.set_default_timeout(60_000)
            page.on("websocket", lambda ws: sockets.append(ws))
            page.goto("/login")
            expect(page).to_have_title("Log in · Chakor")
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="New chat")).to_be_visible(timeout=60_000)
            # The user's name comes from the app's state, sent over the event WebSocket.
            main = page.get_by_role("navigation", name="Main")
            expect(main.get_by_text("Through Nginx", exact=True)).to_be_visible(timeout=60_000)
            assert urlsplit(page.url).netloc == nginx
        finally:
            browser.close()
    events = [urlsplit(ws.url) for ws in sockets]
    assert events, "the page opened no WebSocket"
    assert {(e.scheme, e.netloc, e.path) for e in events} == {("ws", nginx, "/_event/")}
    access = full_stack.nginx_dir / "access.log"
    upgraded = re.compile(r'"GET /_event/\?[^" ]*transport=websocket HTTP/1.1" 101 ')
    wait_for(lambda: bool(upgraded.search(access.read_text())), 30, "nginx logs the closed WebSocket")
    assert '"POST /_chakor/login HTTP/1.1" 303 ' in access.read_text()


def test_the_login_limit_keys_on_the_browsers_address_through_nginx_and_the_app(
    full_stack: FullStack,
) -> None:
    """Browser (127.0.0.2, forging X-Forwarded-For) -> nginx -> app -> backend: each hop appends its peer,
    and the backend counts the failure against the browser's real address, not the forged one."""
    wait_for(full_stack.all_healthy, 120, "every part healthy")
    browser_address = "127.0.0.2"
    transport = httpx.HTTPTransport(local_address=browser_address)
    with httpx.Client(base_url=full_stack.nginx_url, transport=transport) as browser:
        response = browser.post(
            "/_chakor/login",
            data={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.test", "password": "wrong password"},
            headers={"Origin": full_stack.nginx_url, "X-Forwarded-For": "198.51.100.66"},
        )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/login?error=")
    client: MongoClient[dict[str, Any]]
    with MongoClient(f"mongodb://127.0.0.1:{full_stack.env['CHAKOR_DB_PORT']}") as client:
        failures: Collection[dict[str, Any]] = client[Settings.model_fields["db_name"].default][
            "login_failures"
        ]
        keys = {event["key"] for event in failures.find({"key": {"$regex": "^client:"}})}
    assert f"client:{browser_address}" in keys
    assert "client:198.51.100.66" not in keys

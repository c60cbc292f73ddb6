"""Browser-test fixtures: a backend on a paced llama-server, the Reflex app in prod mode, headless Chromium."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from chakor.services import frontend_process, settings_env
from common import REPO_ROOT
from common.process import ManagedProcess, free_port
from common.settings import Settings, load_settings
from tests.conftest import TAVILY_KEY, backend_settings, start_backend
from tests.frontend.slow_llama import SlowLlama
from tests.support.tiny_model import TinyModel

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN_DELAY_SECONDS = 0.03  # 256 tokens -> ~8 s per answer: long enough to watch it stream and stop it
ARTIFACTS = REPO_ROOT / "test-artifacts" / "frontend"
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
PASSWORD = "correct-horse-battery-staple"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
SETTLED = (  # waits for the page's finite animations (a dialog fading in) to end
    "() => Promise.all(document.getAnimations()"
    ".filter(a => a.effect && a.effect.getComputedTiming().endTime !== Infinity).map(a => a.finished))"
)
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"


@dataclass
class Stack:
    """The backend the app talks to, and the app itself."""

    backend: Settings
    app_url: str
    backend_process: ManagedProcess
    logs_dir: Path

    def _post(self, query: str, variables: dict[str, Any] | None, token: str | None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            self.backend.graphql_url, json={"query": query, "variables": variables or {}}, headers=headers
        ).json()

    def gql(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> Any:
        """Ask the backend directly (to check what the UI persisted)."""
        payload = self._post(query, variables, token)
        assert not payload.get("errors"), payload["errors"]
        return payload["data"]

    def refusal(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> str:
        """The message of the error the backend answers to an operation that must fail."""
        return str(self._post(query, variables, token)["errors"][0]["message"])

    def register(self, email: str, password: str = PASSWORD) -> dict[str, Any]:
        """A new account, made through the API and signed in (`register` answers alike for every
        address); its login's AuthPayload."""
        self.gql(
            "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { user { id } } }",
            {"e": email, "p": password},
        )
        query = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken user { id role } } }"
        return self.gql(query, {"e": email, "p": password})["login"]

    @contextmanager
    def signup(self, policy: str) -> Iterator[None]:
        """The backend restarted under CHAKOR_SIGNUP=`policy` for the block (same port and database),
        then restarted as it was; the app keeps talking to the same URL."""
        self.backend_process.stop()
        self.backend_process = start_backend(
            self.backend.model_copy(update={"signup": policy}), self.logs_dir
        )
        try:
            yield
        finally:
            self.backend_process.stop()
            self.backend_process = start_backend(self.backend, self.logs_dir)

    @staticmethod
    def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Poll the backend until `condition` holds (for state the page does not show)."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "condition not reached"
            time.sleep(0.2)

    def token(self, email: str, password: str = PASSWORD) -> str:
        """A fresh access token for an account."""
        return str(self.gql(LOGIN, {"e": email, "p": password})["login"]["accessToken"])


@pytest.fixture(scope="package")
def slow_llama(llama_server: str) -> Iterator[SlowLlama]:
    with SlowLlama(llama_server, TOKEN_DELAY_SECONDS) as proxy:
        yield proxy


@pytest.fixture(scope="package")
def stack(
    mongo_uri: str,
    slow_llama: SlowLlama,
    tiny_model: TinyModel,
    fake_tavily: str,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """A backend of its own (own database, paced model, fake Tavily) and the Reflex app in front of it."""
    settings = backend_settings(
        mongo_uri,
        slow_llama.url,
        tiny_model,
        db_name=f"chakor_frontend_test_{uuid.uuid4().hex[:8]}",  # a fresh database each time the package fixture is made
        var_dir=tmp_path_factory.mktemp("var"),  # its own (empty) document index
        tavily_api_key=TAVILY_KEY,
        tavily_base_url=fake_tavily,
    )
    app_settings = load_settings(**{**settings.model_dump(), "frontend_port": free_port()})
    app = frontend_process(app_settings, logs_dir)
    build = tmp_path_factory.mktemp(
        "reflex-build"
    )  # its own build dirs: a `reflex` run elsewhere cannot clobber them
    app.env = {
        **app.env,
        "REFLEX_WEB_WORKDIR": str(build / "web"),
        "REFLEX_STATES_WORKDIR": str(build / "states"),
    }
    running = Stack(settings, app_settings.frontend_url, start_backend(settings, logs_dir), logs_dir)
    app.start()
    try:
        app.wait_healthy(timeout=300)  # the first production build takes a while on a busy machine
        yield running
    finally:
        app.stop()
        running.backend_process.stop()


@pytest.fixture(scope="package")
def admin(stack: Stack) -> str:
    """E-mail of the admin, made by `chakor admin create-user --admin` (registering never makes one)."""
    from tests.backend.test_cli import backend_cli

    email = "admin@chakor.test"
    env = {**settings_env(stack.backend), "CHAKOR_NEW_USER_PASSWORD": PASSWORD}
    made = backend_cli("admin", "create-user", email, "--admin", env=env)
    assert made.returncode == 0, made.stderr
    return email


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    """A fresh browser context (no cookies, no storage); fails the test if the page loads anything external."""
    context = browser.new_context(base_url=stack.app_url, viewport={"width": 1280, "height": 800})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)
    external: list[str] = []
    page = context.new_page()
    page.on("request", lambda r: _note_external(r.url, external))
    try:
        yield page
    finally:
        context.close()
    assert not external, f"the page loaded external resources: {sorted(set(external))}"


def _note_external(url: str, external: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme in ("http", "https", "ws", "wss") and parts.hostname not in LOCAL_HOSTS:
        external.append(url)


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Log in through the form and land on a new chat."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="New chat")).to_be_visible()
    # The heading is in the static page; "Log out" shows once the app's state has loaded (keys work then).
    expect(page.get_by_role("button", name="Log out")).to_be_visible()


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@chakor.test"


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot as a test artifact; with CHAKOR_UPDATE_SCREENSHOTS=1 also as the README's current one."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.evaluate(SETTLED)
    page.screenshot(path=path, full_page=False)
    if os.environ.get("CHAKOR_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, SCREENSHOTS / f"{name}.png")
    return path

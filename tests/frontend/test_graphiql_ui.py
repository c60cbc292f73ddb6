"""The GraphQL playground in Chromium: served by the backend itself, queries and subscriptions work offline."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from common.settings import Settings
from tests.conftest import backend_settings, start_backend
from tests.frontend.conftest import PASSWORD
from tests.frontend.slow_llama import SlowLlama
from tests.support.tiny_model import TinyModel

REGISTER = "mutation($e: String!, $p: String!) { register(email: $e, password: $p) { accessToken } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
CHAT = (
    'subscription { chat(input: {content: "Hello there", maxTokens: 12}) '
    "{ __typename ... on ChatToken { text } ... on ChatDone { finishReason } } }"
)
# GraphiQL parses the editor's text a moment after each change (and picks HTTP or WebSocket from that).
PARSED = """(text) => {
  const editor = document.querySelector(".graphiql-query-editor .CodeMirror").CodeMirror;
  return editor.getValue() === text && editor.documentAST != null;
}"""
# Every text the result pane shows while an operation runs (each render, however fast the stream).
RECORD_RESULTS = """() => {
  window.resultTexts = [];
  const pane = document.querySelector(".result-window");
  new MutationObserver(() => window.resultTexts.push(pane.innerText)).observe(
    pane, { childList: true, subtree: true, characterData: true });
}"""


@pytest.fixture(scope="module")
def playground_backend(
    mongo_uri: str, slow_llama: SlowLlama, tiny_model: TinyModel, logs_dir: Path
) -> Iterator[Settings]:
    """A development backend (GraphiQL on) on the paced llama-server, so a streamed answer takes a while."""
    settings = backend_settings(mongo_uri, slow_llama.url, tiny_model, db_name="chakor_graphiql_test")
    process = start_backend(settings, logs_dir / "graphiql")
    try:
        yield settings
    finally:
        process.stop()


@pytest.fixture
def playground(browser: Browser, playground_backend: Settings) -> Iterator[Page]:
    """GraphiQL at /graphql; fails the test if the page asks anything of another host."""
    context = browser.new_context(
        base_url=playground_backend.backend_url, viewport={"width": 1280, "height": 800}
    )
    context.set_default_timeout(30_000)
    expect.set_options(timeout=30_000)
    page = context.new_page()
    own = urlsplit(playground_backend.backend_url).netloc
    elsewhere: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda r: elsewhere.append(r.url) if urlsplit(r.url).netloc != own else None)
    page.on("websocket", lambda ws: elsewhere.append(ws.url) if urlsplit(ws.url).netloc != own else None)
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)
    page.goto("/graphql")
    expect(page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible()
    try:
        yield page
    finally:
        context.close()
    assert not elsewhere, f"the playground asked other hosts: {elsewhere}"
    assert not blocked, f"the page's CSP blocked something: {blocked}"


def _type_into(page: Page, editor: str, text: str) -> None:
    """Replace an editor's text as a user would (click, select all, type)."""
    page.locator(f"{editor} .CodeMirror").click()
    page.keyboard.press("Control+A")
    page.keyboard.insert_text(text)


def _run_with_token(page: Page, settings: Settings, query: str) -> str:
    """A new account's token in the headers pane, `query` in the editor, then Run; the account's e-mail."""
    email = f"gq-{uuid.uuid4().hex[:8]}@chakor.test"
    httpx.post(settings.graphql_url, json={"query": REGISTER, "variables": {"e": email, "p": PASSWORD}})
    payload = httpx.post(
        settings.graphql_url, json={"query": LOGIN, "variables": {"e": email, "p": PASSWORD}}
    )
    token = payload.json()["data"]["login"]["accessToken"]
    page.get_by_role("button", name="Headers").click()
    _type_into(
        page, ".graphiql-editor-tool .graphiql-editor:not(.hidden)", f'{{"Authorization": "Bearer {token}"}}'
    )
    _type_into(page, ".graphiql-query-editor", query)
    page.wait_for_function(PARSED, arg=query)
    page.evaluate(RECORD_RESULTS)
    page.locator("button.graphiql-execute-button").click()
    return email


def test_me_query_with_the_authorization_header(playground: Page, playground_backend: Settings) -> None:
    email = _run_with_token(playground, playground_backend, "{ me { email } }")
    expect(playground.locator(".result-window")).to_contain_text(f'"email": "{email}"')


def test_chat_subscription_streams_tokens_into_the_result_pane(
    playground: Page, playground_backend: Settings
) -> None:
    _run_with_token(playground, playground_backend, CHAT)
    expect(playground.locator(".result-window")).to_contain_text('"__typename": "ChatDone"')
    shown = playground.evaluate("window.resultTexts")
    tokens = {text for text in shown if '"__typename": "ChatToken"' in text}
    assert len(tokens) >= 2, f"the pane showed no stream of tokens: {shown}"

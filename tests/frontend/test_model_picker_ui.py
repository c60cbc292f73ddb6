"""The chat header's model picker in a real browser: a backend serving two registered models, each on a real
llama-server; the picked model answers, the answer names it, and the conversation remembers it."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from chakor.models import add_model
from common.model_registry import load_registry, registry_path, save_registry
from common.settings import load_settings
from tests.conftest import start_backend, start_llama_server
from tests.frontend.conftest import SlowLlama, Stack, log_in, unique_email
from tests.support.tiny_model import TinyModel

pytestmark = [pytest.mark.browser, pytest.mark.slow]
CONVERSATION = "query($id: ID!) { conversation(id: $id) { model messages { role model } } }"


@contextmanager
def two_models(stack: Stack, tiny_model: TinyModel, slow_llama: SlowLlama, var_dir: Path) -> Iterator[None]:
    """The stack's backend restarted (same port and database) on a registry of two models: `tiny` (the
    default, on the paced llama-server the other tests use) and `tiny-base` (kind base, on its own
    llama-server); then restarted as it was."""
    settings = load_settings(var_dir=var_dir)
    # the base is a copy of the file, with no eval report beside it (other tests evaluate the shared one)
    base_gguf = Path(shutil.copy(tiny_model.gguf_path, var_dir / "tiny-base.gguf"))
    add_model(settings, "tiny", tiny_model.gguf_path, tiny_model.tokenizer_dir, description="the chat model")
    add_model(settings, "tiny-base", base_gguf, tiny_model.tokenizer_dir, kind="base")
    second = start_llama_server(base_gguf, stack.logs_dir)
    assert second.port is not None
    ports = {"tiny": int(slow_llama.url.rsplit(":", 1)[1]), "tiny-base": second.port}
    path = registry_path(var_dir)
    registry = load_registry(path)
    save_registry(
        path, replace(registry, models=tuple(replace(m, port=ports[m.name]) for m in registry.models))
    )
    stack.backend_process.stop()
    stack.backend_process = start_backend(
        stack.backend.model_copy(update={"model_registry": path}), stack.logs_dir
    )
    try:
        yield
    finally:
        stack.backend_process.stop()
        stack.backend_process = start_backend(stack.backend, stack.logs_dir)
        second.stop()


def test_the_picked_model_answers_and_the_conversation_remembers_it(
    page: Page, stack: Stack, tiny_model: TinyModel, slow_llama: SlowLlama, tmp_path: Path
) -> None:
    with two_models(stack, tiny_model, slow_llama, tmp_path):
        email = unique_email("picker")
        token = stack.register(email)["accessToken"]
        log_in(page, email)
        picker = page.get_by_role("combobox", name="Model")
        expect(picker).to_have_text(re.compile(r"^tiny \(chat, [0-9.]+K\)$"))
        picker.click()
        page.get_by_role("option", name=re.compile(r"^tiny-base \(base, ")).click()
        page.get_by_role("button", name="Model card").click()
        expect(page.locator("#model-card-popover")).to_have_text(
            re.compile(r"^base model, [0-9.]+K parameters, F32, context 2048; no eval report$")
        )
        page.keyboard.press("Escape")
        composer = page.get_by_label("Message")
        composer.fill("which model are you?")
        composer.press("Enter")
        expect(page).to_have_url(re.compile(r"/c/[0-9a-f]{24}$"))
        conversation = page.url.rsplit("/", 1)[1]
        expect(page.locator(".answer-model")).to_have_text("tiny-base")
        stored = stack.gql(CONVERSATION, {"id": conversation}, token)["conversation"]
        assert stored == {
            "model": "tiny-base",
            "messages": [{"role": "USER", "model": None}, {"role": "ASSISTANT", "model": "tiny-base"}],
        }

        page.reload()
        expect(picker).to_have_text(re.compile(r"^tiny-base \(base, "))
        picker.click()
        page.get_by_role("option", name=re.compile(r"^tiny \(chat, ")).click()  # picked for the open chat
        stack.wait_until(
            lambda: stack.gql(CONVERSATION, {"id": conversation}, token)["conversation"]["model"] == "tiny"
        )
        page.goto("/")
        expect(picker).to_have_text(re.compile(r"^tiny \(chat, "))  # a new chat starts on the default

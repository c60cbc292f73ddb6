"""The backend and `chakor eval` send llama-server the same token ids for the same question and results.

The backend runs for real behind a recording proxy in front of llama-server; the eval's side is
`evaluation.ask.ChatModel.prompt` on the same index hits. One question keeps all three results, a longer
one only part of them, so the fitting (`common.chat.fit_prompt`) is compared too, not only the template.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest

from backend.services.prompt import tokenizer_at
from common import REPO_ROOT
from common.chat import DOCUMENT_RESULTS, SearchMode, fit_prompt
from common.settings import Settings
from converter.llama_server import LlamaServer
from documents.index import DocumentIndex
from evaluation.ask import ChatModel, answer_budget
from tests.conftest import backend_settings, start_backend
from tests.support.capture_llama import CaptureClient, capture_proxy
from tests.support.graphql import Api
from tests.support.tiny_model import TinyModel

QUESTION = "What does the Zorblax engine run on?"
NOTES = {
    "engine.md": "# Zorblax engine\n\nThe Zorblax engine runs on quark fuel and hums at night.\n",
    "fuel.md": "# Quark fuel\n\nQuark fuel for the Zorblax engine is mined on the moon of Zorb.\n",
    "night.md": "# Engine nights\n\nEvery Zorblax engine is serviced at night with quark fuel filters.\n",
}


@dataclass
class Stack:
    settings: Settings
    capture: CaptureClient
    api: Api
    ctx_size: int


@pytest.fixture(scope="module")
def recorded_backend(
    mongo_uri: str,
    llama_server: str,
    tiny_model: TinyModel,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Settings, CaptureClient, int]]:
    """A backend whose llama-server calls go through the recording proxy, with three notes indexed."""
    notes = tmp_path_factory.mktemp("notes")
    for name, text in NOTES.items():
        (notes / name).write_text(text, encoding="utf-8")
    var_dir = tmp_path_factory.mktemp("var")
    added = subprocess.run(
        [sys.executable, "-m", "chakor", "docs", "add", str(notes)],
        cwd=REPO_ROOT,
        env={**os.environ, "CHAKOR_VAR_DIR": str(var_dir)},
        capture_output=True,
        text=True,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    slot = httpx.get(f"{llama_server}/props").json()["default_generation_settings"]["n_ctx"]
    with capture_proxy(llama_server, logs_dir) as capture:
        settings = backend_settings(
            mongo_uri, capture.url, tiny_model, db_name="chakor_same_prompt", var_dir=var_dir,
            chat_max_tokens=4,  # the tiny random model's answer is not the point
        )  # fmt: skip
        process = start_backend(settings, logs_dir / "same-prompt")
        try:
            yield settings, capture, int(slot)
        finally:
            process.stop()


@pytest.fixture(scope="module")
async def stack(recorded_backend: tuple[Settings, CaptureClient, int]) -> AsyncIterator[Stack]:
    settings, capture, ctx_size = recorded_backend
    async with httpx.AsyncClient(base_url=settings.backend_url, timeout=60) as http:
        yield Stack(
            settings, capture, Api(http, settings.graphql_url.replace("http://", "ws://", 1)), ctx_size
        )


def eval_model(stack: Stack) -> ChatModel:
    """The eval's asker with the backend's tokenizer, system prompt, context and answer budget."""
    assert stack.settings.tokenizer_path is not None
    return ChatModel(
        server=cast(LlamaServer, None),  # building a prompt asks no server
        tokenizer=tokenizer_at(stack.settings.tokenizer_path),
        system_prompt=stack.settings.chat_system_prompt,
        ctx_size=stack.ctx_size,
        max_tokens=stack.settings.chat_max_tokens,
    )


def question_keeping(stack: Stack, hits: list, kept: int) -> str:
    """QUESTION, lengthened with words until the prompt keeps exactly `kept` of the results."""
    model = eval_model(stack)
    budget = answer_budget(model.max_tokens, model.ctx_size)
    for words in range(0, 2000, 4):
        question = QUESTION + " engine" * words
        fitted = fit_prompt(
            model.tokenizer,
            model.system_prompt,
            [],
            question,
            model.ctx_size,
            budget,
            hits,
            SearchMode.DOCUMENTS,
        )
        if fitted.sources_kept == kept:
            return question
    raise AssertionError(f"no question length keeps {kept} results")


@pytest.mark.parametrize("kept", [DOCUMENT_RESULTS, 1])
async def test_backend_and_eval_send_the_same_ids(stack: Stack, kept: int) -> None:
    index = DocumentIndex(stack.settings.docs_index_dir)
    hits = index.search(QUESTION, DOCUMENT_RESULTS)
    assert len(hits) == DOCUMENT_RESULTS
    question = question_keeping(stack, hits, kept)
    assert index.search(question, DOCUMENT_RESULTS) == hits  # the longer question finds the same results
    stack.capture.new_records()

    user = await stack.api.register()
    events = await stack.api.chat(user, content=question, search="DOCUMENTS")
    assert events[-1]["__typename"] == "ChatDone", events[-1]
    sources = next(e for e in events if e["__typename"] == "ChatSources")["results"]
    assert [s["title"] for s in sources] == [h.title for h in hits]

    [sent] = stack.capture.new_records()
    model = eval_model(stack)
    expected = model.prompt(question, hits)
    assert expected is not None and sent.prompt == expected
    assert model.results_dropped == DOCUMENT_RESULTS - kept

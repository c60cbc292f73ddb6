"""Several models side by side: two registered GGUFs with different tokenizers, each on its own real
llama-server, behind one backend that reads the registry.

A recording proxy (tests/support/capture_llama.py) sits in front of each llama-server, so the tests check
the very token ids each server received against the chat contract's rendering with that model's tokenizer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from tokenizers import Tokenizer

from chakor.models import add_model
from common.chat import SYSTEM_PROMPT, encode_chat, load_tokenizer
from common.model_registry import load_registry, registry_path, save_registry
from common.process import ManagedProcess
from common.settings import Settings, load_settings
from tests.conftest import backend_settings, start_backend, start_llama_server
from tests.support.capture_llama import CaptureClient, capture_proxy
from tests.support.graphql import Api, Session, answer_text
from tests.support.tiny_model import TinyModel, model_config, random_model, tiny_corpus

MESSAGES = "{ id role content model }"
CONVERSATION = f"query($id: ID!) {{ conversation(id: $id) {{ model messages {MESSAGES} }} }}"


@dataclass
class Served:
    """One registered model as the tests see it: its tokenizer, llama-server and the proxy in front."""

    name: str
    tokenizer: Tokenizer
    llama: ManagedProcess
    capture: CaptureClient


@dataclass
class Stack:
    settings: Settings
    models: dict[str, Served]
    logs_dir: Path
    backend: ManagedProcess
    api: Api

    def restart_backend(self) -> None:
        self.backend.stop()
        self.backend = start_backend(self.settings, self.logs_dir)


@pytest.fixture(scope="module")
def second_model(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(tokenizer folder, GGUF) of a model whose vocabulary differs from the tiny model's: a 384-token BPE
    trained on a few KB of other text, and a random-init model of that vocabulary through our converter."""
    from trainer.tokenizer.train import train_tokenizer

    root = tmp_path_factory.mktemp("second-model")
    texts = tiny_corpus()[-40:]
    tokenizer_dir = train_tokenizer(texts, 384, root / "tokenizer")
    cfg = model_config(tokenizer_dir, dim=64, n_layers=2, n_heads=4, n_kv_heads=2)
    return tokenizer_dir, random_model(cfg, tokenizer_dir, root)[1]


@pytest.fixture(scope="module")
def served(
    tiny_model: TinyModel, second_model: tuple[Path, Path], logs_dir: Path
) -> Iterator[dict[str, tuple[Path, Path, CaptureClient, ManagedProcess]]]:
    """Both models on real llama-servers, each behind a recording proxy: name -> (GGUF, tokenizer, proxy, server)."""
    files = {
        "alpha": (tiny_model.gguf_path, tiny_model.tokenizer_dir),
        "beta": (second_model[1], second_model[0]),
    }
    with ExitStack() as stack:
        found = {}
        for name, (gguf, tokenizer) in files.items():
            llama = start_llama_server(gguf, logs_dir)
            stack.callback(llama.stop)
            assert llama.health_url is not None
            capture = stack.enter_context(capture_proxy(llama.health_url.removesuffix("/health"), logs_dir))
            found[name] = (gguf, tokenizer, capture, llama)
        yield found


@pytest.fixture(scope="module")
async def multi(
    served: dict[str, tuple[Path, Path, CaptureClient, ManagedProcess]],
    mongo_uri: str,
    tiny_model: TinyModel,
    logs_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    """A backend serving the registry of both models (registered with `chakor models add`'s checks)."""
    var_dir = tmp_path_factory.mktemp("multi-var")
    settings = load_settings(var_dir=var_dir)
    add_model(settings, "alpha", served["alpha"][0], served["alpha"][1], description="the tiny one")
    add_model(settings, "beta", served["beta"][0], served["beta"][1], kind="base")
    path = registry_path(var_dir)
    registry = load_registry(path)
    ports = {name: int(entry[2].url.rsplit(":", 1)[1]) for name, entry in served.items()}
    save_registry(
        path, replace(registry, models=tuple(replace(m, port=ports[m.name]) for m in registry.models))
    )
    any_llama = served["alpha"][2].url
    backend_config = backend_settings(
        mongo_uri, any_llama, tiny_model, db_name="chakor_multi_model", model_registry=path, var_dir=var_dir
    )
    backend = start_backend(backend_config, logs_dir)
    models = {
        name: Served(name, load_tokenizer(tokenizer), llama, capture)
        for name, (_, tokenizer, capture, llama) in served.items()
    }
    async with httpx.AsyncClient(base_url=backend_config.backend_url, timeout=60) as http:
        stack = Stack(
            backend_config,
            models,
            logs_dir,
            backend,
            Api(http, backend_config.graphql_url.replace("http", "ws", 1)),
        )
        try:
            yield stack
        finally:
            stack.backend.stop()


def expected_ids(model: Served, turns: list[dict[str, str]], text: str) -> list[int]:
    """The prompt the chat contract renders with this model's tokenizer: system, history, the new turn."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *turns, {"role": "user", "content": text}]
    return encode_chat(model.tokenizer, messages, add_generation_prompt=True).ids


async def history(api: Api, user: Session, conversation_id: str) -> tuple[str, list[dict[str, str]]]:
    """The conversation's model and its active branch as (model, [{role, content}])."""
    found = (await api.data(CONVERSATION, {"id": conversation_id}, user.access_token))["conversation"]
    return found["model"], [{"role": m["role"].lower(), "content": m["content"]} for m in found["messages"]]


async def answered(api: Api, user: Session, **chat_input: Any) -> list[dict]:
    events = await api.chat(user, maxTokens=4, temperature=0, **chat_input)
    assert events[-1]["__typename"] == "ChatDone", events
    return events


async def test_both_models_answer_each_with_its_own_tokenizer(multi: Stack) -> None:
    api, alpha, beta = multi.api, multi.models["alpha"], multi.models["beta"]
    assert alpha.tokenizer.get_vocab_size() != beta.tokenizer.get_vocab_size()
    user = await api.register()
    listed = await api.data(
        "{ models { id kind description isDefault up contextLength } }", token=user.access_token
    )
    assert listed["models"] == [
        {
            "id": "alpha",
            "kind": "chat",
            "description": "the tiny one",
            "isDefault": True,
            "up": True,
            "contextLength": 2048,
        },
        {
            "id": "beta",
            "kind": "base",
            "description": "",
            "isDefault": False,
            "up": True,
            "contextLength": 2048,
        },
    ]
    paths = await api.data("{ models { path } }", token=user.access_token)  # no server paths for non-admins
    assert paths == {"models": [{"path": "model-f32.gguf"}, {"path": "model-f32.gguf"}]}
    for model in (alpha, beta):
        model.capture.new_records()
        text = f"hello from the {model.name} test"
        events = await answered(api, user, content=text, model=model.name)
        [record] = model.capture.new_records()
        assert record.prompt == expected_ids(model, [], text)
        other = beta if model is alpha else alpha
        assert other.capture.new_records() == []
        name, turns = await history(api, user, events[0]["conversationId"])
        assert name == model.name
        assert turns[1]["content"] == answer_text(events)
        found = await api.data(CONVERSATION, {"id": events[0]["conversationId"]}, user.access_token)
        assert [m["model"] for m in found["conversation"]["messages"]] == [None, model.name]
    assert await api.data("{ usage(days: 1) { answersByModel } }", token=user.access_token) == {
        "usage": [{"answersByModel": {"alpha": 1, "beta": 1}}]
    }


async def test_a_conversation_keeps_its_model_across_turns_and_a_restart(multi: Stack) -> None:
    api, beta = multi.api, multi.models["beta"]
    user = await api.register()
    first = await answered(api, user, content="remember me", model="beta")
    conversation = first[0]["conversationId"]
    beta.capture.new_records()
    await answered(api, user, content="second turn", conversationId=conversation)
    assert len(beta.capture.new_records()) == 1
    multi.restart_backend()
    user = await api.login(user.email)
    _, turns = await history(api, user, conversation)
    await answered(api, user, content="after the restart", conversationId=conversation)
    [record] = beta.capture.new_records()
    assert record.prompt == expected_ids(beta, turns, "after the restart")
    assert multi.models["alpha"].capture.new_records() == []
    assert (await history(api, user, conversation))[0] == "beta"


async def test_switching_model_re_renders_the_history_with_the_new_tokenizer(multi: Stack) -> None:
    api, alpha, beta = multi.api, multi.models["alpha"], multi.models["beta"]
    user = await api.register()
    first = await answered(api, user, content="start on alpha")
    conversation = first[0]["conversationId"]
    assert (await history(api, user, conversation))[0] == "alpha"  # the default
    _, turns = await history(api, user, conversation)
    beta.capture.new_records()
    await answered(api, user, content="now beta", conversationId=conversation, model="beta")
    [record] = beta.capture.new_records()
    assert record.prompt == expected_ids(beta, turns, "now beta")
    assert record.prompt != expected_ids(alpha, turns, "now beta")
    assert (await history(api, user, conversation))[0] == "beta"

    update = "mutation($id: ID!, $m: String) { updateConversation(id: $id, input: {model: $m}) { model } }"
    changed = await api.data(update, {"id": conversation, "m": "alpha"}, user.access_token)
    assert changed == {"updateConversation": {"model": "alpha"}}
    alpha.capture.new_records()
    _, turns = await history(api, user, conversation)
    await answered(api, user, content="back to alpha", conversationId=conversation)
    [record] = alpha.capture.new_records()
    assert record.prompt == expected_ids(alpha, turns, "back to alpha")
    error = await api.error(update, {"id": conversation, "m": "gamma"}, user.access_token)
    assert error["extensions"]["code"] == "UNKNOWN_MODEL"
    assert error["message"] == "unknown model 'gamma'; this server serves: alpha, beta"


async def test_the_openai_api_lists_and_routes_the_registered_models(multi: Stack) -> None:
    api, beta = multi.api, multi.models["beta"]
    user = await api.register()
    headers = {"Authorization": user.authorization}
    listed = (await api.http.get("/v1/models", headers=headers)).json()
    assert [m["id"] for m in listed["data"]] == ["alpha", "beta"]
    beta.capture.new_records()
    text = "hello over /v1"
    body = {
        "model": "beta",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 3,
        "temperature": 0,
    }
    answer = await api.http.post("/v1/chat/completions", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "beta"
    [record] = beta.capture.new_records()
    assert record.prompt == expected_ids(beta, [], text)
    assert multi.models["alpha"].capture.new_records() == []
    unknown = await api.http.post("/v1/chat/completions", json={**body, "model": "gamma"}, headers=headers)
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "model_not_found")


async def test_an_unknown_or_down_model_is_a_clear_error_while_the_other_answers(multi: Stack) -> None:
    api = multi.api
    user = await api.register()
    unknown = await api.chat(user, content="hi", model="gamma", maxTokens=2)
    assert unknown == [
        {
            "__typename": "ChatError",
            "code": "UNKNOWN_MODEL",
            "message": "unknown model 'gamma'; this server serves: alpha, beta",
        }
    ]
    multi.models["beta"].llama.kill()
    first = await api.chat(user, content="hi", model="beta", maxTokens=2)
    # the pool learns of the death from this request (it failed over to nothing) or from a probe
    assert first[-1]["__typename"] == "ChatError" and "'beta'" in first[-1]["message"], first
    down = await api.chat(user, content="hi again", model="beta", maxTokens=2)
    assert down == [
        {
            "__typename": "ChatError",
            "code": "MODEL_UNAVAILABLE",
            "message": "model 'beta' is down: none of its llama-servers answers; try another",
        }
    ]
    assert (await api.chat(user, content="alpha still here", model="alpha", maxTokens=2))[-1][
        "__typename"
    ] == "ChatDone"
    listed = await api.data("{ models { id up } }", token=user.access_token)
    assert listed["models"] == [{"id": "alpha", "up": True}, {"id": "beta", "up": False}]

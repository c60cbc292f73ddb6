"""The OpenAI-compatible API (/v1) through the official `openai` SDK, with `chk_` keys, on a backend and
a llama-server of their own (so llama-server's counters move only for this module's calls).

The SDK's retries are off (`max_retries=0`): a refusal must be seen as the first answer, not retried.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import openai
import pytest
from bson import ObjectId
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessageParam
from pymongo import AsyncMongoClient

from backend.services.api_keys import KEY_REVOKED
from backend.services.usage import today
from common.process import ManagedProcess
from tests.backend.conftest import PrivateStack
from tests.backend.test_admission import Stack
from tests.conftest import backend_settings, start_backend, start_llama_server
from tests.support.graphql import Api, Session, answer_text
from tests.support.nginx import running_nginx
from tests.support.tiny_model import TinyModel

QUOTA = 1_000_000  # a user is put next to it by writing their usage row
STREAMS = 2
CREATE_KEY = 'mutation { createApiKey(name: "sdk") { secret key { id } } }'
REVOKE = "mutation($id: ID!) { revokeApiKey(id: $id) }"
HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def llama(tiny_model: TinyModel, logs_dir: Path) -> Iterator[ManagedProcess]:
    process = start_llama_server(tiny_model.gguf_path, logs_dir / "openai")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
async def stack(
    mongo_uri: str, llama: ManagedProcess, tiny_model: TinyModel, logs_dir: Path
) -> AsyncIterator[Stack]:
    assert llama.health_url is not None
    llama_url = llama.health_url.removesuffix("/health")
    settings = backend_settings(
        mongo_uri,
        llama_url,
        tiny_model,
        db_name=f"chakor_openai_{uuid.uuid4().hex[:8]}",
        daily_token_quota=QUOTA,
        max_concurrent_streams_per_user=STREAMS,
    )
    process = start_backend(settings, logs_dir / "openai")
    database: AsyncMongoClient = AsyncMongoClient(settings.database_uri, tz_aware=True)
    try:
        async with httpx.AsyncClient(base_url=settings.backend_url, timeout=120) as http:
            api = Api(http, settings.graphql_url.replace("http://", "ws://", 1))
            yield Stack(settings, llama_url, llama.log_path, api, database[settings.db_name])
    finally:
        await database.close()
        process.stop()


async def key_for(stack: Stack, user: Session) -> tuple[str, str]:
    """A new API key of `user`'s: its secret and id."""
    created = (await stack.api.data(CREATE_KEY, None, user.access_token))["createApiKey"]
    return created["secret"], created["key"]["id"]


def sdk(stack: Stack, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{stack.settings.backend_url}/v1", api_key=key, max_retries=0)


async def served_model(client: openai.AsyncOpenAI) -> str:
    return (await client.models.list()).data[0].id


async def test_models_and_completions_streamed_and_not_match_graphql(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    client = sdk(stack, secret)
    models = (await client.models.list()).data
    model = stack.settings.model_path.stem if stack.settings.model_path else ""
    assert [(m.id, m.object, m.owned_by) for m in models] == [(model, "model", "chakor")]
    assert models[0].created > 0 and (await client.models.retrieve(model)).id == model
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("gpt-4o")
    assert missing.value.code == "model_not_found"

    whole = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=12, temperature=0)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length") and choice.message.content
    usage = whole.usage
    assert usage is not None and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    row = await stack.usage(user)
    assert (row["tokens_in"], row["tokens_out"], row["answers"], row["reserved"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        1,
        0,
    )

    chunks = [
        c
        async for c in await client.chat.completions.create(
            model=model,
            messages=HELLO,
            max_completion_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    ]
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[0].usage is None
    deltas = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert deltas == choice.message.content, "streamed and whole answers differ at temperature 0"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage == usage
    assert len({c.id for c in chunks}) == 1 and chunks[0].id != whole.id

    graphql = await stack.api.chat(user, content="hello there", maxTokens=12, temperature=0)
    assert answer_text(graphql) == choice.message.content, "the GraphQL chat answers the same prompt"
    assert graphql[-1]["tokensPredicted"] == usage.completion_tokens
    assert (await stack.usage(user))["answers"] == 3


async def test_a_raw_stream_is_sse_chunks_then_done(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    model = await served_model(sdk(stack, secret))
    body = {"model": model, "messages": HELLO, "max_tokens": 4, "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    async with stack.api.http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line async for line in response.aiter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    assert '"finish_reason":null' in lines[1] and '"usage"' not in "".join(lines)


async def test_bad_requests_are_400s_naming_the_parameter(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    client = sdk(stack, secret)
    model = await served_model(client)
    before = stack.work()

    with pytest.raises(openai.BadRequestError) as several:
        await client.chat.completions.create(model=model, messages=HELLO, n=2)
    assert (several.value.status_code, several.value.param, several.value.type) == (
        400,
        "n",
        "invalid_request_error",
    )
    image: list[ChatCompletionMessageParam] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    with pytest.raises(openai.BadRequestError) as pictured:
        await client.chat.completions.create(model=model, messages=image)
    assert pictured.value.param == "messages[0].content[1].type"
    assert "only text content parts are supported" in pictured.value.message
    with pytest.raises(openai.BadRequestError) as too_long:
        await client.chat.completions.create(model=model, messages=HELLO, max_tokens=100_000)
    assert too_long.value.param == "max_tokens"
    with pytest.raises(openai.NotFoundError) as unknown:
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")

    history: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello " * 3000}]
    with pytest.raises(openai.BadRequestError) as overflow:
        await client.chat.completions.create(model=model, messages=history)
    assert (overflow.value.code, overflow.value.param) == ("context_length_exceeded", "messages")
    assert stack.work() == before, "a refused request reached llama-server"
    assert (await stack.usage(user)).get("reserved", 0) == 0


async def test_wrong_and_revoked_keys_are_401s_in_openais_shape(stack: Stack) -> None:
    user = await stack.user()
    secret, key_id = await key_for(stack, user)
    model = await served_model(sdk(stack, secret))
    for key in ("chk_not-a-key", secret + "x"):
        with pytest.raises(openai.AuthenticationError) as wrong:
            await sdk(stack, key).chat.completions.create(model=model, messages=HELLO)
        assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
        assert wrong.value.body == {
            "message": "invalid or revoked API key",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    assert (await stack.api.data(REVOKE, {"id": key_id}, user.access_token))["revokeApiKey"] is True
    with pytest.raises(openai.AuthenticationError):
        await sdk(stack, secret).models.list()
    jwt = await sdk(stack, user.access_token).chat.completions.create(
        model=model, messages=HELLO, max_tokens=2
    )
    assert jwt.usage is not None and jwt.usage.completion_tokens <= 2


async def test_quota_and_stream_limit_refusals_are_429s_that_never_reach_llama_server(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    client = sdk(stack, secret)
    model = await served_model(client)
    before = stack.work()

    await stack.set_used(user, QUOTA)
    with pytest.raises(openai.RateLimitError) as spent:
        await client.chat.completions.create(model=model, messages=HELLO, stream=True)
    assert (spent.value.status_code, spent.value.code) == (429, "insufficient_quota")
    graphql = await stack.api.chat(user, content="hello", maxTokens=2)
    assert graphql[-1]["code"] == "QUOTA_EXCEEDED", "the quota is the same over GraphQL and /v1"
    await stack.set_used(user, 0)

    owner = ObjectId(user.id)
    expires = datetime.now(UTC) + timedelta(hours=1)
    held = [
        {"_id": f"{user.id}:{slot}", "user_id": owner, "backend_id": "elsewhere", "expires_at": expires}
        for slot in range(STREAMS)
    ]
    await stack.db.stream_leases.insert_many(held)
    with pytest.raises(openai.RateLimitError) as busy:
        await client.chat.completions.create(model=model, messages=HELLO)
    assert busy.value.code == "rate_limit_exceeded" and "too many answers in progress" in busy.value.message
    await stack.db.stream_leases.delete_many({"user_id": owner})

    assert stack.work() == before, "a refused call reached llama-server"
    assert (await stack.usage(user))["reserved"] == 0
    assert (await stack.usage(user)).get("answers", 0) == 0
    done = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=3)
    assert done.usage is not None and (await stack.usage(user))["answers"] == 1
    assert await stack.db.stream_leases.count_documents({"user_id": owner}) == 0


async def test_a_client_that_leaves_mid_stream_frees_its_slot_and_is_counted(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    model = await served_model(sdk(stack, secret))
    body = {"model": model, "messages": HELLO, "max_tokens": 200, "stream": True}
    headers = {"Authorization": f"Bearer {secret}"}
    async with stack.api.http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        events = 0
        async for line in response.aiter_lines():
            events += line.startswith("data: ")
            if events == 2:
                break  # the role chunk and the first text: llama-server is answering; leave
    owner = ObjectId(user.id)
    for _ in range(100):  # the backend notices at its next write: well within 10 s
        row = await stack.usage(user)
        if row.get("answers") == 1 and not await stack.db.stream_leases.count_documents({"user_id": owner}):
            break
        await asyncio.sleep(0.1)
    assert await stack.db.stream_leases.count_documents({"user_id": owner}) == 0
    row = await stack.usage(user)
    assert (row["answers"], row["reserved"]) == (1, 0) and row["tokens_in"] > 0


async def test_the_sdk_streams_through_nginx(stack: Stack, tmp_path: Path) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    with running_nginx(stack.settings.backend_port, tmp_path) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=secret, max_retries=0)
        model = await served_model(client)
        stream = await client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=8, temperature=0, stream=True
        )
        chunks = [c async for c in stream]
        whole = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=8, temperature=0)
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="chk_nope", max_retries=0).models.list()
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content


async def test_revoking_the_key_ends_its_running_stream_with_the_reason(private_stack: PrivateStack) -> None:
    """On the slow model (an answer streams for seconds), so the key is revoked while tokens still come."""
    api = private_stack.api
    user = await api.register()
    created = (await api.data(CREATE_KEY, None, user.access_token))["createApiKey"]
    client = openai.AsyncOpenAI(
        base_url=f"{private_stack.settings.backend_url}/v1", api_key=created["secret"], max_retries=0
    )
    model = await served_model(client)
    stream = await client.chat.completions.create(model=model, messages=HELLO, max_tokens=200, stream=True)
    texts: list[str] = []
    with pytest.raises(openai.APIError) as ended:
        async for chunk in stream:
            texts.append(chunk.choices[0].delta.content or "")
            if len(texts) == 2:
                await api.data(REVOKE, {"id": created["key"]["id"]}, user.access_token)
    assert ended.value.message == KEY_REVOKED and len(texts) < 200
    assert (await api.data("{ usage(days: 1) { answers } }", None, user.access_token))["usage"][0][
        "answers"
    ] == 1


async def test_the_sync_sdk_answers_streamed_and_not(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)

    def calls() -> tuple[str, ChatCompletion, list[ChatCompletionChunk]]:
        client = openai.OpenAI(base_url=f"{stack.settings.backend_url}/v1", api_key=secret, max_retries=0)
        with client:
            model = client.models.list().data[0].id
            whole = client.chat.completions.create(model=model, messages=HELLO, max_tokens=10, temperature=0)
            stream = client.chat.completions.create(
                model=model,
                messages=HELLO,
                max_tokens=10,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
            with stream:
                return model, whole, list(stream)

    model, whole, chunks = await asyncio.to_thread(calls)  # the sync client blocks: off the loop
    assert model == (stack.settings.model_path.stem if stack.settings.model_path else "")
    assert whole.object == "chat.completion" and whole.choices[0].message.content
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content, "streamed and whole answers differ at temperature 0"
    assert chunks[-1].usage == whole.usage and whole.usage is not None
    row = await stack.usage(user)
    assert (row["answers"], row["reserved"], row["tokens_out"]) == (2, 0, 2 * whole.usage.completion_tokens)


async def test_a_disabled_account_is_a_403_on_v1_and_unauthenticated_on_graphql(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    model = await served_model(sdk(stack, secret))
    before = stack.work()
    await stack.db.users.update_one({"_id": ObjectId(user.id)}, {"$set": {"disabled": True}})
    for credential in (secret, user.access_token):
        client = sdk(stack, credential)
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await client.chat.completions.create(model=model, messages=HELLO, max_tokens=2, stream=True)
        assert refused.value.status_code == 403
        assert refused.value.body == {
            "message": "account disabled",
            "type": "permission_denied",
            "param": None,
            "code": "account_disabled",
        }
        with pytest.raises(openai.PermissionDeniedError):
            await client.models.list()
    graphql = await stack.post("{ me { id } }", {}, "10.9.9.9", user.access_token)
    assert [(e["message"], e["extensions"]["code"]) for e in graphql["errors"]] == [
        ("account disabled", "UNAUTHENTICATED")
    ], "GraphQL reports a disabled account as before"
    assert stack.work() == before, "a disabled account's call reached llama-server"
    assert (await stack.usage(user)).get("reserved", 0) == 0


def _outcome(error: openai.APIStatusError | None) -> str:
    return "done" if error is None else f"{error.status_code} {error.code}"


async def _v1_call(client: openai.AsyncOpenAI, model: str, max_tokens: int) -> str:
    """One streamed /v1 answer read to its end: `done`, or the refusal's status and code."""
    try:
        stream = await client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=max_tokens, temperature=0, stream=True
        )
        async for _ in stream:
            pass
    except openai.APIStatusError as exc:
        return _outcome(exc)
    return _outcome(None)


async def _graphql_call(api: Api, user: Session, max_tokens: int) -> str:
    """One GraphQL chat: `done`, or the refusal's code."""
    end = (await api.chat(user, content="hello there", maxTokens=max_tokens, temperature=0))[-1]
    return "done" if end["__typename"] == "ChatDone" else end["code"]


async def test_v1_and_graphql_calls_started_together_share_the_daily_quota(stack: Stack) -> None:
    user = await stack.user()
    secret, _ = await key_for(stack, user)
    client = sdk(stack, secret)
    model = await served_model(client)
    await stack.set_used(user, QUOTA - 1)  # room for one more call of either API, never two
    ends = await asyncio.gather(_v1_call(client, model, 4), _graphql_call(stack.api, user, 4))
    assert sorted(ends) in (["QUOTA_EXCEEDED", "done"], ["429 insufficient_quota", "done"])
    row = await stack.usage(user)
    assert (row["answers"], row["reserved"]) == (1, 0)


async def test_v1_and_graphql_streams_started_together_share_the_stream_limit(
    private_stack: PrivateStack,
) -> None:
    """On the slow model (one slot, an answer takes seconds), so every call is admitted or refused
    while the admitted ones still stream: exactly the per-user limit runs, over either API."""
    api, settings = private_stack.api, private_stack.settings
    limit = settings.max_concurrent_streams_per_user
    user = await api.register()
    created = (await api.data(CREATE_KEY, None, user.access_token))["createApiKey"]
    client = openai.AsyncOpenAI(
        base_url=f"{settings.backend_url}/v1", api_key=created["secret"], max_retries=0
    )
    model = await served_model(client)
    calls = limit + 1  # per API: more than the limit on each side
    ends = await asyncio.gather(
        *(_v1_call(client, model, 24) for _ in range(calls)),
        *(_graphql_call(api, user, 24) for _ in range(calls)),
    )
    v1, graphql = ends[:calls], ends[calls:]
    assert ends.count("done") == limit, ends
    assert set(v1) <= {"done", "429 rate_limit_exceeded"} and set(graphql) <= {"done", "RATE_LIMITED"}, ends
    database: AsyncMongoClient = AsyncMongoClient(settings.database_uri, tz_aware=True)
    try:
        db = database[settings.db_name]
        assert await db.stream_leases.count_documents({"user_id": ObjectId(user.id)}) == 0
        row = await db.usage_days.find_one({"user_id": ObjectId(user.id), "day": today()})
        assert row is not None and (row["answers"], row["reserved"]) == (limit, 0)
    finally:
        await database.close()

"""The OpenAI-compatible API at /v1: `GET /v1/models`, `GET /v1/models/{id}`, `POST /v1/chat/completions`.

Follows OpenAI's published API reference for the fields it supports (text messages, `n` = 1, the
sampling options below), so the official SDKs, lm-eval's `local-chat-completions` and other OpenAI
clients work with a `chk_` API key (or a user's access token) as the Bearer token. The calls are
stateless and go through `backend.services.completions` (the GraphQL chat's admission, prompt,
relay and usage). Every error is OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
with OpenAI's HTTP status.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Annotated, Any

import orjson
import pydantic
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from backend.core.errors import AuthError, ForbiddenError, NotFoundError, RateLimitedError, UserError
from backend.services import completions
from backend.services.auth import AccountDisabled, Caller, caller
from backend.services.container import AppServices
from backend.services.llama import LlamaUnavailable
from backend.services.prompt import ContextOverflow
from backend.services.usage import QuotaExceeded

OWNER = "chakor"
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class ApiError(Exception):
    """An error as OpenAI reports it: HTTP `status` and the `error` object's fields."""

    def __init__(
        self, status: int, message: str, type_: str, code: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param

    @property
    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def api_error(exc: UserError | LlamaUnavailable) -> ApiError:
    """The OpenAI error for one of the services' errors."""
    if isinstance(exc, LlamaUnavailable):
        return ApiError(
            503, "the model server is unavailable; try again shortly", "server_error", "unavailable"
        )
    if isinstance(exc, AccountDisabled):
        return ApiError(403, exc.message, "permission_denied", "account_disabled")
    if isinstance(exc, AuthError):
        return ApiError(401, exc.message, "invalid_request_error", "invalid_api_key")
    if isinstance(exc, ForbiddenError):
        return ApiError(403, exc.message, "invalid_request_error", "forbidden")
    if isinstance(exc, QuotaExceeded):
        return ApiError(429, exc.message, "insufficient_quota", "insufficient_quota")
    if isinstance(exc, RateLimitedError):
        return ApiError(429, exc.message, "rate_limit_exceeded", "rate_limit_exceeded")
    if isinstance(exc, ContextOverflow):
        return ApiError(400, exc.message, "invalid_request_error", "context_length_exceeded", "messages")
    if isinstance(exc, NotFoundError):
        return ApiError(404, exc.message, "invalid_request_error", "not_found")
    if exc.code == "NOT_CONFIGURED":
        return ApiError(503, exc.message, "server_error", "not_configured")
    param = exc.param if isinstance(exc, completions.InvalidParameter) else None
    return ApiError(400, exc.message, "invalid_request_error", "invalid_value" if param else None, param)


class TextPart(BaseModel):
    """A content part; only `text` parts are taken (checked in `_text`, to name the part refused)."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The fields of OpenAI's chat completion request that Chakor honours; others are ignored, as
    llama-server and most compatible servers do, so clients that send their defaults still work."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage]
    max_tokens: Annotated[int, Field(strict=True)] | None = None
    max_completion_tokens: Annotated[int, Field(strict=True)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None


def _text(message: ChatMessage, index: int) -> str:
    """A message's text: its string, or its `text` parts joined; InvalidParameter for any other part."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    for j, part in enumerate(message.content):
        if part.type != "text" or part.text is None:
            raise completions.InvalidParameter(
                f"only text content parts are supported, not {part.type!r}",
                f"messages[{index}].content[{j}].type",
            )
    return "".join(part.text or "" for part in message.content)


def _param(error: pydantic.ValidationError) -> completions.InvalidParameter:
    """The first problem pydantic found, named as the request spells the parameter."""
    first = error.errors()[0]
    path = ""
    for part in first["loc"]:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part not in {"str", "list[TextPart]", "list[str]"} and not str(part).startswith(
            ("function-", "json-")
        ):
            path += f".{part}" if path else str(part)
    return completions.InvalidParameter(f"{path or 'body'}: {first['msg']}", path or "body")


async def _parsed(request: Request) -> ChatCompletionRequest:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise completions.InvalidParameter("the body must be a JSON object", "body") from None
    try:
        return ChatCompletionRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        raise _param(exc) from None


def _completion_request(parsed: ChatCompletionRequest) -> completions.CompletionRequest:
    if parsed.n is not None and parsed.n != 1:
        raise completions.InvalidParameter("only n = 1 is supported", "n")
    if parsed.max_tokens is not None and parsed.max_completion_tokens is not None:
        raise completions.InvalidParameter(
            "give max_tokens or max_completion_tokens, not both", "max_completion_tokens"
        )
    messages = [{"role": m.role, "content": _text(m, i)} for i, m in enumerate(parsed.messages)]
    stop = [parsed.stop] if isinstance(parsed.stop, str) else list(parsed.stop or [])
    return completions.CompletionRequest(
        messages=messages,
        max_tokens=parsed.max_tokens
        if parsed.max_completion_tokens is None
        else parsed.max_completion_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=stop,
        seed=parsed.seed,
    )


def _model(services: AppServices, name: str) -> dict[str, Any]:
    """The served model `name` as OpenAI describes a model (its id: the registered name, `chakor models`;
    without a registry the GGUF file's name without `.gguf`, or `chakor` when none is configured)."""
    path = services.models.get(name).gguf_path
    created = int(path.stat().st_mtime) if path is not None and path.is_file() else 0
    return {"id": name, "object": "model", "created": created, "owned_by": OWNER}


def _chunk(
    answer_id: str, created: int, model: str, delta: dict[str, str], reason: str | None
) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
    return {"id": answer_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [choice]}  # fmt: skip


def _usage(done: completions.Finished) -> dict[str, int]:
    return {
        "prompt_tokens": done.prompt_tokens,
        "completion_tokens": done.completion_tokens,
        "total_tokens": done.prompt_tokens + done.completion_tokens,
    }


def _sse(data: dict[str, Any] | str) -> bytes:
    return b"data: " + (data.encode() if isinstance(data, str) else orjson.dumps(data)) + b"\n\n"


class _DeltaFrame:
    """The SSE bytes of one content delta, made by joining the text's JSON string between the fixed
    bytes around it: the relay's per-frame work is one orjson call, not a dict and a dump."""

    def __init__(self, answer_id: str, created: int, model: str, include_usage: bool) -> None:
        extra: dict[str, Any] = {"usage": None} if include_usage else {}
        sample = _sse({**_chunk(answer_id, created, model, {"content": "\x00"}, None), **extra})
        self.head, self.tail = sample.split(b'"\\u0000"')

    def __call__(self, text: str) -> bytes:
        return self.head + orjson.dumps(text) + self.tail


async def _stream(answer: completions.Answer, model: str, include_usage: bool) -> AsyncGenerator[bytes, None]:
    """The answer as OpenAI's SSE chunks: the role, one delta per relayed chunk, the finish reason,
    the usage when asked, then `[DONE]`; an error after the first chunk is one `error` event."""
    answer_id, created = f"chatcmpl-{answer.id}", int(time.time())
    extra: dict[str, Any] = {"usage": None} if include_usage else {}
    delta = _DeltaFrame(answer_id, created, model, include_usage)
    yield _sse({**_chunk(answer_id, created, model, {"role": "assistant", "content": ""}, None), **extra})
    try:
        async with aclosing(answer.events()) as events:
            async for event in events:
                if isinstance(event, str):
                    yield delta(event)
                    continue
                yield _sse({**_chunk(answer_id, created, model, {}, event.finish_reason), **extra})
                if include_usage:
                    base = _chunk(answer_id, created, model, {}, None)
                    yield _sse({**base, "choices": [], "usage": _usage(event)})
    except (UserError, LlamaUnavailable) as exc:
        yield _sse(api_error(exc).body)
        return
    yield _sse("[DONE]")


async def _whole(answer: completions.Answer, model: str) -> dict[str, Any]:
    parts: list[str] = []
    done: completions.Finished | None = None
    async with aclosing(answer.events()) as events:
        async for event in events:
            if isinstance(event, str):
                parts.append(event)
            else:
                done = event
    assert done is not None  # events() ends with Finished or raises
    message = {"role": "assistant", "content": "".join(parts), "refusal": None}
    return {
        "id": f"chatcmpl-{answer.id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": done.finish_reason}],
        "usage": _usage(done),
    }


class RelayResponse(StreamingResponse):
    """An SSE answer that ends its relay as soon as the response does: a client that leaves mid-stream
    (Starlette then stops iterating the body, leaving its generator suspended) or before the first
    byte (the generator never started) frees its slot and has its tokens counted at once."""

    def __init__(self, answer: completions.Answer, model: str, include_usage: bool) -> None:
        self.relay = _stream(answer, model, include_usage)
        super().__init__(self.relay, media_type="text/event-stream", headers=STREAM_HEADERS)
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.relay.aclose()
            await self.answer.abandon()


async def _caller(request: Request) -> Caller:
    return await caller(request.headers.get("authorization"), _services(request).settings)


def _services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


def build_router() -> APIRouter:
    """The /v1 routes (mounted by `backend.main`)."""
    router = APIRouter()

    @router.get("/models")
    async def list_models(request: Request) -> Response:
        try:
            await (await _caller(request)).user()
        except UserError as exc:
            return api_error(exc).response()
        services = _services(request)
        return JSONResponse({"object": "list", "data": [_model(services, n) for n in services.models.names]})

    @router.get("/models/{name:path}")
    async def get_model(name: str, request: Request) -> Response:
        try:
            await (await _caller(request)).user()
        except UserError as exc:
            return api_error(exc).response()
        services = _services(request)
        if name not in services.models.models:
            return _unknown_model(name).response()
        return JSONResponse(_model(services, name))

    @router.post("/chat/completions")
    async def chat_completions(request: Request) -> Response:
        services = _services(request)
        try:
            who = await _caller(request)
            parsed = await _parsed(request)
            served = services.models.models.get(parsed.model)
            if served is None:
                await who.user()
                raise _unknown_model(parsed.model)
            answer = await completions.start(who, _completion_request(parsed), services.deps_for(served))
        except ApiError as exc:
            return exc.response()
        except (UserError, LlamaUnavailable) as exc:
            return api_error(exc).response()
        model = parsed.model
        if parsed.stream:
            include_usage = parsed.stream_options is not None and parsed.stream_options.include_usage
            return RelayResponse(answer, model, include_usage)
        try:
            return JSONResponse(await _whole(answer, model))
        except (UserError, LlamaUnavailable) as exc:
            return api_error(exc).response()

    return router


def _unknown_model(name: str) -> ApiError:
    return ApiError(
        404, f"The model '{name}' does not exist; GET /v1/models lists the served ones", "invalid_request_error",
        "model_not_found", "model",
    )  # fmt: skip

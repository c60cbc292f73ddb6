"""Stateless model calls (the OpenAI-compatible API): a list of messages in, an answer out, nothing stored.

A call goes through the chat's own admission (`chat.admit`: account, stream slot, daily quota, one
round trip), the one chat contract for its prompt (`prompt.turn_prompt`: system prompt, template,
context fitting), llama-server's relay (`LlamaPool.complete`, the GraphQL stream's chunking) and
usage recording (`usage.record`), and registers as an active stream, so a revoked key or account
ends it like a GraphQL answer. Nothing reaches llama-server before the admission passes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from beanie import PydanticObjectId

from backend.core.errors import AuthError, UserError, ValidationError
from backend.core.offload import run_prompt
from backend.services import usage
from backend.services.auth import Caller
from backend.services.chat import MAX_TEMPERATURE, Admission, ChatDeps, admit, context_per_slot, release
from backend.services.llama import Completion, Interrupted, TokenStream
from backend.services.prompt import tokenizer_at, turn_prompt
from backend.services.streams import ActiveStream
from common.chat import STOP

ROLES = ("system", "user", "assistant")
MAX_STOP_SEQUENCES = 4  # OpenAI's limit
MAX_STOP_CHARS = 200  # a stop sequence is a word or a marker, never a document


class InvalidParameter(ValidationError):
    """A request parameter is wrong; `param` names it as the request spells it (OpenAI's `param`)."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class CompletionRequest:
    """One stateless call: the conversation so far (roles system, user, assistant; the last a user's)
    and the sampling options (None: the server's default)."""

    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class _Turn:
    """What `prompt.turn_prompt` fits into the context."""

    system_prompt: str
    history: list[dict[str, str]]
    user_text: str
    ctx_size: int
    max_tokens: int


@dataclass
class Finished:
    """The end of an answer: tokens in (llama-server's count) and out, and why it ended (`stop`, `length`)."""

    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


def _turn(request: CompletionRequest, deps: ChatDeps, ctx_size: int) -> _Turn:
    """The request as a chat turn, or InvalidParameter naming what is wrong.

    System messages (joined, in order) replace the server's system prompt; the last message is the
    new user turn, the others its history.
    """
    settings = deps.settings
    if not request.messages:
        raise InvalidParameter("messages must hold at least one message", "messages")
    for i, message in enumerate(request.messages):
        if message["role"] not in ROLES:
            raise InvalidParameter(f"role must be one of {', '.join(ROLES)}", f"messages[{i}].role")
        if len(message["content"]) > settings.max_message_chars:
            raise InvalidParameter(
                f"a message is longer than {settings.max_message_chars} characters", f"messages[{i}].content"
            )
        if "\x00" in message["content"]:
            raise InvalidParameter("a message must not contain NUL characters", f"messages[{i}].content")
    system = [m["content"] for m in request.messages if m["role"] == "system"]
    turns = [m for m in request.messages if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "user" or not turns[-1]["content"].strip():
        raise InvalidParameter("the last message must be a user message with text", "messages")
    if request.temperature is not None and not 0 <= request.temperature <= MAX_TEMPERATURE:
        raise InvalidParameter(f"temperature must be between 0 and {MAX_TEMPERATURE}", "temperature")
    if request.top_p is not None and not 0 < request.top_p <= 1:
        raise InvalidParameter("top_p must be above 0 and at most 1", "top_p")
    if len(request.stop) > MAX_STOP_SEQUENCES or any(not s or len(s) > MAX_STOP_CHARS for s in request.stop):
        raise InvalidParameter(
            f"stop takes at most {MAX_STOP_SEQUENCES} sequences of 1 to {MAX_STOP_CHARS} characters", "stop"
        )
    ceiling = ctx_size // 2  # the chat's rule: an answer gets at most half the slot's context
    max_tokens = min(settings.chat_max_tokens, ceiling) if request.max_tokens is None else request.max_tokens
    if not 1 <= max_tokens <= ceiling:
        raise InvalidParameter(f"max_tokens must be between 1 and {ceiling}", "max_tokens")
    history = [{"role": m["role"], "content": m["content"]} for m in turns[:-1] if m["content"]]
    system_prompt = "\n\n".join(system) if system else settings.chat_system_prompt
    return _Turn(system_prompt, history, turns[-1]["content"], ctx_size, max_tokens)


def _body(request: CompletionRequest, turn: _Turn, prompt: list[int]) -> dict[str, object]:
    """llama-server's `/completion` request: the chat's stop words and the caller's."""
    body: dict[str, object] = {
        "prompt": prompt,
        "n_predict": turn.max_tokens,
        "stop": [*STOP, *request.stop],
    }
    for name, value in (
        ("temperature", request.temperature),
        ("top_p", request.top_p),
        ("seed", request.seed),
    ):
        if value is not None:
            body[name] = value
    return body


@dataclass
class Answer:
    """An admitted call whose prompt llama-server has: iterate `events()` once to relay it."""

    id: PydanticObjectId
    caller: Caller
    admission: Admission
    upstream: TokenStream
    prompt_tokens: int
    deps: ChatDeps
    relayed: bool = False  # `events()` has started, and gives back what the call holds

    async def abandon(self) -> None:
        """Give back what an answer whose `events()` never started holds (its client left before the
        first byte); does nothing once they have started."""
        if not self.relayed:
            self.relayed = True
            await asyncio.shield(self._settle([]))

    async def events(self) -> AsyncGenerator[str | Finished, None]:
        """The answer's text as it comes (llama-server's chunks), then `Finished`; AuthError when the
        caller's credentials are revoked meanwhile, LlamaUnavailable when llama-server fails.

        However it ends (the client gone included), the slot is freed and the tokens spent are counted.
        """
        if self.relayed:
            raise RuntimeError("an answer is relayed once")
        self.relayed = True
        deps = self.deps
        stream = ActiveStream(message_id=self.id, user_id=self.caller.id, key_id=self.caller.key_id)
        deps.streams.add(stream)
        stopper = asyncio.ensure_future(_interrupt_on_stop(stream, self.upstream))
        spent: list[int] = []  # tokens in and out, once llama-server has answered anything
        tokens = 0
        try:
            async for item in self.upstream:
                if isinstance(item, Completion):
                    spent[:] = [usage.prompt_tokens(item.timings, self.prompt_tokens), item.tokens_predicted]
                    yield Finished(spent[0], spent[1], item.finish_reason)
                    return
                tokens += item.tokens
                spent[:] = [self.prompt_tokens, tokens]
                yield item.text
                if stream.stop.is_set():
                    raise Interrupted
        except Interrupted:
            if stream.reason is not None:
                raise AuthError(stream.reason) from None
            yield Finished(spent[0] if spent else self.prompt_tokens, tokens, "stop")
        finally:
            stopper.cancel()
            # One shielded task: a cancelled caller (an anyio scope cancels every await after the
            # first) must not cut the cleanup short between its steps.
            await asyncio.shield(self._settle(spent))

    async def _settle(self, spent: list[int]) -> None:
        """Close the upstream request, forget the stream, count the tokens spent (or give the
        reservation back) and free the slot."""
        deps, admission = self.deps, self.admission
        await self.upstream.aclose()
        deps.streams.remove(self.id)
        settle = (
            usage.record(admission.quota, spent[0], spent[1]) if spent else usage.release(admission.quota)
        )
        await asyncio.gather(settle, deps.streams.release(admission.lease))


async def _interrupt_on_stop(stream: ActiveStream, upstream: TokenStream) -> None:
    """End `upstream` once the answer is asked to stop, even before its first token."""
    await stream.stop.wait()
    await upstream.interrupt()


async def start(caller: Caller, request: CompletionRequest, deps: ChatDeps) -> Answer:
    """Check the request, admit the call (the account's refusal first, then the slot's or quota's),
    fit its prompt and start llama-server on it.

    Raises InvalidParameter, ContextOverflow, the admission's AuthError / ForbiddenError /
    RateLimitedError / QuotaExceeded, holding nothing; llama-server is reached only once all pass.
    """
    ctx_size = await context_per_slot(deps)
    turn = _turn(request, deps, ctx_size)
    if deps.settings.tokenizer_path is None:
        raise UserError("the model's tokenizer is not configured (CHAKOR_TOKENIZER_PATH)", "NOT_CONFIGURED")
    answer_id = PydanticObjectId()
    admission = await admit(caller, answer_id, ctx_size, deps)
    try:
        fitted = await run_prompt(turn_prompt, tokenizer_at(deps.settings.tokenizer_path), turn)
        upstream = deps.pool.complete(_body(request, turn, fitted.ids))
    except BaseException:
        await release(admission.lease, admission.quota, deps)
        raise
    return Answer(answer_id, caller, admission, upstream, len(fitted.ids), deps)

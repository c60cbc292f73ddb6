"""The chat lifecycle: validate, store the user turn, stream the answer, finish it in every case."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass

from beanie import PydanticObjectId
from beanie.odm.utils.encoder import Encoder
from pymongo.results import UpdateResult
from tokenizers import Tokenizer

from backend.core.config import Settings
from backend.core.errors import NotFoundError, UserError, ValidationError
from backend.core.offload import run_prompt
from backend.models import Conversation, Message, MessageRole, MessageStatus, Source, User
from backend.models.common import oid
from backend.services import conversations, usage
from backend.services.document_search import DocumentSearch
from backend.services.llama import Completion, Interrupted, LlamaPool, LlamaUnavailable, TokenStream
from backend.services.prompt import STOP, PromptTooLong, build_prompt, tokenizer_at, with_sources
from backend.services.search import SearchUnavailable, WebSearch
from backend.services.streams import ActiveStream, StreamRegistry
from backend.services.tree import MessageTree
from backend.services.validation import object_id
from chakor.documents.render import DOCUMENT_RESULTS, SearchMode

FLUSH_SECONDS = 1.0  # the partial answer is stored at most this often while it streams
MAX_SEARCH_QUERY_CHARS = 400
MAX_TEMPERATURE = 2.0


@dataclass
class ChatRequest:
    """One chat turn as the client asked for it."""

    content: str
    conversation_id: str | None = None
    search: SearchMode = SearchMode.OFF
    regenerate: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    edit_of: str | None = None


@dataclass
class Started:
    conversation_id: PydanticObjectId
    user_message_id: PydanticObjectId
    assistant_message_id: PydanticObjectId


@dataclass
class SourcesFound:
    results: list[Source]
    available: bool
    error: str | None


@dataclass
class Token:
    text: str


@dataclass
class Done:
    message_id: PydanticObjectId
    tokens_predicted: int
    tokens_per_second: float | None
    finish_reason: str


@dataclass
class Failed:
    code: str
    message: str


ChatEvent = Started | SourcesFound | Token | Done | Failed


@dataclass
class ChatDeps:
    """What a chat needs from the running app."""

    settings: Settings
    pool: LlamaPool
    search: WebSearch
    streams: StreamRegistry
    documents: DocumentSearch | None = None


@dataclass
class _Plan:
    """What to store and prompt with: the new user turn hangs under `parent_id` (regenerate reuses
    `user_message`); `history` is the active branch above it."""

    conversation: Conversation | None
    history: list[dict[str, str]]
    user_text: str
    user_message: Message | None
    parent_id: PydanticObjectId | None
    max_tokens: int
    ctx_size: int
    system_prompt: str
    temperature: float | None
    prompt_tokens: int = 0


def _check_request(
    request: ChatRequest, settings: Settings, ctx_size: int, conversation: Conversation | None
) -> int:
    if request.regenerate and request.edit_of is not None:
        raise ValidationError("regenerate and editOf cannot be combined")
    if not request.regenerate:
        if len(request.content) > settings.max_message_chars:
            raise ValidationError(f"message is longer than {settings.max_message_chars} characters")
        if not request.content.strip():
            raise ValidationError("message must not be empty")
        if "\x00" in request.content:
            raise ValidationError("message must not contain NUL characters")
    if request.temperature is not None and not 0 <= request.temperature <= MAX_TEMPERATURE:
        raise ValidationError(f"temperature must be between 0 and {MAX_TEMPERATURE}")
    ceiling = ctx_size // 2
    default = (
        conversation.max_tokens if conversation and conversation.max_tokens else settings.chat_max_tokens
    )
    max_tokens = min(default, ceiling) if request.max_tokens is None else request.max_tokens
    if not 1 <= max_tokens <= ceiling:
        raise ValidationError(f"maxTokens must be between 1 and {ceiling}")
    return max_tokens


def _turns(messages: list[Message]) -> list[dict[str, str]]:
    usable = (MessageStatus.COMPLETE, MessageStatus.STOPPED)
    return [
        {"role": m.role.value, "content": m.content}
        for m in messages
        if m.status in usable and m.content and m.role != MessageRole.SYSTEM
    ]


async def _edited(user: User, request: ChatRequest) -> tuple[Conversation, Message]:
    """The conversation and the user message that `request.edit_of` names (the caller's own)."""
    target = object_id(request.edit_of or "")
    original = await Message.find_one({"_id": target, "user_id": user.id}) if target else None
    if original is None:
        raise NotFoundError("message to edit not found")
    if original.role != MessageRole.USER:
        raise ValidationError("editOf must name a user message")
    conversation = await conversations.get_conversation(user, str(original.conversation_id))
    if request.conversation_id is not None and request.conversation_id != str(conversation.id):
        raise ValidationError("editOf names a message of another conversation")
    return conversation, original


async def _plan(user: User, request: ChatRequest, settings: Settings, ctx_size: int) -> _Plan:
    """Where the new turn goes in the tree, and the active branch it is prompted with."""
    conversation, original = None, None
    if request.edit_of is not None:
        conversation, original = await _edited(user, request)
    elif request.conversation_id is not None:
        conversation = await conversations.get_conversation(user, request.conversation_id)
    max_tokens = _check_request(request, settings, ctx_size, conversation)
    found = await conversations.tree(conversation) if conversation else MessageTree([])
    branch = found.branch(conversation.active_leaf_id) if conversation else []
    system = settings.chat_system_prompt
    temperature = request.temperature
    if conversation is not None:
        system = (
            settings.chat_system_prompt if conversation.system_prompt is None else conversation.system_prompt
        )
        temperature = conversation.temperature if temperature is None else temperature
    rest = (max_tokens, ctx_size, system, temperature)
    if original is not None:  # a sibling of the edited message, answered on the branch above it
        above = found.branch(original.parent_id) if original.parent_id in found.by_id else []
        return _Plan(conversation, _turns(above), request.content, None, original.parent_id, *rest)
    if not request.regenerate:
        parent = branch[-1].id if branch else None
        return _Plan(conversation, _turns(branch), request.content, None, parent, *rest)
    last_user = next((i for i in range(len(branch) - 1, -1, -1) if branch[i].role == MessageRole.USER), None)
    if conversation is None or last_user is None:
        raise NotFoundError("nothing to regenerate: the conversation has no user message")
    prompt = branch[last_user]  # the new answer becomes a sibling of the ones already there
    return _Plan(conversation, _turns(branch[:last_user]), prompt.content, prompt, prompt.parent_id, *rest)


async def _open(user: User, plan: _Plan) -> tuple[Conversation, Message]:
    """Store what must exist before generation: the conversation and the user turn."""
    conversation = plan.conversation
    if conversation is None:
        conversation = Conversation(user_id=oid(user), title=conversations.title_from_message(plan.user_text))
        await conversation.insert()
    user_message = plan.user_message
    if user_message is None:
        user_message = Message(
            conversation_id=oid(conversation),
            user_id=oid(user),
            parent_id=plan.parent_id,
            role=MessageRole.USER,
            content=plan.user_text,
        )
        await user_message.insert()
    return conversation, user_message


def _streaming_answer(user: User, conversation: Conversation, user_message: Message) -> Message:
    return Message(
        id=PydanticObjectId(),  # known before the insert, so the active leaf is set concurrently
        conversation_id=oid(conversation),
        user_id=oid(user),
        parent_id=oid(user_message),
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.STREAMING,
    )


def _body(plan: _Plan, request: ChatRequest, prompt: list[int]) -> dict[str, object]:
    body: dict[str, object] = {"prompt": prompt, "n_predict": plan.max_tokens, "stop": STOP}
    if plan.temperature is not None:
        body["temperature"] = plan.temperature
    return body


async def _start_early(
    plan: _Plan, request: ChatRequest, answer: Message, tokenizer: Tokenizer, deps: ChatDeps
) -> TokenStream | None:
    """Start generating at once when the prompt is known already (no search)."""
    if request.search is not SearchMode.OFF:
        return None
    prompt = await run_prompt(_prompt, plan, [], answer, tokenizer, deps.settings)
    return deps.pool.complete(_body(plan, request, prompt))


class _PartialWriter:
    """Stores a streaming answer's text so far, at most once per FLUSH_SECONDS, as a `$set` of content."""

    def __init__(self, answer: Message) -> None:
        self.answer = answer
        self.flushed_at = time.monotonic()
        self.pending: asyncio.Future[UpdateResult] | None = None

    async def maybe_flush(self, parts: list[str]) -> None:
        """Store the text if the last flush is FLUSH_SECONDS old (it finishes even if we are cancelled)."""
        if time.monotonic() - self.flushed_at < FLUSH_SECONDS:
            return
        self.flushed_at = time.monotonic()
        collection = Message.get_pymongo_collection()
        self.pending = asyncio.ensure_future(
            collection.update_one({"_id": self.answer.id}, {"$set": {"content": "".join(parts)}})
        )
        await asyncio.shield(self.pending)


async def _finish(
    answer: Message,
    status: MessageStatus,
    text: str,
    error: str | None = None,
    writer: _PartialWriter | None = None,
) -> None:
    """Store the answer's final state, even while the surrounding task is being cancelled."""
    answer.status, answer.content, answer.error = status, text, error
    await asyncio.shield(_save_after(answer, writer.pending if writer else None))


async def _save_after(answer: Message, flush: asyncio.Future[UpdateResult] | None) -> None:
    """Save `answer` once a partial flush still in flight has landed, so it cannot overwrite the save.

    An update, never an upsert: an answer whose conversation was deleted meanwhile stays deleted.
    """
    if flush is not None:
        await asyncio.gather(flush, return_exceptions=True)
    fields = Encoder().encode(answer)
    fields.pop("_id", None)
    await Message.get_pymongo_collection().update_one({"_id": answer.id}, {"$set": fields})


async def _prepare(user: User, request: ChatRequest, deps: ChatDeps) -> tuple[_Plan, Tokenizer]:
    """Validate the request and check that its prompt fits, before anything is stored."""
    settings = deps.settings
    ctx_size = await deps.pool.slot_context() or settings.llama_ctx_size // settings.llama_parallel
    plan = await _plan(user, request, settings, ctx_size)
    if settings.tokenizer_path is None:
        raise UserError("the model's tokenizer is not configured (CHAKOR_TOKENIZER_PATH)", "NOT_CONFIGURED")
    tokenizer = tokenizer_at(settings.tokenizer_path)
    await run_prompt(
        build_prompt, tokenizer, plan.system_prompt, plan.history, plan.user_text, ctx_size, plan.max_tokens
    )  # tokenizing a long history takes milliseconds: off the event loop, like every prompt here
    return plan, tokenizer


async def chat(user: User, request: ChatRequest, deps: ChatDeps) -> AsyncGenerator[ChatEvent, None]:
    """Run one chat turn, yielding events; the answer is stored in its final state however it ends."""
    try:
        lease = await deps.streams.reserve(oid(user))
    except UserError as exc:
        yield Failed(exc.code, exc.message)
        return
    try:
        try:
            await usage.check_quota(oid(user), deps.settings.daily_token_quota)
            plan, tokenizer = await _prepare(user, request, deps)
        except UserError as exc:
            yield Failed(exc.code, exc.message)
            return
        conversation, user_message = await _open(user, plan)
        answer = _streaming_answer(user, conversation, user_message)
        early = await _start_early(plan, request, answer, tokenizer, deps)
        try:  # llama-server works on the prompt while the answer is stored
            await asyncio.gather(answer.insert(), conversations.touch(conversation, oid(answer)))
            started = Started(oid(conversation), oid(user_message), oid(answer))
            generate = _generate(started, user, plan, answer, tokenizer, request, deps, early, lease)
            async with aclosing(generate) as events:
                async for event in events:
                    yield event
        finally:
            if early is not None:
                await early.aclose()
    finally:
        await deps.streams.release(lease)


async def _sources(plan: _Plan, answer: Message, mode: SearchMode, deps: ChatDeps) -> SourcesFound:
    """Web or document results for the user's text; a search that fails is recorded, never fatal."""
    query = plan.user_text[:MAX_SEARCH_QUERY_CHARS]
    try:
        if mode is SearchMode.WEB:
            results = await deps.search.search(query)
        elif deps.documents is None:
            raise SearchUnavailable("document search is not set up")
        else:
            results = await deps.documents.search(query, DOCUMENT_RESULTS)
    except (SearchUnavailable, ValidationError) as exc:
        answer.sources, answer.sources_error = [], exc.message
        return SourcesFound([], False, exc.message)
    answer.sources = results
    return SourcesFound(results, True, None)


def _prompt(
    plan: _Plan,
    sources: list[Source],
    answer: Message,
    tokenizer: Tokenizer,
    settings: Settings,
    mode: SearchMode = SearchMode.WEB,
) -> list[int]:
    """The prompt with as many search results as fit the context (the first ones, in order)."""
    args = (plan.history, plan.user_text, plan.ctx_size, plan.max_tokens)
    for count in range(len(sources), 0, -1):
        try:
            context = with_sources(plan.system_prompt, sources[:count], mode)
            ids = build_prompt(tokenizer, context, *args)
        except PromptTooLong:
            continue
        answer.context = context
        if count < len(sources):
            answer.sources_error = (
                f"only the first {count} of {len(sources)} search results fit the model's context"
            )
        plan.prompt_tokens = len(ids)
        return ids
    if sources:
        answer.sources_error = "the search results did not fit the model's context"
    ids = build_prompt(tokenizer, plan.system_prompt, *args)
    plan.prompt_tokens = len(ids)
    return ids


async def _interrupt_on_stop(stream: ActiveStream, upstream: TokenStream) -> None:
    """End `upstream` as soon as the answer is asked to stop, even while llama-server is still
    reading the prompt (no token to check the flag at); closing the request aborts its work."""
    await stream.stop.wait()
    await upstream.interrupt()


async def _generate(
    started: Started,
    user: User,
    plan: _Plan,
    answer: Message,
    tokenizer: Tokenizer,
    request: ChatRequest,
    deps: ChatDeps,
    early: TokenStream | None,
    lease: PydanticObjectId,
) -> AsyncGenerator[ChatEvent, None]:
    """Stream the answer into `answer` (from `early` if started already), registered as active so
    stopGeneration can reach it.

    The answer is stored before its final event is sent; if the client goes away before that,
    the text so far is stored as `stopped`.
    """
    stream = ActiveStream(message_id=oid(answer), user_id=oid(user))
    await deps.streams.add(lease, stream)
    stopper: asyncio.Future[None] | None = None
    parts: list[str] = []
    tokens = 0
    writer = _PartialWriter(answer)
    finished = False
    spent: list[int] = []  # tokens in and out, once llama-server has answered anything
    try:
        yield started
        sources: list[Source] = []
        if request.search is not SearchMode.OFF:
            found = await _sources(plan, answer, request.search, deps)
            sources = found.results
            yield found
        upstream = early
        if upstream is None:
            prompt = await run_prompt(
                _prompt, plan, sources, answer, tokenizer, deps.settings, request.search
            )
            upstream = deps.pool.complete(_body(plan, request, prompt))
        stopper = asyncio.ensure_future(_interrupt_on_stop(stream, upstream))
        final: Done | Failed
        try:
            async with aclosing(upstream):
                async for item in upstream:
                    if isinstance(item, Completion):
                        spent[:] = [
                            usage.prompt_tokens(item.timings, plan.prompt_tokens),
                            item.tokens_predicted,
                        ]
                        answer.tokens_predicted = item.tokens_predicted
                        answer.tokens_per_second = item.tokens_per_second
                        answer.finish_reason = item.finish_reason
                        await _finish(answer, MessageStatus.COMPLETE, "".join(parts))
                        final = Done(
                            oid(answer), item.tokens_predicted, item.tokens_per_second, item.finish_reason
                        )
                        break
                    parts.append(item.text)
                    tokens += item.tokens
                    spent[:] = [plan.prompt_tokens, tokens]
                    yield Token(item.text)
                    if stream.stop.is_set():
                        answer.finish_reason = "stopped"
                        await _finish(answer, MessageStatus.STOPPED, "".join(parts))
                        final = Done(oid(answer), tokens, None, "stopped")
                        break
                    await writer.maybe_flush(parts)
                else:
                    raise LlamaUnavailable("llama-server ended the answer without a final event")
        except Interrupted:  # stopped before a token came (prompt processing), or between two
            answer.finish_reason = "stopped"
            await _finish(answer, MessageStatus.STOPPED, "".join(parts))
            final = Done(oid(answer), tokens, None, "stopped")
        except LlamaUnavailable as exc:
            await _finish(answer, MessageStatus.ERROR, "".join(parts), str(exc))
            final = Failed("LLAMA_UNAVAILABLE", str(exc))
        finished = True
        yield final
    except (asyncio.CancelledError, GeneratorExit):
        if not finished:
            answer.finish_reason = "stopped"
            await _finish(answer, MessageStatus.STOPPED, "".join(parts), writer=writer)
        raise
    except Exception:
        if not finished:
            await _finish(answer, MessageStatus.ERROR, "".join(parts), "internal error", writer)
        raise
    finally:
        if stopper is not None:
            stopper.cancel()
        deps.streams.remove(oid(answer))
        if spent:
            await asyncio.shield(usage.record(oid(user), spent[0], spent[1]))

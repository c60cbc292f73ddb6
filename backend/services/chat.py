"""The chat lifecycle: validate, store the user turn, stream the answer, finish it in every case."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Any

from beanie import PydanticObjectId
from pymongo.results import UpdateResult
from tokenizers import Tokenizer

from backend.core.config import Settings
from backend.core.errors import AuthError, ForbiddenError, NotFoundError, UserError, ValidationError
from backend.core.offload import run_prompt
from backend.models import Conversation, Message, MessageRole, MessageStatus, Source
from backend.models.common import oid
from backend.services import caps, conversations, usage
from backend.services.auth import Caller
from backend.services.document_search import DocumentSearch
from backend.services.llama import Completion, Interrupted, LlamaPool, LlamaUnavailable, TokenStream
from backend.services.prompt import tokenizer_at, turn_prompt
from backend.services.search import SearchUnavailable, WebSearch
from backend.services.served_models import ModelRoster, ServedModel
from backend.services.streams import ActiveStream, StreamRegistry, StreamSlot
from backend.services.tree import MessageTree
from backend.services.validation import object_id
from common.chat import DOCUMENT_RESULTS, STOP, SearchMode

FLUSH_SECONDS = 1.0  # the partial answer is stored at most this often while it streams
MAX_SEARCH_QUERY_CHARS = 400
MAX_TEMPERATURE = 2.0
log = logging.getLogger("chakor.backend")


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
    model: str | None = None  # a served model's name; None: the conversation's, else the default
    collections: list[str] | None = None  # DOCUMENTS search narrowed to these collections


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
    models: ModelRoster | None = None  # every served model (None: only `pool`, unnamed)
    model: ServedModel | None = None  # the one `pool` and `settings.tokenizer_path` belong to

    def for_model(self, model: ServedModel) -> ChatDeps:
        """These deps answering with `model`: its servers, and its tokenizer for every prompt."""
        settings = self.settings
        if settings.tokenizer_path != model.tokenizer_path:
            settings = settings.model_copy(update={"tokenizer_path": model.tokenizer_path})
        return replace(self, settings=settings, pool=model.pool, model=model)


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


async def _edited(caller: Caller, request: ChatRequest) -> tuple[Conversation, Message]:
    """The conversation and the user message that `request.edit_of` names (the caller's own)."""
    target = object_id(request.edit_of or "")
    original = await Message.find_one({"_id": target, "user_id": caller.id}) if target else None
    if original is None:
        raise NotFoundError("message to edit not found")
    if original.role != MessageRole.USER:
        raise ValidationError("editOf must name a user message")
    conversation = await conversations.get_conversation(caller, str(original.conversation_id))
    if request.conversation_id is not None and request.conversation_id != str(conversation.id):
        raise ValidationError("editOf names a message of another conversation")
    return conversation, original


async def _plan(caller: Caller, request: ChatRequest, settings: Settings, ctx_size: int) -> _Plan:
    """Where the new turn goes in the tree, and the active branch it is prompted with."""
    conversation, original = None, None
    if request.edit_of is not None:
        conversation, original = await _edited(caller, request)
    elif request.conversation_id is not None:
        conversation = await conversations.get_conversation(caller, request.conversation_id)
    max_tokens = _check_request(request, settings, ctx_size, conversation)
    found = await conversations.tree(conversation) if conversation else MessageTree([])
    if conversation is None:
        await caps.check_conversation_room(caller.id, settings)
    else:  # the new nodes: an answer, and the user turn unless it is regenerated
        caps.check_message_room(len(found.nodes), 1 if request.regenerate else 2, settings)
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


@dataclass
class _Turn:
    """The documents one turn stores, made here with their ids, so generation need not wait for a write."""

    conversation: Conversation
    user_message: Message
    answer: Message
    new_conversation: bool
    new_user_message: bool
    model_changed: bool = False  # the turn names another model than the conversation's

    @property
    def new_messages(self) -> list[Message]:
        """The messages this turn adds (a regenerated answer reuses the stored user message)."""
        return [self.user_message, self.answer] if self.new_user_message else [self.answer]


def _turn(
    caller: Caller, plan: _Plan, user_message_id: PydanticObjectId, answer_id: PydanticObjectId,
    model: str | None = None,
) -> _Turn:  # fmt: skip
    """The conversation (new or the plan's), the user turn (new or regenerated) and the streaming answer
    (written by `model`, which becomes the conversation's)."""
    conversation = plan.conversation
    new_conversation = conversation is None
    model_changed = conversation is not None and model is not None and conversation.model != model
    if conversation is None:
        title = conversations.title_from_message(plan.user_text)
        conversation = Conversation(id=PydanticObjectId(), user_id=caller.id, title=title, model=model)
    user_message = plan.user_message
    new_user_message = user_message is None
    if user_message is None:
        user_message = Message(
            id=user_message_id,
            conversation_id=oid(conversation),
            user_id=caller.id,
            parent_id=plan.parent_id,
            role=MessageRole.USER,
            content=plan.user_text,
        )
    answer = Message(
        id=answer_id,
        conversation_id=oid(conversation),
        user_id=caller.id,
        parent_id=oid(user_message),
        role=MessageRole.ASSISTANT,
        content="",
        status=MessageStatus.STREAMING,
        model=model,
    )
    conversation.active_leaf_id = answer_id
    return _Turn(conversation, user_message, answer, new_conversation, new_user_message, model_changed)


def _fields(document: Message | Conversation) -> dict[str, Any]:
    """`document` as stored, `_id` included, for a plain driver write: pydantic's own dump, a quarter
    of the CPU of Beanie's encoder (8 vs 38 us a message); our documents hold only BSON-native values."""
    return document.model_dump(by_alias=True)


async def _store(turn: _Turn) -> None:
    """Write the turn: the conversation first, then its messages (in order, one round trip).

    In this order a database failure between the writes leaves at worst a conversation without the
    new turn, never messages without their conversation; an answer whose writes or final save
    failed is ended by the streams' sweep.
    """
    conversation = turn.conversation
    if turn.new_conversation:
        await Conversation.get_pymongo_collection().insert_one(_fields(conversation))
    else:
        await conversations.touch(
            conversation, oid(turn.answer), turn.answer.model if turn.model_changed else None
        )
    await Message.get_pymongo_collection().insert_many([_fields(m) for m in turn.new_messages])


def _body(plan: _Plan, prompt: list[int]) -> dict[str, object]:
    body: dict[str, object] = {"prompt": prompt, "n_predict": plan.max_tokens, "stop": STOP}
    if plan.temperature is not None:
        body["temperature"] = plan.temperature
    return body


class _PartialWriter:
    """Stores a streaming answer's text so far, at most once per FLUSH_SECONDS, as a `$set` of content.

    The write runs beside the stream (tokens are not held for it); one at a time.
    """

    def __init__(self, answer: Message, stored: asyncio.Future[None]) -> None:
        self.answer = answer
        self.stored = stored  # the turn's first writes (the final save waits for them)
        self.flushed_at = time.monotonic()
        self.pending: asyncio.Future[UpdateResult] | None = None

    def maybe_flush(self, parts: list[str]) -> None:
        """Start storing the text if the last flush is FLUSH_SECONDS old and has landed."""
        if time.monotonic() - self.flushed_at < FLUSH_SECONDS:
            return
        if self.pending is not None:
            if not self.pending.done():
                return
            if self.pending.exception() is not None:  # a database blip: the next flush or the final save
                log.warning("partial answer not stored", exc_info=self.pending.exception())
        self.flushed_at = time.monotonic()
        collection = Message.get_pymongo_collection()
        self.pending = asyncio.ensure_future(
            collection.update_one({"_id": self.answer.id}, {"$set": {"content": "".join(parts)}})
        )


async def _finish(
    answer: Message, writer: _PartialWriter, status: MessageStatus, text: str, error: str | None = None
) -> None:
    """Store the answer's final state, even while the surrounding task is being cancelled."""
    answer.status, answer.content, answer.error = status, text, error
    await asyncio.shield(_save_after(answer, writer))


async def _save_after(answer: Message, writer: _PartialWriter) -> None:
    """Save `answer` once the turn's first writes and a partial flush still in flight have landed, so
    neither can overwrite the save.

    An update, never an upsert: an answer whose conversation was deleted meanwhile stays deleted.
    """
    await writer.stored
    if writer.pending is not None:
        await asyncio.gather(writer.pending, return_exceptions=True)
    fields = _fields(answer)
    fields.pop("_id", None)
    await Message.get_pymongo_collection().update_one({"_id": answer.id}, {"$set": fields})


async def _prepare(
    caller: Caller, request: ChatRequest, deps: ChatDeps, ctx_size: int
) -> tuple[_Plan, Tokenizer, list[int]]:
    """Validate the request and tokenize its prompt without search results (the whole prompt when
    there is no search; else the check that it fits), before anything is stored."""
    settings = deps.settings
    plan = await _plan(caller, request, settings, ctx_size)
    if settings.tokenizer_path is None:
        raise UserError("the model's tokenizer is not configured (CHAKOR_TOKENIZER_PATH)", "NOT_CONFIGURED")
    tokenizer = tokenizer_at(settings.tokenizer_path)
    # tokenizing a long history takes milliseconds: off the event loop, like every prompt here
    fitted = await run_prompt(turn_prompt, tokenizer, plan)
    plan.prompt_tokens = len(fitted.ids)
    return plan, tokenizer, fitted.ids


async def context_per_slot(deps: ChatDeps) -> int:
    """Tokens of context one model call gets: the servers' slot context, else the configured share."""
    settings = deps.settings
    return await deps.pool.slot_context() or settings.llama_ctx_size // settings.llama_parallel


@dataclass
class Admission:
    """What an admitted model call holds: a stream slot and a share of the daily quota."""

    lease: StreamSlot
    quota: usage.Reservation


async def admit(caller: Caller, message_id: PydanticObjectId, estimate: int, deps: ChatDeps) -> Admission:
    """A stream slot and `estimate` tokens of quota for one model call (`message_id` names it), once
    the caller's account checks out; otherwise the account's error, else the slot's, else the
    quota's, holding nothing.

    The three checks are one concurrent round trip to the database; nothing reaches llama-server
    before they pass.
    """
    account, lease, quota = await asyncio.gather(
        caller.user(),
        deps.streams.reserve(caller.id, message_id, caller.key_id),
        usage.reserve(caller.id, estimate, deps.settings.daily_token_quota),
        return_exceptions=True,
    )
    if (
        isinstance(account, BaseException)
        or isinstance(lease, BaseException)
        or isinstance(quota, BaseException)
    ):
        await release(lease, quota, deps)
        raise next(o for o in (account, lease, quota) if isinstance(o, BaseException))
    return Admission(lease, quota)


async def release(
    lease: StreamSlot | BaseException, quota: usage.Reservation | BaseException, deps: ChatDeps
) -> None:
    """Give back what an admission holds (either part may be the error that refused it); finishes
    even while the caller is being cancelled."""
    parts = []
    if isinstance(lease, StreamSlot):
        parts.append(deps.streams.release(lease))
    if isinstance(quota, usage.Reservation):
        parts.append(usage.release(quota))
    await asyncio.shield(asyncio.gather(*parts))


@dataclass
class _Admitted:
    admission: Admission
    plan: _Plan
    tokenizer: Tokenizer
    upstream: TokenStream | None  # started at admission when the turn has no search
    turn: _Turn
    stored: asyncio.Future[None]  # the turn's writes
    spent: list[int] = field(default_factory=list)  # tokens in and out, once llama-server answered


async def _admit_and_start(caller: Caller, request: ChatRequest, deps: ChatDeps) -> _Admitted:
    """Admit the turn while its request is checked and its prompt made, then (without search) start
    llama-server on the prompt and the turn's writes.

    Nothing reaches llama-server for a refused turn. The admission (account, stream slot, quota: one
    concurrent round trip) runs beside the request's own reads and tokenizing, so it adds to the time
    to first token only what it takes beyond them. The quota reservation is the slot's context, the
    most one answer can spend (prompt and answer together). A refused turn holds nothing. The
    account's refusal comes first, then the slot's or quota's, then the request's own.
    """
    user_message_id, answer_id = PydanticObjectId(), PydanticObjectId()  # in this order: ids sort by age
    ctx_size = await context_per_slot(deps)
    admission = asyncio.ensure_future(admit(caller, answer_id, ctx_size, deps))
    try:
        plan, tokenizer, prompt = await _prepare(caller, request, deps, ctx_size)
        held = await asyncio.shield(admission)
    except BaseException as exc:
        refused = await asyncio.shield(_withdraw(admission, deps))
        if refused is not None and refused is not exc and isinstance(exc, UserError):
            raise refused from None
        raise
    upstream = deps.pool.complete(_body(plan, prompt)) if request.search is SearchMode.OFF else None
    turn = _turn(caller, plan, user_message_id, answer_id, deps.model.name if deps.model else None)
    return _Admitted(held, plan, tokenizer, upstream, turn, asyncio.ensure_future(_store(turn)))


async def _withdraw(admission: asyncio.Future[Admission], deps: ChatDeps) -> UserError | None:
    """Wait for an admission the turn no longer needs and give back what it holds; its refusal, if any."""
    try:
        held = await admission
    except UserError as exc:
        return exc
    except Exception:  # the turn fails for its own reason already
        return None
    await release(held.lease, held.quota, deps)
    return None


async def chat(caller: Caller, request: ChatRequest, deps: ChatDeps) -> AsyncGenerator[ChatEvent, None]:
    """Run one chat turn, yielding events; the answer is stored in its final state however it ends.

    The account, stream-slot and quota checks run while the request is checked and tokenized;
    llama-server gets the prompt once they pass, and the turn's writes start beside it.
    A refused account raises (AuthError / ForbiddenError, an API error like any field's); other
    refusals are a `Failed` event.
    """
    try:
        deps = await _answering_model(caller, request, deps)
        admitted = await _admit_and_start(caller, request, deps)
    except (AuthError, ForbiddenError):
        raise
    except UserError as exc:
        yield Failed(exc.code, exc.message)
        return
    try:
        try:
            async with aclosing(_generate(admitted, caller, request, deps)) as events:
                async for event in events:
                    yield event
        finally:
            if admitted.upstream is not None:
                await admitted.upstream.aclose()
            await asyncio.shield(asyncio.gather(admitted.stored, return_exceptions=True))
    finally:
        await deps.streams.release(admitted.admission.lease)
        await asyncio.shield(_settle(admitted))


async def _answering_model(caller: Caller, request: ChatRequest, deps: ChatDeps) -> ChatDeps:
    """`deps` for the model that answers the turn: the one it names, else its conversation's, else the
    default; UnknownModel or ModelDown (naming it) when that one is not served or is down."""
    if deps.models is None:
        return deps
    if not deps.models.registered:
        return deps.for_model(deps.models.get(request.model))
    name = request.model or await _conversation_model(caller, request)
    return deps.for_model(await deps.models.available(name))


async def _conversation_model(caller: Caller, request: ChatRequest) -> str | None:
    """The model stored on the caller's conversation the request continues (None: new, not the caller's,
    or stored before conversations had models; the turn's own checks then report what is wrong)."""
    conversation_id = object_id(request.conversation_id) if request.conversation_id else None
    if conversation_id is None and request.edit_of is not None:
        edited = await Message.get_pymongo_collection().find_one(
            {"_id": object_id(request.edit_of), "user_id": caller.id}, {"conversation_id": 1}
        )
        conversation_id = edited["conversation_id"] if edited else None
    if conversation_id is None:
        return None
    found = await Conversation.get_pymongo_collection().find_one(
        {"_id": conversation_id, "user_id": caller.id}, {"model": 1}
    )
    return found.get("model") if found else None


async def _settle(admitted: _Admitted) -> None:
    """Record what the turn spent as usage (giving its quota reservation back), or give it back unused."""
    reservation, spent = admitted.admission.quota, admitted.spent
    if spent:
        await usage.record(reservation, spent[0], spent[1], admitted.turn.answer.model)
    else:
        await usage.release(reservation)


async def _sources(plan: _Plan, answer: Message, request: ChatRequest, deps: ChatDeps) -> SourcesFound:
    """Web or document results for the user's text; a search that fails is recorded, never fatal."""
    query = plan.user_text[:MAX_SEARCH_QUERY_CHARS]
    try:
        if request.search is SearchMode.WEB:
            results = await deps.search.search(query, user_id=answer.user_id)
        elif deps.documents is None:
            raise SearchUnavailable("document search is not set up")
        else:
            results = await deps.documents.search(
                query, DOCUMENT_RESULTS, answer.user_id, request.collections
            )
    except (SearchUnavailable, ValidationError, caps.LimitReached) as exc:
        answer.sources, answer.sources_error = [], exc.message
        return SourcesFound([], False, exc.message)
    answer.sources = results
    return SourcesFound(results, True, None)


def _prompt(
    plan: _Plan, sources: list[Source], answer: Message, tokenizer: Tokenizer, mode: SearchMode
) -> list[int]:
    """The prompt with as many search results as fit the context (the first ones, in order); the
    answer records the system turn the model saw and which results were left out."""
    fitted = turn_prompt(tokenizer, plan, sources, mode)
    kept = fitted.sources_kept
    if kept:
        answer.context = fitted.system
    if kept < len(sources):
        answer.sources_error = (
            f"only the first {kept} of {len(sources)} search results fit the model's context"
            if kept
            else "the search results did not fit the model's context"
        )
    plan.prompt_tokens = len(fitted.ids)
    return fitted.ids


async def _interrupt_on_stop(stream: ActiveStream, upstream: TokenStream) -> None:
    """End `upstream` as soon as the answer is asked to stop, even while llama-server is still
    reading the prompt (no token to check the flag at); closing the request aborts its work."""
    await stream.stop.wait()
    await upstream.interrupt()


def _stopped(stream: ActiveStream, tokens: int) -> Done | Failed:
    """The final event of a stopped answer: a plain stop, or the error that revoked its credentials."""
    if stream.reason is not None:
        return Failed(AuthError.code, stream.reason)
    return Done(stream.message_id, tokens, None, "stopped")


async def _generate(
    admitted: _Admitted, caller: Caller, request: ChatRequest, deps: ChatDeps
) -> AsyncGenerator[ChatEvent, None]:
    """Stream the answer into `turn.answer` (from the request started already, if any), registered as
    active so stopGeneration can reach it.

    `started` goes out once the turn's writes have landed, then tokens as they come; the
    answer is stored before its final event is sent; if the client goes away before that, the text
    so far is stored as `stopped`.
    """
    plan, turn, stored = admitted.plan, admitted.turn, admitted.stored
    answer = turn.answer
    started = Started(oid(turn.conversation), oid(turn.user_message), oid(answer))
    stream = ActiveStream(message_id=oid(answer), user_id=caller.id, key_id=caller.key_id)
    deps.streams.add(stream)
    stopper: asyncio.Future[None] | None = None
    parts: list[str] = []
    tokens = 0
    writer = _PartialWriter(answer, stored)
    finished = False
    spent = admitted.spent
    try:
        await asyncio.shield(stored)  # tokens read meanwhile wait in `upstream`
        yield started
        sources: list[Source] = []
        if request.search is not SearchMode.OFF:
            found = await _sources(plan, answer, request, deps)
            sources = found.results
            yield found
        upstream = admitted.upstream
        if upstream is None:
            prompt = await run_prompt(_prompt, plan, sources, answer, admitted.tokenizer, request.search)
            upstream = deps.pool.complete(_body(plan, prompt))
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
                        await _finish(answer, writer, MessageStatus.COMPLETE, "".join(parts))
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
                        await _finish(answer, writer, MessageStatus.STOPPED, "".join(parts))
                        final = _stopped(stream, tokens)
                        break
                    writer.maybe_flush(parts)
                else:
                    raise LlamaUnavailable("llama-server ended the answer without a final event")
        except Interrupted:  # stopped before a token came (prompt processing), or between two
            answer.finish_reason = "stopped"
            await _finish(answer, writer, MessageStatus.STOPPED, "".join(parts))
            final = _stopped(stream, tokens)
        except LlamaUnavailable as exc:
            await _finish(answer, writer, MessageStatus.ERROR, "".join(parts), str(exc))
            named = deps.models is not None and deps.models.registered
            final = Failed("LLAMA_UNAVAILABLE", f"model {answer.model!r}: {exc}" if named else str(exc))
        finished = True
        yield final
    except (asyncio.CancelledError, GeneratorExit):
        if not finished:
            answer.finish_reason = "stopped"
            await _finish(answer, writer, MessageStatus.STOPPED, "".join(parts))
        raise
    except Exception:
        if not finished:
            await _finish(answer, writer, MessageStatus.ERROR, "".join(parts), "internal error")
        raise
    finally:
        if stopper is not None:
            stopper.cancel()
        deps.streams.remove(oid(answer))

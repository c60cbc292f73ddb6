"""Conversation titles from the model, cleaned, with the first words of the question as the fallback.

The model is asked once, greedily, for a few words; what comes back is kept only when it looks
like a title (letters, one line, not too long), so a small model's noise never reaches the sidebar.
"""

from __future__ import annotations

import asyncio
import re

from beanie import PydanticObjectId

from backend.core.errors import UserError
from backend.models import Conversation, MessageRole
from backend.services import conversations, usage
from backend.services.auth import Caller
from backend.services.chat import ChatDeps, admit
from backend.services.llama import Completion, LlamaUnavailable
from backend.services.prompt import tokenizer_at
from common.chat import STOP, PromptTooLong, build_prompt

TITLE_TOKENS = 16
MAX_TITLE_WORDS = 8
MAX_EXCERPT_CHARS = 1000  # of the question and of the answer: enough to name the topic
INSTRUCTION = "Write a short title (at most six words) for the conversation below. Reply with the title only."
_STRIP = re.compile(r"^[\s\"'`*#:.\-]+|[\s\"'`*#:.\-]+$")
_WORD = re.compile(r"[^\W\d_]{2,}")
_STUTTER = re.compile(r"(\w{3,})\1")  # "oduleodule": a small model looping, not a word
MAX_WORD_CHARS = 24


def clean_title(raw: str) -> str | None:
    """`raw` as a title (first line, quotes and Markdown marks stripped, at most 60 characters), or
    None when it does not read as one: fewer than half its words have letters, special tokens, control
    or replacement characters, repeated words or syllables, too many or too long words."""
    lines = [line for line in raw.splitlines() if line.strip()]
    if not lines:
        return None
    line = _STRIP.sub("", lines[0].removeprefix("Title:").removeprefix("title:"))
    words = line.split()
    wordy = sum(1 for word in words if _WORD.search(word))
    if not words or len(words) > MAX_TITLE_WORDS or wordy * 2 < len(words) or "<|" in line:
        return None
    if not line.isprintable() or "\ufffd" in line or _STUTTER.search(line):
        return None
    if max(len(word) for word in words) > MAX_WORD_CHARS or len({w.lower() for w in words}) < len(words):
        return None
    title = " ".join(words)
    if len(title) > conversations.TITLE_FROM_MESSAGE_CHARS:
        return None
    return title


async def _ask(caller: Caller, question: str, answer: str, deps: ChatDeps) -> str | None:
    """The model's raw title, under an admission like a chat turn's: a stream slot and quota, taken
    before llama-server is called; the tokens it spent are recorded as usage."""
    settings, pool = deps.settings, deps.pool
    ctx_size = await pool.slot_context() or settings.llama_ctx_size // settings.llama_parallel
    admission = await admit(caller, PydanticObjectId(), ctx_size, deps)
    spent: list[int] = []
    try:
        if settings.tokenizer_path is None:
            return None
        text = f"Question: {question[:MAX_EXCERPT_CHARS]}\nAnswer: {answer[:MAX_EXCERPT_CHARS]}"
        try:
            prompt = build_prompt(
                tokenizer_at(settings.tokenizer_path), INSTRUCTION, [], text, ctx_size, TITLE_TOKENS
            )
        except PromptTooLong:
            return None
        body = {"prompt": prompt, "n_predict": TITLE_TOKENS, "stop": STOP, "temperature": 0.0}
        parts: list[str] = []
        stream = pool.complete(body)
        try:
            async for item in stream:
                if isinstance(item, Completion):
                    spent[:] = [usage.prompt_tokens(item.timings, len(prompt)), item.tokens_predicted]
                    break
                parts.append(item.text)
                spent[:] = [len(prompt), len(parts)]
        except LlamaUnavailable:
            return None
        finally:
            await stream.aclose()
        return "".join(parts)
    finally:
        await deps.streams.release(admission.lease)
        if spent:
            await asyncio.shield(usage.record(admission.quota, spent[0], spent[1]))
        else:
            await asyncio.shield(usage.release(admission.quota))


async def generate_title(
    caller: Caller, conversation_id: str, deps: ChatDeps, again: bool = False
) -> Conversation:
    """Title one of the caller's conversations from its first question and answer (active branch).

    The model's title when it is clean, else the question's first words. A title the user set
    by hand is kept: only conversations whose title is still automatic are changed. The model is
    asked once per conversation (`again` asks anew); the call takes a stream slot and counts toward
    the daily quota and usage like an answer.
    """
    user = await caller.user()
    conversation = await conversations.get_conversation(user, conversation_id)
    branch = await conversations.active_branch(conversation)
    question = next((m.content for m in branch if m.role == MessageRole.USER), None)
    answer = next((m.content for m in branch if m.role == MessageRole.ASSISTANT and m.content), "")
    if question is None:
        raise UserError("the conversation has no message to title yet", "BAD_USER_INPUT")
    automatic = {conversations.DEFAULT_TITLE, conversations.title_from_message(question)}
    if conversation.title not in automatic and not conversation.title_generated:
        return conversation  # renamed by hand
    if conversation.title_generated and not again:
        return conversation  # titled already
    title = clean_title(await _ask(caller, question, answer, deps) or "") or conversations.title_from_message(
        question
    )
    conversation.title, conversation.title_generated = title, True
    await Conversation.get_pymongo_collection().update_one(
        {"_id": conversation.id}, {"$set": {"title": title, "title_generated": True}}
    )
    return conversation

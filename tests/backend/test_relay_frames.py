"""The relay's framing (`TokenStream`, shared by GraphQL's `chat` and `/v1`): the first token alone and at
once, later tokens that come within FRAME_SECONDS in one frame, the end never waiting for the clock, and
llama-server's real stream relayed whole with its token count."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import httpx
import pytest

from backend.services import llama
from backend.services.llama import Completion, LlamaPool, TokenChunk, TokenStream


async def _tokens(
    texts: list[str], gap: float, produced: list[str]
) -> AsyncGenerator[TokenChunk | Completion, None]:
    """`texts` one token each, `gap` seconds apart (recorded in `produced` as they go), then the end."""
    for text in texts:
        produced.append(text)
        yield TokenChunk(text)
        await asyncio.sleep(gap)
    yield Completion(len(texts), None, "stop")


async def test_first_token_alone_then_fast_tokens_share_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "FRAME_SECONDS", 60.0)  # a frame waits until the answer ends
    produced: list[str] = []
    stream = TokenStream(_tokens([f"t{i} " for i in range(50)], 0.0, produced))
    first = await stream.__anext__()
    assert isinstance(first, TokenChunk) and (first.text, first.tokens) == ("t0 ", 1)
    rest = [item async for item in stream]
    # The 49 tokens after the first come within one frame's wait, and the answer's end ends the wait
    # (were it the clock, this test would take a minute).
    assert [type(item) for item in rest] == [TokenChunk, Completion]
    chunk = rest[0]
    assert isinstance(chunk, TokenChunk)
    assert (chunk.text, chunk.tokens) == ("".join(f"t{i} " for i in range(1, 50)), 49)


async def test_tokens_slower_than_a_frame_go_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "FRAME_SECONDS", 0.001)
    produced: list[str] = []
    stream = TokenStream(_tokens(["a", "b", "c", "d"], 0.05, produced))
    seen = []
    async for item in stream:
        if isinstance(item, TokenChunk):
            seen.append((item.text, item.tokens, len(produced)))
    # Each token reached the reader before the next one was produced: none waited for company.
    assert seen == [("a", 1, 1), ("b", 1, 2), ("c", 1, 3), ("d", 1, 4)]


async def _two_then_a_pause(produced: list[str]) -> AsyncGenerator[TokenChunk | Completion, None]:
    """Two tokens, then nothing for longer than any test runs (an answer still being generated)."""
    for text in ("a", "b"):
        produced.append(text)
        yield TokenChunk(text)
        await asyncio.sleep(0)  # the reader takes "a" alone, as the first token always goes at once
    await asyncio.sleep(600)
    yield Completion(2, None, "stop")


async def test_interrupt_ends_a_frames_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama, "FRAME_SECONDS", 60.0)
    produced: list[str] = []
    stream = TokenStream(_two_then_a_pause(produced))
    assert isinstance(await stream.__anext__(), TokenChunk)
    waiting = asyncio.ensure_future(stream.__anext__())  # holds "b" for the frame
    while len(produced) < 2:
        await asyncio.sleep(0.005)
    await stream.interrupt()
    chunk = await waiting
    assert isinstance(chunk, TokenChunk) and (chunk.text, chunk.tokens) == ("b", 1)
    with pytest.raises(llama.Interrupted):
        await stream.__anext__()


async def test_a_real_answer_is_relayed_whole(llama_server: str) -> None:
    body = {"prompt": [1, 2, 3], "n_predict": 40, "temperature": 0}
    whole = httpx.post(f"{llama_server}/completion", json=body, timeout=60).json()
    pool = LlamaPool([llama_server])
    try:
        items = [item async for item in pool.complete(body)]
    finally:
        await pool.close()
    done = items[-1]
    chunks = [item for item in items[:-1] if isinstance(item, TokenChunk)]
    assert isinstance(done, Completion) and len(chunks) == len(items) - 1
    assert (done.tokens_predicted, done.finish_reason) == (40, "length")
    assert "".join(chunk.text for chunk in chunks) == whole["content"]
    # one per event with text (a token that ends inside a character has none), however they were framed
    assert sum(chunk.tokens for chunk in chunks) <= 40

"""Best-fit SFT packing: whole conversations, checked token by token; padding; positions."""

from __future__ import annotations

import json
import random
from pathlib import Path

from common.chat import Message, encode_chat, load_tokenizer
from trainer.titan.packing import best_fit, pack_conversations, split_conversations

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "def",
    "add",
    "return",
    "sum",
    "json",
    "dumps",
]


def conversations(n: int) -> list[list[Message]]:
    """Conversations of 1-3 exchanges with answers of random length (seeded)."""
    rng = random.Random(0)
    out = []
    for i in range(n):
        messages: list[Message] = []
        for _ in range(rng.randint(1, 3)):
            messages.append(
                {"role": "user", "content": f"question {i}: " + " ".join(rng.choices(WORDS, k=3))}
            )
            messages.append(
                {"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(1, 40)))}
            )
        out.append(messages)
    return out


def test_best_fit_never_cuts_a_conversation_token_by_token(tmp_path: Path, tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    convs = conversations(120)
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in convs))
    seq_len = 96
    rows = pack_conversations(path, tokenizer, seq_len)
    train = split_conversations(convs, "train")
    encodings = dict(enumerate(encode_chat(tokenizer, c) for c in train))  # rows name train-split indices
    too_long = {i for i, e in encodings.items() if len(e.ids) > seq_len + 1}
    assert too_long and rows.dropped == len(too_long)  # this data has some; they are dropped, not cut
    pad = tokenizer.token_to_id("<|pad|>")
    seen: list[int] = []
    for r in range(len(rows.ids)):
        ids, learn, pos, conv = rows.ids[r], rows.learn[r], rows.positions[r], rows.conversation[r]
        t = 0
        while t < seq_len + 1 and conv[t] >= 0:
            c = int(conv[t])
            expected = encodings[c]
            n = len(expected.ids)
            # The whole conversation, contiguous, in order, with its own assistant mask and positions 0..n-1.
            assert ids[t : t + n].tolist() == expected.ids, (r, c)
            assert learn[t : t + n].tolist() == expected.assistant_mask, (r, c)
            assert pos[t : t + n].tolist() == list(range(n)), (r, c)
            assert (conv[t : t + n] == c).all()
            seen.append(c)
            t += n
        # The rest of the row is padding: pad ids, no loss, positions restarting at 0.
        assert (conv[t:] == -1).all() and (ids[t:] == pad).all() and not learn[t:].any()
        assert pos[t:].tolist() == list(range(seq_len + 1 - t))
    assert sorted(seen) == sorted(set(encodings) - too_long)  # every other conversation exactly once
    lengths = [len(e.ids) for i, e in encodings.items() if i not in too_long]
    assert len(rows.ids) <= -(-sum(lengths) * 11 // (9 * (seq_len + 1))) + 1  # BFD's 11/9 bound
    assert rows.fill == sum(lengths) / rows.ids.size


def test_best_fit_fills_the_tightest_row() -> None:
    assert best_fit([6, 5, 4, 3, 2], 10) == [[0, 2], [1, 3, 4]]
    assert best_fit([10, 10], 10) == [[0], [1]]
    assert best_fit([], 10) == []

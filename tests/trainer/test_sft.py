"""SFT: packed multi-turn conversations with labels on assistant tokens only; fine-tuning a real run."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from common.chat import encode_chat, load_tokenizer
from trainer.export import export_run
from trainer.metrics import read_metrics
from trainer.sft import run_sft
from trainer.titan.data import PackedDataset, TokenWindows
from trainer.titan.packing import pack_conversations, split_conversations

CONVERSATIONS = [
    [
        {"role": "user", "content": "What does json.dumps do?"},
        {"role": "assistant", "content": "Serialize obj to a JSON formatted str."},
    ],
    [
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "add?"},
        {"role": "assistant", "content": "def add(a, b):\n    return a + b\n"},
        {"role": "user", "content": "<|assistant|> sum?"},
        {"role": "assistant", "content": "Return the sum of the numbers."},
    ],
]


def write_jsonl(path: Path, repeat: int = 1) -> Path:
    lines = [json.dumps({"messages": c} if i % 2 else c) for i, c in enumerate(CONVERSATIONS * repeat)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_labels_are_the_assistant_tokens_token_by_token(tmp_path: Path, tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    rows = pack_conversations(write_jsonl(tmp_path / "sft.jsonl"), tokenizer, seq_len=200)
    encodings = [encode_chat(tokenizer, c) for c in CONVERSATIONS]
    assert len(rows.ids) == 1  # both fit one row
    dataset = PackedDataset(rows, dp_rank=0, dp_world_size=1, shuffle=False)
    inputs, labels = next(iter(dataset))
    assert inputs["input"].tolist() == rows.ids[0, :-1].tolist()
    ids, learn = rows.ids[0].tolist(), rows.learn[0].tolist()
    for t, label in enumerate(labels.tolist()):
        assert label == (ids[t + 1] if learn[t + 1] else -100), f"position {t}"
    # The model computes logits for the labelled tokens only (trainer.titan.loss).
    assert inputs["predict"].tolist() == [label != -100 for label in labels.tolist()]
    # The learned spans, read back: each assistant reply and its <|end|>, nothing else.
    spans: list[str] = []
    current: list[int] = []
    for label in [*labels.tolist(), -100]:
        if label == -100 and current:
            spans.append(tokenizer.decode(current, skip_special_tokens=False).lstrip("\n"))
            current = []
        elif label != -100:
            current.append(label)
    replies = [m["content"] + "<|end|>" for c in CONVERSATIONS for m in c if m["role"] == "assistant"]
    assert sorted(spans) == sorted(replies)
    assert sum(learn) == sum(sum(e.assistant_mask) for e in encodings)


def test_every_twentieth_conversation_is_held_out() -> None:
    conversations = [[{"role": "user", "content": str(i)}] for i in range(45)]
    val = split_conversations(conversations, "val")
    train = split_conversations(conversations, "train")
    assert [c[0]["content"] for c in val] == ["19", "39"]
    assert len(train) == 43 and conversations[19] not in train
    assert split_conversations(conversations[:19], "val") == []
    assert split_conversations(conversations[:19], "train") == conversations[:19]


def test_windows_split_across_ranks_and_resume(tmp_path: Path) -> None:
    tokens = np.arange(1000, dtype=np.int64)
    ranks = [TokenWindows(tokens, 9, rank, 2, seed=3) for rank in (0, 1)]
    starts = [[int(x["input"][0]) for x, _ in islice(r, r.per_rank)] for r in ranks]
    assert len(starts[0]) == len(starts[1]) == 55
    # 111 windows of 10 tokens: 55 per rank, disjoint; the odd one out waits for another epoch.
    assert len(set(starts[0] + starts[1])) == 110
    assert set(starts[0] + starts[1]) < set(range(0, 999, 9))
    first = TokenWindows(tokens, 9, 0, 2, seed=3)
    iterator = iter(first)
    for _ in range(60):  # into the second epoch
        next(iterator)
    state = first.state_dict()
    assert state == {"epoch": 1, "position": 5}
    resumed = TokenWindows(tokens, 9, 0, 2, seed=3)
    resumed.load_state_dict(state)
    assert [int(next(iter(resumed))[0]["input"][0])] == [int(next(iterator)[0]["input"][0])]


def test_bad_conversation_names_the_line(tmp_path: Path, tokenizer_dir: Path) -> None:
    path = tmp_path / "sft.jsonl"
    path.write_text(
        json.dumps(CONVERSATIONS[0]) + "\n" + json.dumps([{"role": "bot", "content": "x"}]) + "\n"
    )
    with pytest.raises(ValueError, match=r"sft.jsonl:2: bad conversation: message 0: role must be one of"):
        pack_conversations(path, load_tokenizer(tokenizer_dir), seq_len=64)


@pytest.mark.slow
def test_sft_fine_tunes_the_base_run(pretrain_run: Path, tmp_path: Path) -> None:
    out = run_sft(
        pretrain_run,
        write_jsonl(tmp_path / "sft.jsonl", repeat=20),
        tmp_path / "sft",
        steps=2,
        quiet=True,
        seq_len=128,  # the longer conversation has 77 tokens: it fits a row whole
    )
    run = json.loads((out / "run.json").read_text())
    assert run["kind"] == "sft" and run["base_checkpoint"] == str(pretrain_run / "checkpoint" / "step-6")
    assert run["train"]["lr"] == 1e-3 and run["train"]["steps"] == 2  # a tenth of the base run's 1e-2
    assert run["lr_rule"] == "0.1 x the pretraining peak 1.00e-02" and run["world_size"] == 1
    assert run["train"]["checkpoint_every"] == 2  # an SFT run is never resumed: only its last step
    # 38 training conversations best-fit into rows of 129 tokens: none dropped, rows mostly full.
    assert run["packing"]["dropped_too_long"] == 0 and run["packing"]["fill"] > 0.7
    log = (out / "train.log").read_text()
    assert f"Loading the checkpoint from {pretrain_run}/checkpoint/step-6" in log
    assert "attention backend: sdpa with a dense document mask" in log  # CPU: FlexAttention has no backward
    records = read_metrics(out / "metrics.jsonl")
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 2 and losses[0] < 5.0  # an untrained micro model starts near ln(320) = 5.77
    # 40 conversations: the 20th and 40th are held out; validation at steps 1 and 2 (eval_every = 2 // 4 -> 1).
    assert run["validation"] and run["sample_prompts"] == ["add?", "add?"]
    assert [r["step"] for r in records if "val_loss" in r] == [1, 2]
    samples = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert [[s["prompt"] for s in row["samples"]] for row in samples] == [["add?", "add?"]] * 2
    lineage = json.loads((export_run(out, tmp_path / "export") / "lineage.json").read_text())
    assert (lineage["kind"], lineage["base_run"], lineage["steps"]) == ("sft", "micro", 2)

"""`build_sft`: grounded, deterministic Q/A from docstrings; JSONL input validated line by line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from common.chat import validate_messages
from trainer.data.sft import build_sft
from trainer.data.sources import SourceError


def read_conversations(out: Path) -> list[list[dict[str, str]]]:
    return [json.loads(line)["messages"] for line in (out / "sft.jsonl").read_text().splitlines()]


def test_python_qa_is_grounded_multi_turn_and_deterministic(tmp_path: Path) -> None:
    report = build_sft("local:python-qa", tmp_path / "a", seed=3)
    conversations = read_conversations(tmp_path / "a")
    assert report["conversations"] == len(conversations) > 300
    for messages in conversations:
        validate_messages(messages)
        assert messages[-1]["role"] == "assistant"
    assert sum(len(m) >= 4 for m in conversations) > 50  # multi-turn: question, answer, follow-up, answer
    about_dumps = [
        m for m in conversations if any("json.dumps" in x["content"] for x in m if x["role"] == "user")
    ]
    assert len(about_dumps) == 1
    answer = next(x["content"] for x in about_dumps[0] if x["role"] == "assistant")
    assert answer == " ".join(str(inspect.getdoc(json.dumps)).split("\n\n")[0].split())
    build_sft("local:python-qa", tmp_path / "b", seed=3)
    build_sft("local:python-qa", tmp_path / "c", seed=4)
    assert (tmp_path / "a" / "sft.jsonl").read_bytes() == (tmp_path / "b" / "sft.jsonl").read_bytes()
    assert (tmp_path / "a" / "sft.jsonl").read_bytes() != (tmp_path / "c" / "sft.jsonl").read_bytes()


def test_jsonl_source_skips_bad_lines_with_line_numbers(tmp_path: Path) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    lines = [
        json.dumps(good),
        "{broken",
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
        json.dumps(good["messages"]),  # a bare list of messages is accepted too
    ]
    source = tmp_path / "chats.jsonl"
    source.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe\n")
    report = build_sft(str(source), tmp_path / "out")
    assert report["conversations"] == 2
    assert report["skipped_lines"] == {
        "malformed_json": [2, 6],
        "unknown_role": [3],
        "no_assistant_turn": [4],
    }
    assert read_conversations(tmp_path / "out") == [good["messages"], good["messages"]]


def test_sft_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        build_sft(str(tmp_path / "missing.jsonl"), tmp_path / "out")
    with pytest.raises(SourceError, match="unknown SFT source 'local:nope'"):
        build_sft("local:nope", tmp_path / "out")
    (tmp_path / "bad.jsonl").write_text("{broken\n")
    with pytest.raises(SourceError, match="has no valid conversations"):
        build_sft(str(tmp_path / "bad.jsonl"), tmp_path / "out")
    assert not (tmp_path / "out" / "sft.jsonl").exists()

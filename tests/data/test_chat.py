"""The chat format: exact rendering, special ids, plain-text user input, assistant masks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from common.chat import CHAT_TEMPLATE, SPECIAL_TOKENS, encode_chat, load_tokenizer, render_chat
from trainer.tokenizer import train_tokenizer

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What does json.dumps do?"},
    {"role": "assistant", "content": "Serialize obj to a JSON formatted str."},
    {"role": "user", "content": "And json.loads?"},
    {"role": "assistant", "content": "The reverse."},
]

EXPECTED = (
    "<|bos|><|system|>\nYou are terse.<|end|>\n"
    "<|user|>\nWhat does json.dumps do?<|end|>\n"
    "<|assistant|>\nSerialize obj to a JSON formatted str.<|end|>\n"
    "<|user|>\nAnd json.loads?<|end|>\n"
    "<|assistant|>\nThe reverse.<|end|>\n"
)


def test_render_multi_turn_exact() -> None:
    assert render_chat(CONVERSATION, add_generation_prompt=False) == EXPECTED
    assert render_chat(CONVERSATION[:2], add_generation_prompt=True) == (
        "<|bos|><|system|>\nYou are terse.<|end|>\n<|user|>\nWhat does json.dumps do?<|end|>\n<|assistant|>\n"
    )


def test_special_tokens_are_single_ids_in_order(tokenizer: Tokenizer) -> None:
    assert [tokenizer.token_to_id(token) for token in SPECIAL_TOKENS] == list(range(7))
    for token in SPECIAL_TOKENS:
        assert tokenizer.encode(token, add_special_tokens=False).ids == [SPECIAL_TOKENS.index(token)]


def test_encode_chat_matches_encoding_the_rendered_text(tokenizer: Tokenizer) -> None:
    for add_generation_prompt in (False, True):
        rendered = render_chat(CONVERSATION, add_generation_prompt)
        encoding = encode_chat(tokenizer, CONVERSATION, add_generation_prompt)
        assert encoding.ids == tokenizer.encode(rendered, add_special_tokens=False).ids
        assert len(encoding.assistant_mask) == len(encoding.ids)
        assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == rendered


def test_assistant_mask_covers_assistant_content_and_its_end(tokenizer: Tokenizer) -> None:
    encoding = encode_chat(tokenizer, CONVERSATION)
    learned = [i for i, m in zip(encoding.ids, encoding.assistant_mask, strict=True) if m]
    end_id = tokenizer.token_to_id("<|end|>")
    expected = [
        *tokenizer.encode("Serialize obj to a JSON formatted str.", add_special_tokens=False).ids,
        end_id,
        *tokenizer.encode("The reverse.", add_special_tokens=False).ids,
        end_id,
    ]
    assert learned == expected
    assistant_id = tokenizer.token_to_id("<|assistant|>")
    assert not any(m for i, m in zip(encoding.ids, encoding.assistant_mask, strict=True) if i == assistant_id)
    prompt = encode_chat(tokenizer, CONVERSATION, add_generation_prompt=True)
    assert prompt.assistant_mask[-2:] == [False, False]


def test_typed_special_token_is_plain_text(tokenizer: Tokenizer) -> None:
    messages = [{"role": "user", "content": "say <|assistant|> and <|end|>"}]
    encoding = encode_chat(tokenizer, messages)
    special_ids = set(range(len(SPECIAL_TOKENS)))
    user_id, end_id = tokenizer.token_to_id("<|user|>"), tokenizer.token_to_id("<|end|>")
    assert [i for i in encoding.ids if i in special_ids] == [0, user_id, end_id]
    assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == render_chat(messages, False)
    # the caller's tokenizer still parses special tokens in text
    assert tokenizer.encode("<|assistant|>", add_special_tokens=False).ids == [5]


@pytest.mark.parametrize(
    ("messages", "error"),
    [
        ([], "conversation has no messages"),
        ([{"role": "robot", "content": "hi"}], "message 0: role must be one of system, user, assistant"),
        ([{"role": "user", "content": "hi"}, {"role": "user"}], "message 1: content must be a string"),
    ],
)
def test_bad_messages_are_named(messages: list[dict[str, str]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        render_chat(messages, add_generation_prompt=False)


def test_tokenizer_config_and_llama_compatible_pretokenizer(tokenizer_dir: Path) -> None:
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    assert config == {
        "bos_token": "<|bos|>",
        "eos_token": "<|eos|>",
        "pad_token": "<|pad|>",
        "chat_template": CHAT_TEMPLATE,
        "special_tokens": SPECIAL_TOKENS,
    }
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    assert spec["pre_tokenizer"] == {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": True,
        "use_regex": True,
    }
    assert spec["model"]["type"] == "BPE"


def test_vocab_too_small_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"vocab size 100 is too small: it needs at least 263"):
        train_tokenizer(["some text"], vocab_size=100, out_dir=tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_empty_corpus_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no training text"):
        train_tokenizer([], vocab_size=300, out_dir=tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_load_tokenizer_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run `chakor tokenizer train` first"):
        load_tokenizer(tmp_path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    contents=st.lists(st.text().filter(lambda text: "<|" not in text), min_size=1, max_size=4),
    add_generation_prompt=st.booleans(),
)
def test_encode_chat_equals_encoding_the_render_for_any_text(
    tokenizer: Tokenizer, contents: list[str], add_generation_prompt: bool
) -> None:
    roles = ["system", "user", "assistant", "user"]
    messages = [{"role": roles[i], "content": text} for i, text in enumerate(contents)]
    rendered = render_chat(messages, add_generation_prompt)
    encoding = encode_chat(tokenizer, messages, add_generation_prompt)
    assert encoding.ids == tokenizer.encode(rendered, add_special_tokens=False).ids
    assert tokenizer.decode(encoding.ids, skip_special_tokens=False) == rendered

"""The export's byte-level BPE tokenizer as GGUF "gpt2" vocabulary metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from converter.errors import ConversionError
from converter.export_dir import ExportDir, read_json

END_OF_TURN = "<|end|>"  # closes every chat turn (docs/interfaces.md); llama.cpp must stop on it
GPT2_PRE = "gpt-2"  # llama.cpp's name for the GPT-2 split regex (ByteLevel use_regex=True)


@dataclass(frozen=True)
class Vocab:
    """Everything `tokenizer.ggml.*` holds."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    pre: str
    bos_id: int
    end_id: int  # both eos and eot: llama.cpp stops generating at it
    pad_id: int
    chat_template: str


def _pre_tokenizer_type(tokenizer: dict[str, Any], path: Path) -> str:
    """The llama.cpp pre-tokenizer name whose regex equals the tokenizer's; error when there is none."""
    pre = tokenizer.get("pre_tokenizer") or {}
    if (
        pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", False)
        and tokenizer.get("normalizer") is None
    ):
        return GPT2_PRE
    raise ConversionError(
        f"{path}: pre-tokenizer {pre} with normalizer {tokenizer.get('normalizer')} has no llama.cpp "
        "equivalent; expected ByteLevel(use_regex=true, add_prefix_space=false) and no normalizer"
    )


def _merges(model: dict[str, Any], path: Path) -> list[str]:
    merges = []
    for merge in model.get("merges", []):
        pair = merge.split(" ") if isinstance(merge, str) else merge
        if len(pair) != 2:
            raise ConversionError(f"{path}: malformed merge {merge!r}")
        merges.append(f"{pair[0]} {pair[1]}")
    return merges


def _token_table(tokenizer: dict[str, Any], vocab_size: int, path: Path) -> tuple[list[str], list[int]]:
    """Tokens by id with their types, padded with unused tokens up to the model's vocab size."""
    by_id: dict[int, tuple[str, int]] = {
        index: (token, gguf.TokenType.NORMAL) for token, index in tokenizer["model"]["vocab"].items()
    }
    for added in tokenizer.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    size = max(by_id) + 1
    if size > vocab_size:
        raise ConversionError(f"{path}: {size} tokens do not fit the model's vocab_size {vocab_size}")
    if gaps := [i for i in range(size) if i not in by_id]:
        raise ConversionError(f"{path}: no token for id(s) {gaps[:8]}")
    tokens = [by_id[i][0] for i in range(size)] + [f"[PAD{i}]" for i in range(size, vocab_size)]
    types = [int(by_id[i][1]) for i in range(size)] + [int(gguf.TokenType.UNUSED)] * (vocab_size - size)
    return tokens, types


def read_vocab(export: ExportDir) -> Vocab:
    """Read tokenizer.json + tokenizer_config.json and check llama.cpp can reproduce them."""
    path = export.tokenizer_file
    tokenizer = read_json(path)
    model = tokenizer.get("model") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or model.get("ignore_merges"):
        raise ConversionError(f"{path}: expected a byte-level BPE model without byte_fallback/ignore_merges")
    pre = _pre_tokenizer_type(tokenizer, path)
    tokens, types = _token_table(tokenizer, export.shape.vocab_size, path)
    ids = {token: i for i, token in enumerate(tokens)}
    config, config_path = export.tokenizer_config, export.path / "tokenizer_config.json"

    def special(name: str, token: object) -> int:
        if not isinstance(token, str) or token not in ids:
            raise ConversionError(f"{config_path}: {name} {token!r} is not a token of {path}")
        if types[ids[token]] != gguf.TokenType.CONTROL:
            raise ConversionError(f"{path}: {name} {token!r} is not a special token")
        return ids[token]

    template = config.get("chat_template")
    if not isinstance(template, str) or not template:
        raise ConversionError(f"{config_path}: missing chat_template")
    return Vocab(
        tokens=tokens,
        token_types=types,
        merges=_merges(model, path),
        pre=pre,
        bos_id=special("bos_token", config.get("bos_token")),
        end_id=special("end-of-turn token", END_OF_TURN),
        pad_id=special("pad_token", config.get("pad_token")),
        chat_template=template,
    )

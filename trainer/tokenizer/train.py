"""Train Chakor's byte-level BPE tokenizer and write the tokenizer directory (docs/interfaces.md)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from common.chat import BOS, CHAT_TEMPLATE, EOS, PAD, SPECIAL_TOKENS

BYTE_ALPHABET_SIZE = 256
MIN_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(SPECIAL_TOKENS)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def tokenizer_config() -> dict[str, object]:
    """The contents of `tokenizer_config.json`."""
    return {
        "bos_token": BOS,
        "eos_token": EOS,
        "pad_token": PAD,
        "chat_template": CHAT_TEMPLATE,
        "special_tokens": SPECIAL_TOKENS,
    }


def new_tokenizer() -> Tokenizer:
    """An untrained byte-level BPE tokenizer.

    Pre-tokenizer: `ByteLevel(add_prefix_space=False, use_regex=True)`, i.e. exactly the GPT-2 split
    regex, which llama.cpp's GGUF loader knows as pre-tokenizer type "gpt-2" (tokenizer model "gpt2").
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> Path:
    """Train a byte-level BPE on `texts` and write `out_dir/tokenizer.json` + `tokenizer_config.json`.

    Special tokens take ids 0..6 in SPECIAL_TOKENS order, then the 256 byte tokens, then merges.
    Files are written to a temporary directory and moved into place, so a failure leaves nothing
    half-written. Returns `out_dir`.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab size {vocab_size} is too small: it needs at least {MIN_VOCAB_SIZE} "
            f"({BYTE_ALPHABET_SIZE} byte tokens + {len(SPECIAL_TOKENS)} special tokens)"
        )
    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    seen = 0

    def counted(items: Iterable[str]) -> Iterable[str]:
        nonlocal seen
        for text in items:
            seen += 1
            yield text

    tokenizer.train_from_iterator(counted(texts), trainer=trainer)
    if seen == 0:
        raise ValueError("no training text: the corpus is empty")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".tmp-tokenizer-") as tmp:
        tokenizer.save(str(Path(tmp) / "tokenizer.json"))
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n")
        for name in TOKENIZER_FILES:
            os.replace(Path(tmp) / name, out_dir / name)
    return out_dir


def tokenizer_sha256(tokenizer_dir: Path) -> str:
    """SHA-256 of `tokenizer.json` (recorded in data manifests and model lineage)."""
    return hashlib.sha256((Path(tokenizer_dir) / "tokenizer.json").read_bytes()).hexdigest()

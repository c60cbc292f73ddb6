"""The perplexity text comes from the data directory's val split, decoded with the export's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from common.chat import load_tokenizer
from converter.errors import ConversionError
from converter.valdata import validation_text
from trainer.tokenizer.train import tokenizer_sha256

DOCS = ["The dog sleeps in the sun.", "東京は日本の首都です。\n\tdef add(a, b):"]


def write_data(data_dir: Path, tokenizer_dir: Path, digest: str, docs: list[str] = DOCS) -> None:
    """A data directory in the manifest format with only a val split."""
    tokenizer = load_tokenizer(tokenizer_dir)
    ids = [t for doc in docs for t in [0, *tokenizer.encode(doc, add_special_tokens=False).ids]]
    data_dir.mkdir()
    np.asarray(ids, dtype="<u2").tofile(data_dir / "val-00000.bin")
    manifest = {"dtype": "uint16", "splits": {"val": {"shards": ["val-00000.bin"], "tokens": len(ids)}}}
    (data_dir / "manifest.json").write_text(json.dumps({**manifest, "tokenizer_sha256": digest}))


def test_val_split_decodes_to_documents(tmp_path: Path, tokenizer_dir: Path) -> None:
    digest = tokenizer_sha256(tokenizer_dir)
    write_data(tmp_path / "data", tokenizer_dir, digest)
    tokenizer = load_tokenizer(tokenizer_dir)
    assert validation_text(tmp_path / "data", tokenizer, digest, 10_000) == "\n".join(DOCS)
    first_doc_tokens = 1 + len(tokenizer.encode(DOCS[0], add_special_tokens=False).ids)
    assert validation_text(tmp_path / "data", tokenizer, digest, first_doc_tokens) == DOCS[0]


def test_other_tokenizer_is_refused(tmp_path: Path, tokenizer_dir: Path) -> None:
    write_data(tmp_path / "data", tokenizer_dir, "0" * 64)
    with pytest.raises(ConversionError, match="data was tokenized with another tokenizer"):
        validation_text(
            tmp_path / "data", load_tokenizer(tokenizer_dir), tokenizer_sha256(tokenizer_dir), 100
        )

"""`tokenize`: shards decode back to the prepared text, up-sampling, determinism, resume, count-tokens."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from common.chat import load_tokenizer
from tests.data.corpus import good_doc
from trainer.data.prepare import PrepareConfig, iter_documents, prepare
from trainer.data.shards import TokenizeConfig, count_tokens, read_shard, tokenize
from trainer.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer_dir(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = (doc["text"] for doc in iter_documents(prepared))
    return train_tokenizer(texts, vocab_size=320, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tokenized(prepared: Path, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    tokenize(TokenizeConfig(prepared, tokenizer_dir, out, shard_tokens=1500, val_fraction=0.2))
    return out


def decoded_documents(shards_dir: Path, split: str, tokenizer: Tokenizer) -> list[str]:
    manifest = json.loads((shards_dir / "manifest.json").read_text())
    ids = np.concatenate(
        [read_shard(shards_dir / n, manifest["dtype"]) for n in manifest["splits"][split]["shards"]]
    )
    starts = np.flatnonzero(ids == manifest["bos_id"])
    assert starts[0] == 0  # every document starts with <|bos|>, nothing precedes the first
    return [
        tokenizer.decode(doc[1:].tolist(), skip_special_tokens=False) for doc in np.split(ids, starts[1:])
    ]


def test_manifest_matches_the_interface(tokenized: Path, tokenizer_dir: Path) -> None:
    manifest = json.loads((tokenized / "manifest.json").read_text())
    assert {"dtype", "splits", "tokenizer_sha256", "sources", "stats", "seed"} <= manifest.keys()
    assert manifest["dtype"] == "uint16"
    assert manifest["seed"] == 7
    train, val = manifest["splits"]["train"], manifest["splits"]["val"]
    assert len(train["shards"]) > 1
    assert train["shards"][0] == "train-00000.bin" and val["shards"][0] == "val-00000.bin"
    for split in ("train", "val"):
        sizes = sum((tokenized / n).stat().st_size for n in manifest["splits"][split]["shards"])
        assert sizes == 2 * manifest["splits"][split]["tokens"]
    assert count_tokens(tokenized) == {"train": train["tokens"], "val": val["tokens"]}


def test_shards_decode_to_the_prepared_text_with_upsampling(
    tokenized: Path, prepared: Path, tokenizer_dir: Path
) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    docs = {doc["text"]: doc for doc in iter_documents(prepared)}
    train = Counter(decoded_documents(tokenized, "train", tokenizer))
    val = Counter(decoded_documents(tokenized, "val", tokenizer))
    assert set(train) | set(val) == set(docs)
    assert not set(train) & set(val)
    assert set(val.values()) == {1}
    manifest = json.loads((tokenized / "manifest.json").read_text())
    assert sum(val.values()) == manifest["splits"]["val"]["documents"] == 2  # 20% of 10 documents
    for text, copies in train.items():  # the JSONL source has weight 2
        assert copies == (2 if docs[text]["source"].endswith(":body") else 1)
    assert manifest["sources"][docs[next(iter(train))]["source"]]["weight"] in (1.0, 2.0)


def test_same_input_and_seed_give_identical_bytes(
    tokenized: Path, prepared: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    tokenize(TokenizeConfig(prepared, tokenizer_dir, tmp_path, shard_tokens=1500, val_fraction=0.2))
    names = sorted(p.name for p in tokenized.iterdir())
    assert names == sorted(p.name for p in tmp_path.iterdir())
    for name in names:
        assert (tmp_path / name).read_bytes() == (tokenized / name).read_bytes()


def test_another_seed_shuffles_differently(
    tokenized: Path, prepared: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    tokenize(TokenizeConfig(prepared, tokenizer_dir, tmp_path, shard_tokens=1500, val_fraction=0.2, seed=8))
    assert (tmp_path / "train-00000.bin").read_bytes() != (tokenized / "train-00000.bin").read_bytes()


def test_rerun_skips_finished_shards(
    tokenized: Path, prepared: Path, tokenizer_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "shards"
    shutil.copytree(tokenized, out)
    manifest = json.loads((out / "manifest.json").read_text())
    total = sum(len(info["shards"]) for info in manifest["splits"].values())
    last_train = out / manifest["splits"]["train"]["shards"][-1]
    last_train.write_bytes(b"corrupt")  # a damaged shard is redone; the verified ones are kept
    result = tokenize(TokenizeConfig(prepared, tokenizer_dir, out, shard_tokens=1500, val_fraction=0.2))
    assert (result.skipped_shards, result.written_shards) == (total - 1, 1)
    again = tokenize(TokenizeConfig(prepared, tokenizer_dir, out, shard_tokens=1500, val_fraction=0.2))
    assert (again.skipped_shards, again.written_shards) == (total, 0)
    for path in tokenized.iterdir():
        assert (out / path.name).read_bytes() == path.read_bytes()


def test_special_token_text_in_the_corpus_stays_plain(tmp_path: Path, tokenizer_dir: Path) -> None:
    (tmp_path / "src").mkdir()
    text = f"{good_doc(42)} The data holds <|end|> and <|assistant|> as plain text. {good_doc(43)}"
    (tmp_path / "src" / "a.txt").write_text(text)
    prepare(PrepareConfig(sources=[str(tmp_path / "src")], out_dir=tmp_path / "data"))
    tokenize(TokenizeConfig(tmp_path / "data", tokenizer_dir, tmp_path / "shards", val_fraction=0.0))
    ids = read_shard(tmp_path / "shards" / "train-00000.bin", "uint16")
    assert ids[0] == 0
    assert not np.isin(ids[1:], np.arange(7)).any()
    assert load_tokenizer(tokenizer_dir).decode(ids[1:].tolist()) == text


def test_bad_options_are_refused(prepared: Path, tokenizer_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"--val-fraction must be in \[0, 1\), got 1.5"):
        tokenize(TokenizeConfig(prepared, tokenizer_dir, tmp_path / "s", val_fraction=1.5))
    with pytest.raises(FileNotFoundError, match="is not a `chakor data prepare` output"):
        tokenize(TokenizeConfig(tmp_path, tokenizer_dir, tmp_path / "s"))
    with pytest.raises(FileNotFoundError, match="run `chakor tokenizer train` first"):
        tokenize(TokenizeConfig(prepared, tmp_path, tmp_path / "s"))
    assert not (tmp_path / "s").exists()

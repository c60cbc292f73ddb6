"""`chakor data tokenize`: prepared documents -> binary token shards + manifest.json (docs/interfaces.md).

- Every document becomes `<|bos|>` + its tokens (text encoded with special-token matching off, so a
  literal "<|end|>" in the corpus stays plain text). Shards close at document boundaries once they
  hold `shard_tokens` tokens; files are raw little-endian uint16 (uint32 when the vocab needs it).
- Split: `round(val_fraction * documents)` documents (at least one when val_fraction > 0, never all)
  go to `val`: those whose seeded hash of the id is lowest. Val documents appear once, in id order.
- Mixing weights (recorded by `prepare`) up-sample train: weight 2.5 gives every document 2 copies
  plus a third with probability 0.5; the copies are then shuffled with the seed.
- Re-runs with the same input, tokenizer and options skip shards already written and verified.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from trainer.data.prepare import REPORT_NAME, iter_documents, load_report
from trainer.tokenizer.chat import BOS, load_tokenizer, plain_text_tokenizer, special_id
from trainer.tokenizer.train import tokenizer_sha256

MANIFEST_NAME = "manifest.json"
PROGRESS_NAME = ".progress.json"
SPLITS = ("train", "val")
ENCODE_BATCH = 256


@dataclass
class TokenizeConfig:
    """Options of `chakor data tokenize`; `seed` None means the seed `prepare` recorded."""

    data_dir: Path
    tokenizer_dir: Path
    out_dir: Path
    shard_tokens: int = 1_000_000
    val_fraction: float = 0.05
    seed: int | None = None


@dataclass(frozen=True)
class PlannedDoc:
    """One document occurrence in a split's order."""

    id: str
    text: str
    source: str


def _unit_hash(seed: int, doc_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def plan_splits(
    docs: list[dict[str, Any]], weights: dict[str, float], val_fraction: float, seed: int
) -> dict[str, list[PlannedDoc]]:
    """The ordered document occurrences of each split (see the module docstring)."""
    ranked = sorted(docs, key=lambda doc: _unit_hash(seed, doc["id"]))
    n_val = min(max(1, round(val_fraction * len(docs))), len(docs) - 1) if val_fraction > 0 else 0
    val_ids = {doc["id"] for doc in ranked[:n_val]}
    rng = random.Random(seed)
    train: list[PlannedDoc] = []
    val: list[PlannedDoc] = []
    for doc in docs:
        planned = PlannedDoc(doc["id"], doc["text"], doc["source"])
        if doc["id"] in val_ids:
            val.append(planned)
            continue
        weight = weights.get(doc["source"], 1.0)
        copies = math.floor(weight) + (rng.random() < weight - math.floor(weight))
        train.extend([planned] * copies)
    rng.shuffle(train)
    return {"train": train, "val": sorted(val, key=lambda d: d.id)}


def _fingerprint(data_dir: Path, tokenizer_hash: str, config: TokenizeConfig, seed: int) -> str:
    digest = hashlib.sha256()
    for path in sorted([data_dir / REPORT_NAME, *data_dir.glob("docs-*.jsonl")]):
        digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    digest.update(json.dumps([tokenizer_hash, config.shard_tokens, config.val_fraction, seed]).encode())
    return digest.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class TokenizeResult:
    """The manifest written, and how many shards were written now vs. kept from a previous run."""

    manifest: dict[str, Any]
    written_shards: int
    skipped_shards: int


class ShardWriter:
    """Cuts one split's token stream into shards, keeping the shards a previous run already finished."""

    def __init__(self, out_dir: Path, split: str, dtype: np.dtype, done: list[dict[str, Any]]) -> None:
        self.out_dir, self.split, self.dtype = out_dir, split, dtype
        self.shards: list[dict[str, Any]] = []
        for shard in done:  # keep the verified prefix of the previous run
            path = out_dir / shard["name"]
            if not (path.is_file() and _sha256(path) == shard["sha256"]):
                break
            self.shards.append(shard)
        self.skipped = len(self.shards)

    @property
    def resume_at(self) -> int:
        """Index of the first document not yet in a finished shard."""
        return self.shards[-1]["docs"][1] if self.shards else 0

    def write(self, chunks: list[np.ndarray], docs: tuple[int, int], sources: Counter[str]) -> None:
        tokens = np.concatenate(chunks).astype(self.dtype.newbyteorder("<"))
        name = f"{self.split}-{len(self.shards):05d}.bin"
        _write_atomic(self.out_dir / name, tokens.tobytes())
        self.shards.append(
            {
                "name": name,
                "tokens": int(tokens.size),
                "sha256": _sha256(self.out_dir / name),
                "docs": list(docs),
                "source_tokens": dict(sorted(sources.items())),
            }
        )


def _encode_once(
    tokenizer: Any, docs: list[PlannedDoc], bos_id: int, bar: Progress, split: str
) -> dict[str, np.ndarray]:
    """`<|bos|>` + ids of each distinct document (up-sampled copies are encoded once)."""
    texts = {doc.id: doc.text for doc in docs}
    ids = list(texts)
    task = bar.add_task(f"tokenize {split}", total=len(ids))
    encoded = {}
    for start in range(0, len(ids), ENCODE_BATCH):
        batch = ids[start : start + ENCODE_BATCH]
        encodings = tokenizer.encode_batch_fast([texts[i] for i in batch], add_special_tokens=False)
        for doc_id, encoding in zip(batch, encodings, strict=True):
            encoded[doc_id] = np.array([bos_id, *encoding.ids], dtype=np.uint32)
        bar.advance(task, len(batch))
    return encoded


def _previous_shards(out_dir: Path, fingerprint: str) -> dict[str, list[dict[str, Any]]]:
    """Shard records of an earlier run with the same fingerprint (finished or interrupted)."""
    for name in (PROGRESS_NAME, MANIFEST_NAME):
        path = out_dir / name
        if not path.is_file():
            continue
        try:
            state = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        build = state.get("build", state)
        if build.get("fingerprint") == fingerprint:
            return build["shards"]
    return {}


def _remove_stale_shards(out_dir: Path, shards: dict[str, list[dict[str, Any]]]) -> None:
    keep = {shard["name"] for records in shards.values() for shard in records}
    for split in SPLITS:
        for path in out_dir.glob(f"{split}-*.bin"):
            if path.name not in keep:
                path.unlink()


def tokenize(config: TokenizeConfig, progress: Progress | None = None) -> TokenizeResult:
    """Write the shards and manifest of `config.out_dir` (see the module docstring)."""
    data_dir, out_dir = Path(config.data_dir), Path(config.out_dir)
    report = load_report(data_dir)
    if config.shard_tokens < 1:
        raise ValueError(f"--shard-tokens must be positive, got {config.shard_tokens}")
    if not 0 <= config.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {config.val_fraction}")
    tokenizer = load_tokenizer(config.tokenizer_dir)
    plain = plain_text_tokenizer(tokenizer)
    bos_id = special_id(tokenizer, BOS)
    dtype = np.dtype(np.uint16 if tokenizer.get_vocab_size() <= 2**16 else np.uint32)
    seed = report["seed"] if config.seed is None else config.seed
    tokenizer_hash = tokenizer_sha256(config.tokenizer_dir)
    fingerprint = _fingerprint(data_dir, tokenizer_hash, config, seed)
    docs = list(iter_documents(data_dir))
    if not docs:
        raise ValueError(f"{data_dir} holds no documents")
    weights = {spec: info["weight"] for spec, info in report["sources"].items()}
    plan = plan_splits(docs, weights, config.val_fraction, seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous_shards(out_dir, fingerprint)
    build: dict[str, Any] = {"fingerprint": fingerprint, "shards": {}}
    written = skipped = 0
    with progress or Progress(transient=True) as bar:
        for split in SPLITS:
            writer = ShardWriter(out_dir, split, dtype, previous.get(split, []))
            skipped += writer.skipped
            build["shards"][split] = writer.shards
            split_docs = plan[split]
            first = writer.resume_at
            encoded = _encode_once(plain, split_docs[first:], bos_id, bar, split)
            chunks: list[np.ndarray] = []
            sources: Counter[str] = Counter()
            for index in range(first, len(split_docs)):
                ids = encoded[split_docs[index].id]
                chunks.append(ids)
                sources[split_docs[index].source] += ids.size
                if sum(sources.values()) >= config.shard_tokens or index == len(split_docs) - 1:
                    writer.write(chunks, (first, index + 1), sources)
                    written += 1
                    _write_atomic(out_dir / PROGRESS_NAME, json.dumps(build).encode())
                    chunks, sources, first = [], Counter(), index + 1
    _remove_stale_shards(out_dir, build["shards"])
    manifest = _manifest(
        report, plan, build, dtype, tokenizer_hash, tokenizer.get_vocab_size(), bos_id, seed, config
    )
    _write_atomic(out_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
    (out_dir / PROGRESS_NAME).unlink(missing_ok=True)
    return TokenizeResult(manifest, written_shards=written, skipped_shards=skipped)


def _manifest(
    report: dict[str, Any],
    plan: dict[str, list[PlannedDoc]],
    build: dict[str, Any],
    dtype: np.dtype,
    tokenizer_hash: str,
    vocab_size: int,
    bos_id: int,
    seed: int,
    config: TokenizeConfig,
) -> dict[str, Any]:
    source_tokens: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    for split in SPLITS:
        for shard in build["shards"][split]:
            source_tokens[split].update(shard["source_tokens"])
    return {
        "dtype": dtype.name,
        "vocab_size": vocab_size,
        "bos_id": bos_id,
        "splits": {
            split: {
                "shards": [shard["name"] for shard in build["shards"][split]],
                "tokens": sum(shard["tokens"] for shard in build["shards"][split]),
                "documents": len(plan[split]),
            }
            for split in SPLITS
        },
        "tokenizer_sha256": tokenizer_hash,
        "sources": {
            spec: {"weight": info["weight"], "documents": info["kept_docs"], "bytes": info["kept_bytes"]}
            for spec, info in report["sources"].items()
        },
        "stats": {
            "source_tokens": {split: dict(sorted(c.items())) for split, c in source_tokens.items()},
            "unique_documents": {split: len({d.id for d in plan[split]}) for split in SPLITS},
            "shard_tokens": config.shard_tokens,
            "val_fraction": config.val_fraction,
            "prepare_removed": report["removed"],
        },
        "seed": seed,
        "build": build,
    }


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest of a `tokenize` output."""
    path = Path(out_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{out_dir} has no {MANIFEST_NAME}: run `chakor data tokenize` first")
    return json.loads(path.read_text())


def count_tokens(out_dir: Path) -> dict[str, int]:
    """Tokens per split, counted from the shard files (and checked against the manifest)."""
    manifest = read_manifest(out_dir)
    itemsize = np.dtype(manifest["dtype"]).itemsize
    counts = {}
    for split, info in manifest["splits"].items():
        counts[split] = sum((Path(out_dir) / name).stat().st_size // itemsize for name in info["shards"])
        if counts[split] != info["tokens"]:
            raise ValueError(
                f"{out_dir}: {split} shards hold {counts[split]} tokens, manifest says {info['tokens']}"
            )
    return counts


def read_shard(path: Path, dtype: str) -> np.ndarray:
    """The token ids of one shard file."""
    return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<"))

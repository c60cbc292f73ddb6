"""`chakor data tokenize`: prepared documents -> binary token shards + manifest.json (docs/interfaces.md).

Our shard format (raw little-endian uint16/uint32 token ids, `<|bos|>` before every document, a JSON
manifest with splits, mixing weights and hashes) is kept rather than datatrove's `DocumentTokenizer`
output: the trainer memory-maps these files directly, the manifest records what resume and lineage
check, and datatrove's `.ds` + index files would add a second format for nothing the trainer needs.

Three datatrove stages (executor.py: local, Ray or Slurm), streaming, memory bounded by one shard:
1. encode   (one task per prepared file): each document goes to `val` when its seeded hash is below
   `val_fraction`, else to `train` with `weight` copies (2.5: two copies plus a third with probability
   0.5, decided by another seeded hash). Text is encoded with special-token matching off (a literal
   "<|end|>" stays plain text), in batches, and every copy is appended to one of the split's buckets,
   picked by a seeded hash: the bucket files are an on-disk shuffle.
2. shards   (one task per bucket): a bucket's documents, shuffled with the seed (train only), become
   `{split}-{bucket:05d}.bin`. The number of buckets is fixed up front from the prepared bytes at
   BYTES_PER_TOKEN, so shards hold about `shard_tokens` tokens each.
3. manifest (one task): `manifest.json` from the shard records.
The same input, tokenizer, options and seed give the same bytes. A re-run skips shards an earlier run
with the same fingerprint finished and that still match their sha256; intermediate files live in
`OUT/.work-FINGERPRINT/` with datatrove's completion markers until the run succeeds.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from datatrove.pipeline.base import PipelineStep

from common.chat import BOS, load_tokenizer, plain_text_tokenizer, special_id
from common.hashing import sha256_file
from trainer.data.executor import ExecutorConfig, Stage, run_stages, stage_logs
from trainer.data.prepare import REPORT_NAME, load_report
from trainer.tokenizer.train import tokenizer_sha256

MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val")
ENCODE_BATCH = 256
BYTES_PER_TOKEN = 4.0  # byte-level BPE with a few thousand merges on English prose/code: 3.5-4.5


@dataclass
class TokenizeConfig:
    """Options of `chakor data tokenize`; `seed` None means the seed `prepare` recorded."""

    data_dir: Path
    tokenizer_dir: Path
    out_dir: Path
    shard_tokens: int = 1_000_000
    val_fraction: float = 0.05
    seed: int | None = None
    workers: int = 1
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)


@dataclass
class TokenizeResult:
    """The manifest written, and how many shards were written now vs. kept from a previous run."""

    manifest: dict[str, Any]
    written_shards: int
    skipped_shards: int


def unit_hash(seed: int, key: str) -> float:
    """A seeded hash of `key` in [0, 1)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def occurrences(doc_id: str, source_weight: float, val_fraction: float, seed: int) -> tuple[str, int]:
    """`(split, copies)` of one document (see the module docstring)."""
    if unit_hash(seed, doc_id) < val_fraction:
        return "val", 1
    whole = math.floor(source_weight)
    return "train", whole + (unit_hash(seed, f"copies:{doc_id}") < source_weight - whole)


def bucket_of(doc_id: str, copy: int, buckets: int, seed: int) -> int:
    return min(int(unit_hash(seed, f"bucket:{doc_id}:{copy}") * buckets), buckets - 1)


@dataclass(frozen=True)
class Layout:
    """Folders and bucket counts one tokenize run shares between its stages."""

    data_dir: Path
    out_dir: Path
    work: Path
    files: list[str]
    buckets: dict[str, int]
    weights: dict[str, float]
    seed: int
    val_fraction: float
    dtype: str

    def part_dir(self, split: str, bucket: int) -> Path:
        return self.work / "parts" / f"{split}-{bucket:05d}"

    def record(self, split: str, bucket: int) -> Path:
        return self.work / "records" / f"{split}-{bucket:05d}.json"

    def shard_tasks(self) -> list[tuple[str, int]]:
        return [(split, b) for split in SPLITS for b in range(self.buckets[split])]


class EncodeDocuments(PipelineStep):
    """Stage 1: task `rank` encodes prepared file `rank` into the splits' bucket files."""

    name = "encode"
    type = "🔢 - TOKENIZER"

    def __init__(self, layout: Layout, tokenizer_dir: Path) -> None:
        super().__init__()
        self.layout, self.tokenizer_dir = layout, Path(tokenizer_dir)

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        layout = self.layout
        tokenizer = load_tokenizer(self.tokenizer_dir)
        plain, bos = plain_text_tokenizer(tokenizer), special_id(tokenizer, BOS)
        dtype = np.dtype(layout.dtype).newbyteorder("<")
        files: dict[tuple[str, int], tuple[BinaryIO, BinaryIO]] = {}
        sources: dict[tuple[str, int], Counter[str]] = {key: Counter() for key in layout.shard_tasks()}
        for split, bucket in layout.shard_tasks():
            folder = layout.part_dir(split, bucket)
            files[split, bucket] = (
                (folder / f"{rank:05d}.bin").open("wb"),
                (folder / f"{rank:05d}.len").open("wb"),
            )
        try:
            for batch in _batches(layout.data_dir / layout.files[rank], ENCODE_BATCH):
                encodings = plain.encode_batch_fast([doc["text"] for doc in batch], add_special_tokens=False)
                for doc, encoding in zip(batch, encodings, strict=True):
                    ids = np.array([bos, *encoding.ids], dtype=dtype)
                    weight = layout.weights.get(doc["source"], 1.0)
                    split, copies = occurrences(doc["id"], weight, layout.val_fraction, layout.seed)
                    for copy in range(copies):
                        key = (split, bucket_of(doc["id"], copy, layout.buckets[split], layout.seed))
                        tokens, lengths = files[key]
                        tokens.write(ids.tobytes())
                        lengths.write(np.uint32(ids.size).tobytes())
                        sources[key][doc["source"]] += ids.size
                    self.stat_update(f"documents_{split}")
        finally:
            for tokens, lengths in files.values():
                tokens.close()
                lengths.close()
        for (split, bucket), counts in sources.items():
            (layout.part_dir(split, bucket) / f"{rank:05d}.json").write_text(json.dumps(counts))
        return iter(())


def _batches(path: Path, size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            batch.append(json.loads(line))
            if len(batch) == size:
                yield batch
                batch = []
    if batch:
        yield batch


class WriteShard(PipelineStep):
    """Stage 2: task `rank` turns bucket `layout.shard_tasks()[rank]` into one shard and its record."""

    name = "write shard"
    type = "💽 - WRITER"

    def __init__(self, layout: Layout) -> None:
        super().__init__()
        self.layout = layout

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        layout = self.layout
        split, bucket = layout.shard_tasks()[rank]
        folder = layout.part_dir(split, bucket)
        dtype = np.dtype(layout.dtype).newbyteorder("<")
        docs: list[np.ndarray] = []
        sources: Counter[str] = Counter()
        for lengths_path in sorted(folder.glob("*.len")):
            tokens = np.fromfile(lengths_path.with_suffix(".bin"), dtype=dtype)
            lengths = np.fromfile(lengths_path, dtype=np.uint32).astype(np.int64)
            docs.extend(np.split(tokens, np.cumsum(lengths)[:-1]) if lengths.size else [])
            sources.update(json.loads(lengths_path.with_suffix(".json").read_text()))
        if split == "train":
            random.Random(f"{layout.seed}:{split}:{bucket}").shuffle(docs)  # type: ignore[arg-type]
        record: dict[str, Any] = {"name": None, "tokens": 0, "documents": len(docs), "source_tokens": {}}
        if docs:
            name = f"{split}-{bucket:05d}.bin"
            data_bytes = np.concatenate(docs).tobytes()
            _write_atomic(layout.out_dir / name, data_bytes)
            record = {
                "name": name,
                "tokens": len(data_bytes) // dtype.itemsize,
                "sha256": hashlib.sha256(data_bytes).hexdigest(),
                "documents": len(docs),
                "source_tokens": dict(sorted(sources.items())),
            }
        _write_atomic(layout.record(split, bucket), json.dumps(record).encode())
        return iter(())


class WriteManifest(PipelineStep):
    """Stage 3: `manifest.json` from the shard records."""

    name = "write manifest"
    type = "📝 - REPORT"

    def __init__(
        self, layout: Layout, fingerprint: str, header: dict[str, Any], stats: dict[str, Any]
    ) -> None:
        super().__init__()
        self.layout, self.fingerprint, self.header, self.counts = layout, fingerprint, header, stats

    def run(self, data: Any = None, rank: int = 0, world_size: int = 1) -> Iterator[Any]:
        layout = self.layout
        shards: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
        documents = Counter[str]()
        for split, bucket in layout.shard_tasks():
            record = json.loads(layout.record(split, bucket).read_text())
            documents[split] += record["documents"]
            if record["name"]:
                shards[split].append(record)
        for split in SPLITS:
            if not shards[split] and (split == "train" or layout.val_fraction > 0):
                raise ValueError(
                    f"split {split!r} got no documents from {sum(documents.values())} documents "
                    f"with --val-fraction {layout.val_fraction}: adjust --val-fraction or add data"
                )
        source_tokens: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
        for split in SPLITS:
            for shard in shards[split]:
                source_tokens[split].update(shard["source_tokens"])
        manifest = {
            **self.header,
            "splits": {
                split: {
                    "shards": [s["name"] for s in shards[split]],
                    "tokens": sum(s["tokens"] for s in shards[split]),
                    "documents": documents[split],
                }
                for split in SPLITS
            },
            "stats": {
                **self.counts,
                "source_tokens": {split: dict(sorted(c.items())) for split, c in source_tokens.items()},
            },
            "seed": layout.seed,
            "build": {"fingerprint": self.fingerprint, "shards": shards},
        }
        keep = {s["name"] for split in SPLITS for s in shards[split]}
        for split in SPLITS:
            for path in layout.out_dir.glob(f"{split}-*.bin"):
                if path.name not in keep:
                    path.unlink()
        _write_atomic(layout.out_dir / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode())
        return iter(())


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _fingerprint(data_dir: Path, tokenizer_hash: str, config: TokenizeConfig, seed: int) -> str:
    """Hash of the prepared data (its report and document files' names, sizes, mtimes) and the options."""
    digest = hashlib.sha256((data_dir / REPORT_NAME).read_bytes())
    for path in sorted(data_dir.glob("docs-*.jsonl")):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    digest.update(json.dumps([tokenizer_hash, config.shard_tokens, config.val_fraction, seed]).encode())
    return digest.hexdigest()


def _previous_build(out_dir: Path, fingerprint: str) -> dict[str, list[dict[str, Any]]]:
    """Shard records of an earlier finished run with the same fingerprint."""
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        build = json.loads(path.read_text()).get("build", {})
    except json.JSONDecodeError:
        return {}
    return build.get("shards", {}) if build.get("fingerprint") == fingerprint else {}


def _bucket_counts(report: dict[str, Any], val_fraction: float, shard_tokens: int) -> dict[str, int]:
    train_bytes = sum(info["weight"] * info["kept_bytes"] for info in report["sources"].values())
    val_bytes = sum(info["kept_bytes"] for info in report["sources"].values())
    estimate = {"train": (1 - val_fraction) * train_bytes, "val": val_fraction * val_bytes}
    return {
        split: max(1, math.ceil(estimate[split] / BYTES_PER_TOKEN / shard_tokens)) if estimate[split] else 0
        for split in SPLITS
    }


def _mark_verified(layout: Layout, previous: dict[str, list[dict[str, Any]]]) -> int:
    """Mark the shard tasks whose earlier shard still matches its sha256 as done; returns how many."""
    done = 0
    completions = stage_logs(layout.work, "shards") / "completions"
    for rank, (split, bucket) in enumerate(layout.shard_tasks()):
        name = f"{split}-{bucket:05d}.bin"
        record = next((r for r in previous.get(split, []) if r["name"] == name), None)
        path = layout.out_dir / name
        if record and path.is_file() and sha256_file(path) == record["sha256"]:
            completions.mkdir(parents=True, exist_ok=True)
            _write_atomic(layout.record(split, bucket), json.dumps(record).encode())
            (completions / f"{rank:05d}").touch()
            done += 1
    return done


def _check(config: TokenizeConfig) -> None:
    if config.shard_tokens < 1:
        raise ValueError(f"--shard-tokens must be positive, got {config.shard_tokens}")
    if not 0 <= config.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in [0, 1), got {config.val_fraction}")


def plan_tokenize(config: TokenizeConfig) -> tuple[list[Stage], Layout, int]:
    """Check the input, lay out the three stages; returns them, the layout and the shards kept."""
    _check(config)
    data_dir, out_dir = Path(config.data_dir).resolve(), Path(config.out_dir).resolve()
    report = load_report(data_dir)
    tokenizer = load_tokenizer(config.tokenizer_dir)
    files = sorted(p.name for p in data_dir.glob("docs-*.jsonl"))
    if not files or not report.get("documents"):
        raise ValueError(f"{data_dir} holds no documents")
    seed = report["seed"] if config.seed is None else config.seed
    tokenizer_hash = tokenizer_sha256(config.tokenizer_dir)
    digest = _fingerprint(data_dir, tokenizer_hash, config, seed)
    dtype = np.dtype(np.uint16 if tokenizer.get_vocab_size() <= 2**16 else np.uint32)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / f".work-{digest[:16]}"
    for stale in out_dir.glob(".work-*"):
        if stale != work:
            shutil.rmtree(stale, ignore_errors=True)
    layout = Layout(
        data_dir=data_dir,
        out_dir=out_dir,
        work=work,
        files=files,
        buckets=_bucket_counts(report, config.val_fraction, config.shard_tokens),
        weights={spec: info["weight"] for spec, info in report["sources"].items()},
        seed=seed,
        val_fraction=config.val_fraction,
        dtype=dtype.name,
    )
    for split, bucket in layout.shard_tasks():
        layout.part_dir(split, bucket).mkdir(parents=True, exist_ok=True)
    (work / "records").mkdir(parents=True, exist_ok=True)
    kept = _mark_verified(layout, _previous_build(out_dir, digest))
    header = {
        "dtype": dtype.name,
        "vocab_size": tokenizer.get_vocab_size(),
        "bos_id": special_id(tokenizer, BOS),
        "tokenizer_sha256": tokenizer_hash,
        "sources": {
            spec: {"weight": info["weight"], "documents": info["kept_docs"], "bytes": info["kept_bytes"]}
            for spec, info in report["sources"].items()
        },
    }
    stats = {
        "shard_tokens": config.shard_tokens,
        "val_fraction": config.val_fraction,
        "prepare_removed": report["removed"],
    }
    stages = [
        Stage("encode", [EncodeDocuments(layout, Path(config.tokenizer_dir).resolve())], len(files)),
        Stage("shards", [WriteShard(layout)], len(layout.shard_tasks())),
        Stage("manifest", [WriteManifest(layout, digest, header, stats)], 1),
    ]
    return stages, layout, kept


def tokenize(config: TokenizeConfig, on_stage: Callable[[str], None] | None = None) -> TokenizeResult:
    """Write the shards and manifest of `config.out_dir` locally or on Ray (see the module docstring)."""
    if config.executor.kind == "slurm":
        raise ValueError("use submit_tokenize for --executor slurm")
    stages, layout, kept = plan_tokenize(config)
    total = len(layout.shard_tasks())
    executor = replace(config.executor, workers=config.workers)
    if kept == total and total > 0:  # an earlier run with the same fingerprint, every shard intact
        shutil.rmtree(layout.work, ignore_errors=True)
        return TokenizeResult(read_manifest(layout.out_dir), written_shards=0, skipped_shards=kept)
    run_stages(stages, layout.work, executor, job_prefix="chakor-tokenize", on_stage=on_stage)
    shutil.rmtree(layout.work, ignore_errors=True)
    manifest = read_manifest(layout.out_dir)
    written = sum(len(info["shards"]) for info in manifest["splits"].values()) - kept
    return TokenizeResult(manifest, written_shards=written, skipped_shards=kept)


def submit_tokenize(config: TokenizeConfig) -> tuple[list[str], Path]:
    """Submit the stages as dependent Slurm job arrays; returns the job ids and the work folder."""
    stages, layout, _ = plan_tokenize(config)
    executor = replace(config.executor, workers=config.workers)
    return run_stages(stages, layout.work, executor, job_prefix="chakor-tokenize"), layout.work


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

"""Training benchmarks, each a ratio measured in one run. Run:
`.venv/bin/pytest benchmarks/test_train_bench.py --benchmark-enable -s -p no:randomly`.

- torchtitan trainer (torchrun, 1 process) vs a plain PyTorch loop: same model, batch, sequence
  length and optimizer; ratio titan/plain.
- loader memory: peak RSS of a fresh process that maps 1x and 4x shards and reads 5,000 shuffled
  windows with the memory-mapped loader; ratio RSS(4x)/RSS(1x) (target <= 1.1). The previous loader
  (whole split concatenated in memory, re-implemented below as the baseline) is measured alongside.
- trainer tokens/s for `tiny` with the memory-mapped loader vs that previous loader, runs interleaved
  A B B A; ratio memmap/concatenated (target >= 1.0).
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from common.chat import load_tokenizer
from tests.trainer.conftest import write_shards
from trainer.configs import MODEL_CONFIGS, TrainConfig
from trainer.metrics import read_metrics
from trainer.model import Transformer
from trainer.titan import config_registry
from trainer.titan.data import ArrayTokens, ShardDataLoader, TokenWindows, read_manifest
from trainer.tokenizer import train_tokenizer
from trainer.train import launch, prepare_run, run_training

REPO = Path(__file__).resolve().parents[1]

CASES = {
    # name: (model, seq_len, local_batch_size, steps)
    "tiny": ("tiny", 256, 8, 40),
    "small": ("small", 128, 2, 8),
}
WARMUP = 3


def plain_loop_tokens_per_s(cfg, seq_len: int, batch: int, steps: int) -> float:
    """Single-process eager loop: forward, cross-entropy, backward, clip, AdamW."""
    torch.manual_seed(0)
    model = Transformer(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    tokens = torch.randint(0, cfg.vocab_size, (batch, seq_len + 1))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logits = model(tokens[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch * seq_len / statistics.median(times[WARMUP:])


def titan_tokens_per_s(run_dir: Path) -> float:
    rates = [r["tokens_per_s"] for r in read_metrics(run_dir / "metrics.jsonl") if "tokens_per_s" in r]
    return statistics.median(rates[WARMUP:])


@pytest.mark.parametrize("case", [pytest.param("tiny"), pytest.param("small", marks=pytest.mark.slow)])
def test_titan_vs_plain_loop(case: str, benchmark, tmp_path: Path) -> None:
    name, seq_len, batch, steps = CASES[case]
    corpus = [f"line {i}: the quick brown fox jumps over the lazy dog {i * 7}" for i in range(400)]
    tokenizer_dir = train_tokenizer(corpus, vocab_size=512, out_dir=tmp_path / "tok")
    data = write_shards(tmp_path / "data", tokenizer_dir, train_docs=2000, val_docs=200)
    cfg = replace(MODEL_CONFIGS[name], vocab_size=load_tokenizer(tokenizer_dir).get_vocab_size())
    recipe: dict[str, Any] = dict(
        steps=steps, seq_len=seq_len, local_batch_size=batch, eval_every=10_000,
        checkpoint_every=10_000, sample_tokens=0, warmup_steps=1,
    )  # fmt: skip

    def measure() -> float:
        run = run_training(
            tmp_path / f"run-{time.monotonic_ns()}", data, cfg, tokenizer_dir, quiet=True, **recipe
        )
        titan = titan_tokens_per_s(run)
        plain = plain_loop_tokens_per_s(cfg, seq_len, batch, steps)
        benchmark.extra_info.update(titan_tokens_per_s=round(titan), plain_tokens_per_s=round(plain))
        return titan / plain

    ratio = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["ratio"] = round(ratio, 3)
    print(
        f"\n{case}: torchtitan {benchmark.extra_info['titan_tokens_per_s']:,} tok/s, "
        f"plain loop {benchmark.extra_info['plain_tokens_per_s']:,} tok/s, ratio {ratio:.3f}"
    )
    assert math.isfinite(ratio) and ratio > 0


# ---------------------------------------------------------------- the previous loader, as a baseline


def concatenated_split(data_dir: Path, split: str) -> np.ndarray:
    """The loader before issue 13: every shard of the split read and concatenated, on every rank."""
    manifest = read_manifest(data_dir)
    dtype = np.dtype(manifest["dtype"]).newbyteorder("<")
    shards = manifest["splits"][split]["shards"]
    return np.concatenate([np.fromfile(Path(data_dir) / name, dtype=dtype) for name in shards])


class ConcatenatedWindows(TokenWindows):
    """TokenWindows over the concatenated split with the previous materialized per-epoch permutation."""

    def __init__(self, tokens: np.ndarray, *args: Any, **kwargs: Any) -> None:
        super().__init__(ArrayTokens(tokens), *args, **kwargs)
        self._orders: dict[int, np.ndarray] = {}

    def _window(self, order: Any, k: int) -> int:
        index = k * self.dp_world_size + self.dp_rank
        if not self.shuffle:
            return index
        if self.epoch not in self._orders:
            self._orders = {
                self.epoch: np.random.default_rng([self.seed, self.epoch]).permutation(self.n_windows)
            }
        return int(self._orders[self.epoch][index])


class ConcatenatedDataLoader(ShardDataLoader):
    """ShardDataLoader with the previous whole-split-in-memory data path."""

    @dataclass(kw_only=True, slots=True)
    class Config(ShardDataLoader.Config):  # its own Config: torchtitan builds the loader class it belongs to
        pass

    @staticmethod
    def windows(
        config: ShardDataLoader.Config, seq_len: int, dp_rank: int, dp_world_size: int
    ) -> ConcatenatedWindows:
        tokens = concatenated_split(Path(config.dataset_path or ""), config.split)
        return ConcatenatedWindows(
            tokens, seq_len, dp_rank, dp_world_size,
            seed=config.seed, shuffle=config.split == "train", infinite=config.infinite,
        )  # fmt: skip


def pretrain_concatenated() -> Any:
    """torchtitan config (`--module benchmarks.test_train_bench`): `pretrain` with the previous loader."""
    config = config_registry.pretrain()
    old = config.dataloader
    config.dataloader = ConcatenatedDataLoader.Config(dataset_path=old.dataset_path, seed=old.seed)
    val = config.validator.dataloader
    config.validator.dataloader = ConcatenatedDataLoader.Config(
        dataset_path=val.dataset_path, split="val", infinite=False
    )
    return config


# ---------------------------------------------------------------- loader memory

RSS_SCRIPT = """
import json, resource, sys, time
from itertools import islice
from pathlib import Path
import trainer.titan
from trainer.titan.data import ShardTokens, TokenWindows
from benchmarks.test_train_bench import ConcatenatedWindows, concatenated_split
data, kind, windows = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
before = rss_mb()
start = time.perf_counter()
if kind == "memmap":
    dataset = TokenWindows(ShardTokens(data, "train"), 256, 0, 1, seed=1)
else:
    dataset = ConcatenatedWindows(concatenated_split(data, "train"), 256, 0, 1, seed=1)
total = sum(int(x["input"][0]) for x, _ in islice(dataset, windows))
print(json.dumps({"peak_rss_mb": rss_mb(), "loader_rss_mb": rss_mb() - before,
                  "windows_per_s": windows / (time.perf_counter() - start)}))
"""
LOADER_TOKENS = 25_000_000  # 1x: 50 MB of uint16 tokens in 5 shards; 4x: 200 MB in 20
LOADER_WINDOWS = 5_000


def random_shards(data_dir: Path, tokens: int, shards: int) -> Path:
    """`shards` shards of random uint16 ids with a manifest (the loader reads no tokenizer)."""
    data_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"train-{i:05d}.bin" for i in range(shards)]
    for name in names:
        rng.integers(0, 4096, tokens // shards, dtype=np.uint16).tofile(data_dir / name)
    manifest = {
        "dtype": "uint16",
        "tokenizer_sha256": "-",
        "splits": {"train": {"shards": names, "tokens": tokens}},
    }
    (data_dir / "manifest.json").write_text(json.dumps(manifest))
    return data_dir


def loader_rss(data_dir: Path, kind: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT, str(data_dir), kind, str(LOADER_WINDOWS)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_loader_rss_1x_vs_4x_shards(benchmark, tmp_path: Path) -> None:
    small = random_shards(tmp_path / "1x", LOADER_TOKENS, 5)
    large = random_shards(tmp_path / "4x", 4 * LOADER_TOKENS, 20)

    def measure() -> float:
        for kind in ("memmap", "concatenated"):
            for name, data in (("1x", small), ("4x", large)):
                for key, value in loader_rss(data, kind).items():
                    benchmark.extra_info[f"{kind}_{name}_{key}"] = round(value, 1)
        info = benchmark.extra_info
        return info["memmap_4x_peak_rss_mb"] / info["memmap_1x_peak_rss_mb"]

    ratio = benchmark.pedantic(measure, rounds=1, iterations=1)
    info = benchmark.extra_info
    info["ratio_rss_4x_vs_1x"] = round(ratio, 3)
    info["concatenated_ratio_rss_4x_vs_1x"] = round(
        info["concatenated_4x_peak_rss_mb"] / info["concatenated_1x_peak_rss_mb"], 3
    )
    print(f"\nloader peak RSS (MB), loader's own growth in brackets, {LOADER_WINDOWS} shuffled windows:")
    for kind in ("memmap", "concatenated"):
        print(
            f"  {kind}: 1x {info[f'{kind}_1x_peak_rss_mb']} (+{info[f'{kind}_1x_loader_rss_mb']}), "
            f"4x {info[f'{kind}_4x_peak_rss_mb']} (+{info[f'{kind}_4x_loader_rss_mb']}); "
            f"{info[f'{kind}_1x_windows_per_s']:,.0f} / {info[f'{kind}_4x_windows_per_s']:,.0f} windows/s"
        )
    print(f"  ratio 4x/1x: memmap {ratio:.3f}, concatenated {info['concatenated_ratio_rss_4x_vs_1x']:.3f}")
    assert math.isfinite(ratio) and ratio > 0


# ---------------------------------------------------------------- trainer tokens/s by loader


@pytest.mark.timeout(3600)
def test_tiny_tokens_per_s_memmap_vs_concatenated_loader(benchmark, tmp_path: Path) -> None:
    corpus = [f"line {i}: the quick brown fox jumps over the lazy dog {i * 7}" for i in range(400)]
    tokenizer_dir = train_tokenizer(corpus, vocab_size=512, out_dir=tmp_path / "tok")
    data = write_shards(tmp_path / "data", tokenizer_dir, train_docs=20_000, val_docs=200)
    cfg = replace(MODEL_CONFIGS["tiny"], vocab_size=load_tokenizer(tokenizer_dir).get_vocab_size())
    recipe = TrainConfig(
        steps=40, seq_len=256, local_batch_size=8, eval_every=10_000, checkpoint_every=10_000,
        sample_tokens=0, warmup_steps=1,
    )  # fmt: skip
    configs = {
        "memmap": ("trainer.titan", "pretrain"),
        "concatenated": ("benchmarks.test_train_bench", "pretrain_concatenated"),
    }
    rates: dict[str, list[float]] = {name: [] for name in configs}

    def measure() -> float:
        for name in ("memmap", "concatenated", "concatenated", "memmap"):
            run = prepare_run(tmp_path / f"run-{time.monotonic_ns()}", data, cfg, tokenizer_dir, recipe)
            module, config = configs[name]
            launch(run, config, 1, quiet=True, module=module)
            rates[name].append(titan_tokens_per_s(run))
        memmap, concatenated = (statistics.mean(rates[n]) for n in ("memmap", "concatenated"))
        benchmark.extra_info.update(
            memmap_tokens_per_s=round(memmap), concatenated_tokens_per_s=round(concatenated),
            runs={n: [round(r) for r in v] for n, v in rates.items()},
        )  # fmt: skip
        return memmap / concatenated

    ratio = benchmark.pedantic(measure, rounds=1, iterations=1)
    benchmark.extra_info["ratio"] = round(ratio, 3)
    print(
        f"\ntiny: memmap loader {benchmark.extra_info['memmap_tokens_per_s']:,} tok/s, "
        f"concatenated {benchmark.extra_info['concatenated_tokens_per_s']:,} tok/s, ratio {ratio:.3f} "
        f"(runs {benchmark.extra_info['runs']})"
    )
    assert math.isfinite(ratio) and ratio > 0

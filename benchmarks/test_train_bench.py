"""Training throughput: torchtitan trainer (torchrun, 1 process) vs a plain PyTorch loop, same run.

Same model, batch, sequence length and optimizer; the result is the ratio titan/plain (reported in
`extra_info` and printed). Run: `.venv/bin/pytest benchmarks/test_train_bench.py --benchmark-enable -s`.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from tests.trainer.conftest import write_shards
from trainer.configs import MODEL_CONFIGS
from trainer.metrics import read_metrics
from trainer.model import Transformer
from trainer.tokenizer import load_tokenizer, train_tokenizer
from trainer.train import run_training

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
    recipe = dict(
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

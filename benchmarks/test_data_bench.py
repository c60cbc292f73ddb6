"""Data pipeline throughput, as ratios against `tokenizers`' own `encode_batch` on the same text.

Run: `.venv/bin/pytest benchmarks/test_data_bench.py --benchmark-enable -s`
- prepare + tokenize (read, clean, Gopher filters, MinHash dedup, shards) on the built-in corpus
  (1 MB per source; MB/s counts the bytes read),
- tokenize alone (prepared docs -> shards + manifest),
each reported in MB/s of input text and as `ratio_vs_encode_batch` (pipeline MB/s / encode_batch MB/s,
measured in the same run on the same documents with the same tokenizer).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from trainer.data.prepare import PrepareConfig, iter_documents, load_report, prepare
from trainer.data.shards import TokenizeConfig, tokenize
from trainer.tokenizer import load_tokenizer, plain_text_tokenizer, train_tokenizer

SOURCES = ["local:python-docs", "local:python-code"]
MAX_BYTES = 1_000_000  # per source


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench")
    prepare(PrepareConfig(sources=SOURCES, out_dir=root / "data", max_bytes=MAX_BYTES))
    texts = [doc["text"] for doc in iter_documents(root / "data")]
    train_tokenizer(texts, vocab_size=4096, out_dir=root / "tok")
    return root


def encode_batch_mb_per_s(texts: list[str], tokenizer_dir: Path) -> float:
    """Best of 3: the `tokenizers` baseline on the same documents."""
    tokenizer = plain_text_tokenizer(load_tokenizer(tokenizer_dir))
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        tokenizer.encode_batch(texts, add_special_tokens=False)
        best = min(best, time.perf_counter() - start)
    return megabytes / best


def timed(function: Callable[[], None], seconds: list[float]) -> Callable[[], None]:
    """`function`, appending each call's wall time to `seconds` (works with --benchmark-disable too)."""

    def run() -> None:
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)

    return run


def report(benchmark: Any, name: str, megabytes: float, seconds: list[float], baseline: float) -> None:
    throughput = megabytes / statistics.mean(seconds)
    benchmark.extra_info.update(
        {
            "input_mb": megabytes,
            "mb_per_s": throughput,
            "encode_batch_mb_per_s": baseline,
            "ratio_vs_encode_batch": throughput / baseline,
        }
    )
    print(
        f"\n{name}: {throughput:.2f} MB/s, encode_batch {baseline:.2f} MB/s, ratio {throughput / baseline:.3f}"
    )


def test_prepare_and_tokenize_throughput(benchmark: Any, workdir: Path) -> None:
    runs = iter(range(1000))

    def pipeline() -> None:
        run = workdir / f"run{next(runs)}"
        prepare(PrepareConfig(sources=SOURCES, out_dir=run / "data", max_bytes=MAX_BYTES))
        tokenize(TokenizeConfig(run / "data", workdir / "tok", run / "shards"))

    seconds: list[float] = []
    benchmark.pedantic(timed(pipeline, seconds), rounds=3, iterations=1, warmup_rounds=0)
    read_bytes = sum(source["read_bytes"] for source in load_report(workdir / "data")["sources"].values())
    texts = [doc["text"] for doc in iter_documents(workdir / "data")]
    report(
        benchmark,
        "prepare+tokenize",
        read_bytes / 1e6,
        seconds,
        encode_batch_mb_per_s(texts, workdir / "tok"),
    )


def test_tokenize_throughput(benchmark: Any, workdir: Path) -> None:
    runs = iter(range(1000))

    def shards() -> None:
        tokenize(TokenizeConfig(workdir / "data", workdir / "tok", workdir / f"shards{next(runs)}"))

    seconds: list[float] = []
    benchmark.pedantic(timed(shards, seconds), rounds=3, iterations=1, warmup_rounds=0)
    texts = [doc["text"] for doc in iter_documents(workdir / "data")]
    megabytes = sum(len(t.encode()) for t in texts) / 1e6
    report(benchmark, "tokenize", megabytes, seconds, encode_batch_mb_per_s(texts, workdir / "tok"))

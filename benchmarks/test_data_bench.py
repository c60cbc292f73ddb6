"""Data pipeline throughput and memory.

Run: `.venv/bin/pytest benchmarks/test_data_bench.py --benchmark-enable -s`
- prepare + tokenize (read, clean, Gopher filters, exact + MinHash dedup, shards) on the built-in corpus
  (1 MB per source; MB/s counts the bytes read), and tokenize alone, in MB/s and as
  `ratio_vs_encode_batch` (pipeline MB/s / `tokenizers`' own encode_batch MB/s, same run, same text);
- scaling: `chakor data prepare --workers 2` and `chakor data tokenize --workers 2` as separate processes
  on generated JSONL corpora of 1x and 4x (SCALE_MB and 4 * SCALE_MB): peak RSS of the whole process
  tree (the command and every worker it starts, summed, sampled every 50 ms) and MB/s of input.
  Targets: RSS(4x) / RSS(1x) <= 1.2 (memory does not grow with the corpus), prepare >= 1 MB/s.
- parquet: the same generated prose as 8 parquet files of PARQUET_FILE_MB (globs: one read task per file),
  `chakor data prepare --workers 2` on the first 2 files (1x, PARQUET_SCALE_MB) and on all 8 (4x);
  asserts RSS(4x) / RSS(1x) <= 1.2.
"""

from __future__ import annotations

import contextlib
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from common.chat import load_tokenizer, plain_text_tokenizer
from trainer.data.prepare import PrepareConfig, iter_documents, load_report, prepare
from trainer.data.shards import TokenizeConfig, tokenize
from trainer.tokenizer import train_tokenizer

SOURCES = ["local:python-docs", "local:python-code"]
MAX_BYTES = 1_000_000  # per source
SCALE_MB = 10
PARQUET_SCALE_MB = 5
PARQUET_FILE_MB = 2.5  # 2 files at 1x, 8 at 4x: the read stage's tasks grow with the corpus, not their size
PARQUET_ROW_GROUP = 1000  # rows per row group, as writers of web corpora commonly use
CHAKOR = str(Path(sys.executable).parent / "chakor")


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


def generated_corpus(path: Path, megabytes: float, seed: int = 0) -> int:
    """JSONL prose that passes the quality filters: random sentences over 4,000 made-up words, with 2%
    exact and 2% near duplicates (one word changed); returns the bytes of text written."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(4000)]
    stop = ["the", "of", "and", "to", "with", "that", "have", "be"]
    written, docs = 0, list[str]()
    with path.open("w", encoding="utf-8") as handle:
        while written < megabytes * 1e6:
            roll = rng.random()
            if docs and roll < 0.02:
                text = rng.choice(docs)
            elif docs and roll < 0.04:
                words = rng.choice(docs).split()
                words[rng.randrange(len(words))] = "zeppelin"
                text = " ".join(words)
            else:
                sentences = []
                for _ in range(rng.randint(8, 16)):
                    words = [rng.choice(vocab) for _ in range(rng.randint(6, 14))]
                    words[rng.randrange(len(words))] = rng.choice(stop)
                    sentences.append(" ".join(words).capitalize() + ".")
                text = " ".join(sentences)
                docs = [*docs[-200:], text]
            handle.write(json.dumps({"text": text}) + "\n")
            written += len(text.encode())
    return written


def tree_rss(process: psutil.Process) -> int:
    """RSS of `process` and all its descendants, summed (0 for those that just exited)."""
    total = 0
    for member in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += member.memory_info().rss
    return total


def run_measured(command: list[str], cwd: Path) -> tuple[float, int, float]:
    """Run `command`: (wall seconds, peak RSS of its process tree in bytes, CPU seconds of the tree).

    CPU seconds count every waited-for descendant (getrusage RUSAGE_CHILDREN): on a shared machine
    wall-clock MB/s depends on what else runs, MB per CPU second much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    watched, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            peak = max(peak, tree_rss(watched))
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    output = process.stdout.read().decode() if process.stdout else ""
    if process.wait() != 0:
        raise RuntimeError(f"{command[:3]} failed:\n{output[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, peak, cpu


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Generated corpora of 1x and 4x, each prepared with 2 workers (measured), and one tokenizer."""
    root = tmp_path_factory.mktemp("scale")
    result: dict[str, Any] = {"root": root}
    for factor in (1, 4):
        corpus = root / f"corpus{factor}x.jsonl"
        megabytes = generated_corpus(corpus, SCALE_MB * factor) / 1e6
        command = [
            CHAKOR,
            "data",
            "prepare",
            "--source",
            str(corpus),
            "--out",
            f"data{factor}x",
            "--workers",
            "2",
        ]
        seconds, peak, cpu = run_measured(command, root)
        result[f"prepare{factor}x"] = {"mb": megabytes, "seconds": seconds, "peak_rss": peak, "cpu": cpu}
    sample = [doc["text"] for _, doc in zip(range(2000), iter_documents(root / "data1x"), strict=False)]
    train_tokenizer(sample, vocab_size=4096, out_dir=root / "tok")
    return result


def scale_info(runs: dict[str, dict[str, float]], prefix: str) -> dict[str, Any]:
    one, four = runs[f"{prefix}1x"], runs[f"{prefix}4x"]
    info = {
        "input_mb_1x": one["mb"],
        "input_mb_4x": four["mb"],
        "peak_rss_mb_1x": one["peak_rss"] / 1e6,
        "peak_rss_mb_4x": four["peak_rss"] / 1e6,
        "rss_ratio_4x_vs_1x": four["peak_rss"] / one["peak_rss"],
        "mb_per_s_1x": one["mb"] / one["seconds"],
        "mb_per_s_4x": four["mb"] / four["seconds"],
        "mb_per_cpu_s_1x": one["mb"] / one["cpu"],
        "mb_per_cpu_s_4x": four["mb"] / four["cpu"],
    }
    info["rss_target_met"] = info["rss_ratio_4x_vs_1x"] <= 1.2
    print(
        f"\n{prefix}: "
        + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
    )
    return info


def test_prepare_memory_does_not_grow_with_the_corpus(benchmark: Any, scaled: dict[str, Any]) -> None:
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = scale_info(scaled, "prepare")
    info["throughput_target_met"] = info["mb_per_s_4x"] >= 1.0
    benchmark.extra_info.update(info)


def test_tokenize_memory_does_not_grow_with_the_corpus(benchmark: Any, scaled: dict[str, Any]) -> None:
    root: Path = scaled["root"]
    runs: dict[str, dict[str, float]] = {}
    for factor in (1, 4):
        data = root / f"data{factor}x"
        mb = load_report(data)["bytes"] / 1e6
        command = [
            CHAKOR,
            "data",
            "tokenize",
            "--data",
            str(data),
            "--tokenizer",
            "tok",
            "--out",
            f"shards{factor}x",
        ]
        seconds, peak, cpu = run_measured([*command, "--workers", "2"], root)
        runs[f"tokenize{factor}x"] = {"mb": mb, "seconds": seconds, "peak_rss": peak, "cpu": cpu}
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    benchmark.extra_info.update(scale_info(runs, "tokenize"))


def parquet_corpus(folder: Path, megabytes: float, seed: int = 0) -> int:
    """`generated_corpus`'s documents as `part-NNNNN.parquet` files of about PARQUET_FILE_MB of text each
    (column `text`, plus a `url` column the reader must not load); returns the bytes of text written."""
    folder.mkdir(parents=True)
    jsonl = folder / "corpus.jsonl"
    written = generated_corpus(jsonl, megabytes, seed)
    part, part_bytes, rows = 0, 0, list[str]()
    writer = pq.ParquetWriter(
        folder / f"part-{part:05d}.parquet", pa.schema([("text", pa.string()), ("url", pa.string())])
    )

    def flush() -> None:
        urls = [f"https://example.test/{part}/{i}" for i in range(len(rows))]
        writer.write_table(pa.table({"text": rows, "url": urls}))
        rows.clear()

    with jsonl.open(encoding="utf-8") as handle:
        for line in handle:
            text = json.loads(line)["text"]
            rows.append(text)
            part_bytes += len(text.encode())
            if len(rows) == PARQUET_ROW_GROUP:
                flush()
            if part_bytes >= PARQUET_FILE_MB * 1e6:
                if rows:
                    flush()
                writer.close()
                part, part_bytes = part + 1, 0
                writer = pq.ParquetWriter(folder / f"part-{part:05d}.parquet", writer.schema)
    if rows:
        flush()
    writer.close()
    if part_bytes == 0:
        (folder / f"part-{part:05d}.parquet").unlink()
    jsonl.unlink()
    return written


@pytest.mark.timeout(1800)  # ~25 MB generated and prepared twice: minutes on a shared 2-core machine
def test_prepare_parquet_memory_does_not_grow_with_the_corpus(
    benchmark: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("parquet")
    corpus = root / "corpus"
    parquet_corpus(corpus, PARQUET_SCALE_MB * 4)
    files = sorted(corpus.iterdir())
    runs: dict[str, dict[str, float]] = {}
    for factor, pattern in ((1, "part-0000[01].parquet"), (4, "*.parquet")):  # 1x: the first quarter
        source = f"{corpus}/{pattern}:text"
        command = [CHAKOR, "data", "prepare", "--source", source, "--out", f"data{factor}x", "--workers", "2"]
        seconds, peak, cpu = run_measured(command, root)
        read = load_report(root / f"data{factor}x")["sources"][source]
        assert len(files) == 8 and read["files"] == (2 if factor == 1 else 8)
        runs[f"parquet{factor}x"] = {
            "mb": read["read_bytes"] / 1e6,
            "seconds": seconds,
            "peak_rss": peak,
            "cpu": cpu,
        }
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    info = scale_info(runs, "parquet")
    benchmark.extra_info.update(info)
    assert info["rss_ratio_4x_vs_1x"] <= 1.2, info

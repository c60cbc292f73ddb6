"""GGUF conversion: wall time and peak RSS for f16 and q8_0, and llama.cpp's own converter side by side.

Each conversion runs in a fresh process (peak RSS from VmHWM). Baselines in the same run: the RSS
of a process that only imports the converter, and llama.cpp's own `convert_hf_to_gguf.py` on the
trainer's `--format hf` export of the same model: time ratio, and f16 tensors compared bit for bit.
`chakor bench` sets the script up (chakor/bench_tools.py) and passes CHAKOR_LLAMA_CPP_DIR; when it
could not, CHAKOR_LLAMA_CPP_UNAVAILABLE says why and the comparison is recorded as not run.

Run: `.venv/bin/pytest benchmarks/test_convert_bench.py --benchmark-enable -s`
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import gguf
import numpy as np
import pytest

from common.chat import load_tokenizer
from tests.converter.conftest import CORPUS, make_export
from trainer.configs import ModelConfig
from trainer.tokenizer.train import train_tokenizer

LLAMA_CPP_DIR = os.environ.get("CHAKOR_LLAMA_CPP_DIR")
LLAMA_CPP_UNAVAILABLE = os.environ.get(
    "CHAKOR_LLAMA_CPP_UNAVAILABLE", "CHAKOR_LLAMA_CPP_DIR is not set (`chakor bench` sets it up)"
)
ROUNDS = 3


# Runs a module (-mNAME) or script after a prelude of code, in this process, and writes its peak RSS
# (VmHWM, KiB) to a file at exit; measured inside the child because a forked child's rusage also
# counts the parent's pages.
_PEAK_RSS_WRAPPER = """
import atexit, runpy, sys
peak_file, target, prelude = sys.argv[1:4]
def write_peak():
    status = open('/proc/self/status').read()
    open(peak_file, 'w').write(status.split('VmHWM:')[1].split()[0])
atexit.register(write_peak)
sys.argv = [target, *sys.argv[4:]]
if target.startswith('-m'):
    runpy.run_module(target[2:], run_name='__main__', alter_sys=True)
else:
    sys.path.insert(0, target.rsplit('/', 1)[0])
    exec(prelude)
    runpy.run_path(target, run_name='__main__')
"""
# convert_hf_to_gguf.py only accepts BPE tokenizers whose hash it knows; ours is new, and its split
# regex is GPT-2's, so the benchmark tells the script so (the reason this project has its own converter).
_HF_PRELUDE = "import conversion.base as b; b.TextModel.get_vocab_base_pre = lambda self, tokenizer: 'gpt-2'"


def measured(
    target: str, args: list[str], log: Path, prelude: str = "", path: Path | None = None
) -> tuple[float, int]:
    """Run module `-mNAME` or script `target` with `args` (and `path` on PYTHONPATH): (wall s, peak RSS bytes)."""
    peak_file = log.with_suffix(".peak")
    argv = [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(peak_file), target, prelude, *args]
    env = {**os.environ, "PYTHONPATH": str(path)} if path else None
    start = time.perf_counter()
    with log.open("wb") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False, env=env)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{target} {args[:2]} failed: {log.read_text()[-2000:]}")
    return elapsed, int(peak_file.read_text()) * 1024


def convert_args(export: Path, outfile: Path, outtype: str) -> list[str]:
    return ["convert", str(export), "--outtype", outtype, "--outfile", str(outfile)]


@pytest.fixture(scope="module")
def bench_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~60M-parameter random model (240 MB of float32), with the HF layout beside it."""
    root = tmp_path_factory.mktemp("convert-bench")
    tokenizer_dir = train_tokenizer(CORPUS * 8, vocab_size=400, out_dir=root / "tok")
    cfg = ModelConfig(
        dim=768, n_layers=8, n_heads=12, n_kv_heads=4, vocab_size=load_tokenizer(tokenizer_dir).get_vocab_size(),
        ffn_hidden_dim=2048, max_seq_len=512, tie_embeddings=False,
    )  # fmt: skip
    return make_export(root / "export", cfg, tokenizer_dir, steps=0, hf=True)


@pytest.fixture(scope="module")
def import_rss(bench_export: Path) -> int:
    """Peak RSS of a process that imports the converter and converts nothing."""
    return measured("-mconverter.convert", [], bench_export.parent / "import.log")[1]


@pytest.mark.parametrize("outtype", ["f16", "q8_0"])
def test_convert_time_and_rss(benchmark, bench_export: Path, import_rss: int, outtype: str) -> None:
    model_bytes = (bench_export / "model.safetensors").stat().st_size
    outfile = bench_export.parent / f"bench-{outtype}.gguf"
    rss: list[int] = []

    def run() -> None:
        rss.append(
            measured(
                "-mconverter", convert_args(bench_export, outfile, outtype), outfile.with_suffix(".log")
            )[1]
        )

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    benchmark.extra_info.update(
        model_mb=round(model_bytes / 2**20, 1),
        gguf_mb=round(outfile.stat().st_size / 2**20, 1),
        peak_rss_mb=round(max(rss) / 2**20, 1),
        import_rss_mb=round(import_rss / 2**20, 1),
        rss_over_imports_per_model_byte=round((max(rss) - import_rss) / model_bytes, 3),
    )
    print(f"\n{outtype}: {benchmark.extra_info}")
    assert max(rss) - import_rss < model_bytes / 2  # tensor by tensor: far below the model size


def f16_tensors(path: Path) -> dict[str, np.ndarray]:
    return {t.name: np.asarray(t.data) for t in gguf.GGUFReader(path).tensors}


def test_versus_convert_hf_to_gguf(benchmark, bench_export: Path) -> None:
    if not LLAMA_CPP_DIR or not (Path(LLAMA_CPP_DIR) / "convert_hf_to_gguf.py").is_file():
        benchmark.extra_info.update(not_run=LLAMA_CPP_UNAVAILABLE)  # recorded, so the report says so
        benchmark.pedantic(lambda: None, rounds=1, iterations=1)
        return
    script = Path(LLAMA_CPP_DIR) / "convert_hf_to_gguf.py"
    site = Path(LLAMA_CPP_DIR) / "site"  # transformers, for the script only
    ours, theirs = bench_export.parent / "ours-f16.gguf", bench_export.parent / "theirs-f16.gguf"
    their_args = [str(bench_export / "hf"), "--outtype", "f16", "--outfile", str(theirs)]
    times: dict[str, list[float]] = {"ours": [], "theirs": []}

    def run() -> float:
        times["ours"].append(
            measured("-mconverter", convert_args(bench_export, ours, "f16"), ours.with_suffix(".log"))[0]
        )
        times["theirs"].append(
            measured(str(script), their_args, theirs.with_suffix(".log"), _HF_PRELUDE, site)[0]
        )
        return times["ours"][-1] / times["theirs"][-1]

    benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    ratio = min(times["ours"]) / min(times["theirs"])
    a, b = f16_tensors(ours), f16_tensors(theirs)
    assert sorted(a) == sorted(b)
    identical = [name for name in a if a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name])]
    benchmark.extra_info.update(
        ours_s=round(min(times["ours"]), 3),
        theirs_s=round(min(times["theirs"]), 3),
        time_ratio_ours_over_theirs=round(ratio, 3),
        identical_tensors=f"{len(identical)}/{len(a)}",
    )
    print(f"\nvs convert_hf_to_gguf.py: {benchmark.extra_info}")
    assert identical == list(a)

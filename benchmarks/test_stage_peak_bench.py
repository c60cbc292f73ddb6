"""The quickstart's training stages as a share of this host's fp32 matmul peak, measured in one process. Run:
`.venv/bin/pytest benchmarks/test_stage_peak_bench.py --benchmark-enable -s -p no:randomly`.

Hosts differ (issue 32: the same quickstart ran 2.5x slower on a 2-vCPU AMD EPYC whose 2-thread fp32 matmul
peaks at ~105 GFLOP/s), so the figure that carries over is the share of the host's own matmul peak. Measured
here, rounds interleaved so that load from other processes hits every case alike, twice: wall clock on the
quickstart's 2 threads, and process CPU time on 1 thread, which still holds on a loaded host:

- the peak: fp32 matmul at the tiny model's own shape (2048 x 128 @ 128 x 512) and at 1024^3;
- the plain PyTorch loop (forward, cross-entropy, backward, clip, AdamW) on the quickstart's model and batch
  (`tiny` at vocab 4,096, 8 rows of 256 tokens) for each stage: pretraining (causal, every token labelled),
  SFT as it was (packed rows, document mask, logits for every token) and SFT now (logits for the labelled
  tokens only: trainer.titan.loss).

`test_one_process_fsdp_cost`: the same plain loop with the model under FSDP2 `fully_shard` over a one-rank
gloo group, as the trainer ran the quickstart before (trainer.titan.model_spec.needs_fsdp now leaves one fp32
process unsharded), against the plain model, per stage; process CPU time on 1 thread.

`test_malloc_off_mmap_cost`: the plain pretraining and SFT steps with glibc's malloc as a training process has it
now (no mmap, no trimming: trainer.launch.HOST_MALLOC) and as before (its default's steady state: mmap above
32 MiB, trimming above 64 MiB), switched per round with mallopt; process CPU time (user + system) on 1 thread.

Share of peak = model FLOPs per second / peak, with the model FLOPs of the full step (every token through the
head, attention over the whole T x T as the dense SDPA mask computes it), the MFU convention: work the step
skips shows as a higher share. The torchtitan trainer against the same plain loop is test_train_bench's
test_titan_vs_plain_loop.
"""

from __future__ import annotations

import ctypes
import math
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import fully_shard

from common.chat import ChatEncoding
from trainer.configs import MODEL_CONFIGS, ModelConfig
from trainer.model import Transformer
from trainer.titan.loss import labelled_cross_entropy
from trainer.titan.packing import pack_encodings

THREADS = 2  # the quickstart's host: trainer.train.launch gives the one training process every core
BATCH, SEQ_LEN = 8, 256  # the tiny recipe's batch (TrainConfig)
ROUNDS, STEPS = 3, 3  # interleaved rounds of a few steps per case; ~15 s in all on an idle 2-core host
# Grounded SFT conversations (chakor data sft, local:python-grounded): ~150 tokens (IQR 124-173), the
# answer (~14% of the packed tokens) at the end; packed best-fit they fill ~80% of a row.
CONVERSATION_MEAN, CONVERSATION_SD, ANSWER_SHARE = 150, 35, 0.17


def matmul_gflops(m: int, k: int, n: int, clock: Callable[[], float], seconds: float = 0.5) -> float:
    """Best-of-5 fp32 matmul GFLOP/s of [m, k] @ [k, n], timed with `clock`."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    a @ b
    reps = max(1, int(seconds * 100e9 / (2 * m * k * n) / 5))
    best = 0.0
    for _ in range(5):
        start = clock()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * m * k * n * reps / (clock() - start) / 1e9)
    return best


def step_flops(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Matmul FLOPs of one full training step (forward + backward = 3x forward)."""
    d, hd, kv = cfg.dim, cfg.head_dim, cfg.n_kv_heads
    per_layer = d * d * 2 + 2 * d * kv * hd + 3 * d * cfg.ffn_hidden_dim
    weights = cfg.n_layers * per_layer + d * cfg.vocab_size  # the head, tied or not, is a matmul
    attention = 2 * cfg.n_layers * seq_len * d  # q.k and p.v per token per layer, over the whole row
    return 6.0 * (weights + attention) * batch * seq_len


def sft_batch(cfg: ModelConfig, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """8 packed rows of synthetic conversations shaped like the grounded set: inputs, positions, labels."""
    encodings = []
    for _ in range(BATCH * 3):
        n = int(np.clip(rng.normal(CONVERSATION_MEAN, CONVERSATION_SD), 40, SEQ_LEN + 1))
        answer = max(1, int(n * ANSWER_SHARE))
        ids = rng.integers(0, cfg.vocab_size, n).tolist()
        encodings.append(ChatEncoding(ids, [False] * (n - answer) + [True] * answer))
    rows = pack_encodings(encodings, SEQ_LEN, pad_id=0)
    ids = torch.from_numpy(rows.ids[:BATCH])
    labels = ids[:, 1:].clone()
    labels[~torch.from_numpy(rows.learn[:BATCH, 1:])] = -100
    return ids[:, :-1], torch.from_numpy(rows.positions[:BATCH, :-1]), labels


def one_rank_mesh() -> DeviceMesh:
    """A CPU device mesh over a one-process gloo group (started here unless one is running)."""
    if not dist.is_initialized():
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    return init_device_mesh("cpu", (1,), mesh_dim_names=("fsdp",))


def make_step(cfg: ModelConfig, stage: str, mesh: DeviceMesh | None = None) -> Callable[[], None]:
    """One training step of the plain loop for `stage`: pretrain, sft-all-logits or sft-labelled-logits.

    With `mesh`: the model under FSDP2, one unit per block plus the root (trainer.titan.model_spec)."""
    torch.manual_seed(0)
    model = Transformer(cfg)
    if mesh is not None:
        for block in model.layers.values():
            fully_shard(block, mesh=mesh)
        fully_shard(model, mesh=mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    rng = np.random.default_rng(0)
    if stage == "pretrain":
        tokens = torch.randint(0, cfg.vocab_size, (BATCH, SEQ_LEN + 1))
        inputs, positions, labels = tokens[:, :-1], None, tokens[:, 1:]
    else:
        inputs, positions, labels = sft_batch(cfg, rng)
    predict = labels != -100 if stage == "sft-labelled-logits" else None

    def step() -> None:
        pred = model(inputs, positions, predict)
        loss = labelled_cross_entropy(pred, labels) / (labels != -100).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    return step


def time_stages(
    steps: dict[str, Callable[[], None]], threads: int, clock: Callable[[], float]
) -> tuple[float, dict[str, float]]:
    """The matmul peak and each stage's seconds per step (medians of interleaved rounds) on `threads`."""
    torch.set_num_threads(threads)
    for step in steps.values():
        step()  # warm-up: allocations, first-call dispatch
    times: dict[str, list[float]] = {stage: [] for stage in steps}
    peaks = []
    for _ in range(ROUNDS):
        peaks.append(matmul_gflops(2048, 128, 512, clock))
        for stage, step in steps.items():
            start = clock()
            for _ in range(STEPS):
                step()
            times[stage].append((clock() - start) / STEPS)
    return statistics.median(peaks), {stage: statistics.median(t) for stage, t in times.items()}


# Wall clock on the quickstart's 2 threads is the real figure; process CPU time on 1 thread (no OpenMP
# spin-waiting, so no time counted while another process holds the core) still holds when the host is loaded.
CLOCKS = {"wall": (THREADS, time.perf_counter), "cpu-1-thread": (1, time.process_time)}


@pytest.mark.timeout(1800)  # ~30 s on an idle host; much longer when other work shares the cores
def test_training_stages_share_of_matmul_peak(benchmark) -> None:
    cfg = MODEL_CONFIGS["tiny"]
    stages = ("pretrain", "sft-all-logits", "sft-labelled-logits")
    steps = {stage: make_step(cfg, stage) for stage in stages}
    results: dict[str, tuple[float, dict[str, float]]] = {}

    def measure() -> float:
        for name, (threads, clock) in CLOCKS.items():
            results[name] = time_stages(steps, threads, clock)
        times = results["wall"][1]
        return times["sft-all-logits"] / times["sft-labelled-logits"]

    speedup = benchmark.pedantic(measure, rounds=1, iterations=1)
    torch.set_num_threads(THREADS)
    info = benchmark.extra_info
    info.update(
        threads=THREADS, load_average=round(os.getloadavg()[0], 2), sft_speedup=round(speedup, 3),
        peak_gflops_1024=round(matmul_gflops(1024, 1024, 1024, time.perf_counter), 1),
    )  # fmt: skip
    flops = step_flops(cfg, BATCH, SEQ_LEN)
    print(
        f"\nload average {info['load_average']}; fp32 matmul peak {info['peak_gflops_1024']:.1f} GFLOP/s at 1024^3"
    )
    for name, (peak, times) in results.items():
        threads = CLOCKS[name][0]
        info[f"{name}_peak_gflops_model_shape"] = round(peak, 1)
        print(f"{name}, {threads} thread(s): matmul peak {peak:.1f} GFLOP/s at 2048x128@128x512")
        for stage, seconds in times.items():
            share = flops / seconds / 1e9 / peak
            info[f"{name}_{stage}_tokens_per_s"] = round(BATCH * SEQ_LEN / seconds)
            info[f"{name}_{stage}_share_of_peak"] = round(share, 3)
            print(f"  {stage}: {BATCH * SEQ_LEN / seconds:,.0f} tokens/s, {share:.1%} of the matmul peak")
        ratio = times["sft-all-logits"] / times["sft-labelled-logits"]
        info[f"{name}_sft_speedup"] = round(ratio, 3)
        print(f"  SFT step, labelled logits vs all logits: {ratio:.2f}x")
    assert math.isfinite(speedup) and speedup > 0


@pytest.mark.timeout(1800)  # ~20 s on an idle host
def test_one_process_fsdp_cost(benchmark) -> None:
    cfg = MODEL_CONFIGS["tiny"]
    mesh = one_rank_mesh()
    stages = ("pretrain", "sft-labelled-logits")
    steps = {f"{stage} {kind}": make_step(cfg, stage, mesh if kind == "fsdp" else None)
             for stage in stages for kind in ("fsdp", "plain")}  # fmt: skip
    results: dict[str, float] = {}

    def measure() -> float:
        peak, times = time_stages(steps, 1, time.process_time)
        results.update(times, peak=peak)
        return times["pretrain fsdp"] / times["pretrain plain"]

    benchmark.pedantic(measure, rounds=1, iterations=1)
    torch.set_num_threads(THREADS)
    flops, info = step_flops(cfg, BATCH, SEQ_LEN), benchmark.extra_info
    info.update(load_average=round(os.getloadavg()[0], 2), peak_gflops_model_shape=round(results["peak"], 1))
    print(
        f"\nload average {info['load_average']}; 1 thread, CPU time, matmul peak {results['peak']:.1f} GFLOP/s"
    )
    for stage in stages:
        before, after = results[f"{stage} fsdp"], results[f"{stage} plain"]
        for kind, seconds in (("FSDP2 on one rank (before)", before), ("plain module (now)", after)):
            print(f"  {stage}, {kind}: {BATCH * SEQ_LEN / seconds:,.0f} tokens/s, "
                  f"{flops / seconds / 1e9 / results['peak']:.1%} of the matmul peak")  # fmt: skip
        info[f"{stage}_fsdp_over_plain"] = round(before / after, 3)
        print(f"  {stage}: the plain module's step is {before / after:.3f}x faster")
    assert all(math.isfinite(v) and v > 0 for v in results.values())


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters (malloc.h)
# Before: glibc's default once its dynamic threshold has risen to its 32 MiB cap (trimming at twice that);
# now: what trainer.launch.HOST_MALLOC sets through the environment.
MALLOC_BEFORE = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20, M_MMAP_MAX: 65536}
MALLOC_NOW = {M_MMAP_MAX: 0, M_TRIM_THRESHOLD: 1 << 30}


@pytest.mark.timeout(1800)  # ~20 s on an idle host
def test_malloc_off_mmap_cost(benchmark) -> None:
    libc = ctypes.CDLL("libc.so.6")
    cfg = MODEL_CONFIGS["tiny"]
    stages = ("pretrain", "sft-labelled-logits")
    steps = {stage: make_step(cfg, stage) for stage in stages}
    times: dict[str, list[float]] = {f"{stage} {kind}": [] for stage in stages for kind in ("before", "now")}
    torch.set_num_threads(1)

    def measure() -> float:
        for _ in range(ROUNDS):
            for kind, settings in (("before", MALLOC_BEFORE), ("now", MALLOC_NOW)):
                for param, value in settings.items():
                    assert libc.mallopt(param, value) == 1
                for stage, step in steps.items():
                    step()  # the first step under these settings allocates afresh
                    start = time.process_time()
                    for _ in range(STEPS):
                        step()
                    times[f"{stage} {kind}"].append((time.process_time() - start) / STEPS)
        return statistics.median(times["pretrain before"]) / statistics.median(times["pretrain now"])

    benchmark.pedantic(measure, rounds=1, iterations=1)
    for param, value in MALLOC_BEFORE.items():
        libc.mallopt(param, value)
    peak = matmul_gflops(2048, 128, 512, time.process_time)  # 1 thread, like the steps
    torch.set_num_threads(THREADS)
    flops, info = step_flops(cfg, BATCH, SEQ_LEN), benchmark.extra_info
    info.update(load_average=round(os.getloadavg()[0], 2), peak_gflops_model_shape=round(peak, 1))
    print(
        f"\nload average {info['load_average']}; 1 thread, CPU time (user + system), peak {peak:.1f} GFLOP/s"
    )
    for stage in stages:
        before, now = (statistics.median(times[f"{stage} {kind}"]) for kind in ("before", "now"))
        for kind, seconds in (("mmap above 32 MiB (before)", before), ("no mmap (now)", now)):
            print(f"  {stage}, {kind}: {BATCH * SEQ_LEN / seconds:,.0f} tokens/s, "
                  f"{flops / seconds / 1e9 / peak:.1%} of the matmul peak")  # fmt: skip
        info[f"{stage}_before_over_now"] = round(before / now, 3)
        print(f"  {stage}: {before / now:.3f}x")
    assert all(math.isfinite(t) and t > 0 for ts in times.values() for t in ts)

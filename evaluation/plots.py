"""The eval's PNGs: loss curves of the training runs and the KL divergence of each quant against its gate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evaluation.report import Benchmarks, QuantRow
from trainer.metrics import METRICS_FILE, plot_loss_curves, pyplot

LOSS_PNG = "eval-loss.png"
KLD_PNG = "eval-kld.png"
BENCHMARKS_PNG = "eval-benchmarks.png"


def draw(
    runs: Sequence[Path], rows: Sequence[QuantRow], out_dir: Path, scores: Benchmarks | None = None
) -> dict[str, str]:
    """The loss curves of `runs`, the KLD bars of `rows` and the benchmark bars in `out_dir`: name by plot."""
    drawn = {
        "loss": plot_loss_curves([Path(run) / METRICS_FILE for run in runs], out_dir / LOSS_PNG),
        "kld": kld_bars(rows, out_dir / KLD_PNG),
        "benchmarks": None if scores is None else benchmark_bars(scores, out_dir / BENCHMARKS_PNG),
    }
    return {name: path.name for name, path in drawn.items() if path is not None}


def kld_bars(rows: Sequence[QuantRow], png: Path) -> Path | None:
    """Mean KLD per quant (log scale) with its gate as a tick; green passed, red failed; None without a quant."""
    scored = [
        (row, row.kld.mean_kld, row.gate) for row in rows if row.kld is not None and row.gate is not None
    ]
    if not scored:
        return None
    plt = pyplot()
    floor = 1e-8  # a log axis cannot show 0 (or llama.cpp's tiny negative means from rounding)
    fig, ax = plt.subplots(figsize=(1.4 * len(scored) + 2.5, 3.6))
    names = [row.quant for row, _, _ in scored]
    values = [max(mean, floor) for _, mean, _ in scored]
    colors = ["#2e7d32" if row.passed else "#c62828" for row, _, _ in scored]
    ax.bar(names, values, color=colors)
    ax.scatter(
        names, [gate.max_mean_kld for _, _, gate in scored], marker="_", s=900, color="black", label="gate"
    )
    for name, (_, mean, _), value in zip(names, scored, values, strict=True):
        label = f"{mean:.2g}" if mean > 0 else "< 5e-7"  # llama.cpp prints 6 decimals
        ax.annotate(label, (name, value), ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("mean KL divergence vs f32")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return Path(png)


def benchmark_bars(scores: Benchmarks, png: Path) -> Path | None:
    """Each task's headline accuracy on PyTorch with its chance as a tick, CORE in the title; None without tasks."""
    if not scores.tasks:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 * len(scores.tasks) + 2.5), 3.6))  # room for the title
    names = [task.task for task in scores.tasks]
    values = [
        task.accuracy_norm if task.accuracy_norm is not None else task.accuracy for task in scores.tasks
    ]
    ax.bar(names, values, color="#1565c0")
    ax.scatter(
        names, [task.chance for task in scores.tasks], marker="_", s=900, color="black", label="chance"
    )
    for name, value in zip(names, values, strict=True):
        ax.annotate(f"{value:.1%}", (name, value), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (PyTorch)")
    core = "-" if scores.core is None else f"{scores.core:.3f}"
    ax.set_title(f"CORE {core} ({len(scores.tasks)} tasks, centred mean)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return Path(png)

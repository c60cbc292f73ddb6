"""The eval's PNGs: loss curves of the training runs and the KL divergence of each quant against its gate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trainer.metrics import METRICS_FILE, read_metrics

LOSS_PNG = "eval-loss.png"
KLD_PNG = "eval-kld.png"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curves(runs: Sequence[Path], png: Path) -> Path | None:
    """Train and validation loss of each run (pretrain, then SFT) against its step; None without metrics."""
    plt = _pyplot()
    series = [(Path(run).name, read_metrics(Path(run) / METRICS_FILE)) for run in runs]
    series = [(name, records) for name, records in series if records]
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.6), squeeze=False)
    for ax, (name, records) in zip(axes[0], series, strict=True):
        train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
        val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        if train:
            ax.plot(*zip(*train, strict=True), label="train", linewidth=1)
        if val:
            ax.plot(*zip(*val, strict=True), "o-", label="validation")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return Path(png)


def kld_bars(rows: Sequence[dict[str, Any]], png: Path) -> Path | None:
    """Mean KLD per quant (log scale) with its gate as a tick; green passed, red failed."""
    rows = [r for r in rows if r.get("mean_kld") is not None]
    if not rows:
        return None
    plt = _pyplot()
    floor = 1e-8  # a log axis cannot show 0 (or llama.cpp's tiny negative means from rounding)
    fig, ax = plt.subplots(figsize=(1.4 * len(rows) + 2.5, 3.6))
    names = [r["quant"] for r in rows]
    values = [max(r["mean_kld"], floor) for r in rows]
    colors = ["#2e7d32" if r["passed"] else "#c62828" for r in rows]
    ax.bar(names, values, color=colors)
    ax.scatter(
        names, [r["gate"]["max_mean_kld"] for r in rows], marker="_", s=900, color="black", label="gate"
    )
    for name, row, value in zip(names, rows, values, strict=True):
        label = f"{row['mean_kld']:.2g}" if row["mean_kld"] > 0 else "< 5e-7"  # llama.cpp prints 6 decimals
        ax.annotate(label, (name, value), ha="center", va="bottom", fontsize=9)
    ax.set_yscale("log")
    ax.set_ylabel("mean KL divergence vs f32")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return Path(png)

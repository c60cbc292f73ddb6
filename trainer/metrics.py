"""Run metrics: one JSON object per line in `metrics.jsonl`, and a loss-curve PNG drawn from it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"
LOSS_PNG = "loss.png"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics file (empty when it does not exist)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class MetricsWriter:
    """Appends records to a JSONL file.

    A resumed run starts again after its last checkpoint, so the first record a writer logs drops
    older records with the same or a later step: the file always tells one consistent history.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._first = True

    def log(self, record: dict[str, Any]) -> None:
        if self._first:
            self._first = False
            step = record.get("step")
            kept = [r for r in read_metrics(self.path) if step is None or r.get("step", 0) < step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (no display)."""
    # imported on first use: matplotlib takes ~0.5 s to import, and most users of this module draw nothing
    import matplotlib

    matplotlib.use("Agg")
    # after choosing the Agg backend, which must come first
    import matplotlib.pyplot as plt

    return plt


def plot_loss_curves(metrics_paths: Sequence[Path], png_path: Path) -> Path | None:
    """Train and validation loss against step, one panel per metrics file, titled with its run folder's name.

    The training run's loss.png and `chakor eval`'s runs side by side (pretrain, then SFT) are both drawn
    here. Files without records get no panel; returns the PNG path, or None (and no PNG) when none has any.
    """
    series = [(Path(path).parent.name, records) for path in metrics_paths if (records := read_metrics(path))]
    if not series:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 3.8), squeeze=False)
    for ax, (name, records) in zip(axes[0], series, strict=True):
        train = [(r["step"], r["loss"]) for r in records if r.get("loss") is not None]
        val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
        if train:
            ax.plot(*zip(*train, strict=True), label="train loss", linewidth=1)
        if val:
            ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
    return Path(png_path)

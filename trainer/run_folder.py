"""The run folder made by `chakor train` / `chakor sft` and read by `chakor export` (docs/interfaces.md).

`run.json` (configs), `tokenizer/`, `checkpoint/step-N/` (DCP), `metrics.jsonl`, `loss.png`,
`samples.jsonl`, `train.log`. The helpers here only read and write those files; the launcher
(trainer.train) and the exporter (trainer.export) both use them, so neither imports the other's helpers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from trainer.tokenizer.train import TOKENIZER_FILES

RUN_FILE = "run.json"
LOG_FILE = "train.log"
TOKENIZER_SUBDIR = "tokenizer"
CHECKPOINT_SUBDIR = "checkpoint"


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the complete DCP checkpoints in a run folder, ascending."""
    folder = Path(run_dir) / CHECKPOINT_SUBDIR
    if not folder.is_dir():
        return []
    return sorted(int(p.name.split("-")[1]) for p in folder.glob("step-*") if (p / ".metadata").is_file())


def read_run(run_dir: Path) -> dict[str, Any]:
    """A run folder's `run.json`."""
    path = Path(run_dir) / RUN_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {run_dir} is not a chakor run folder")
    return json.loads(path.read_text())


def write_run(out: Path, run: dict[str, Any], tokenizer_dir: Path) -> None:
    """Write `run.json` and copy the tokenizer into `out/tokenizer` (unless it is already there)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / TOKENIZER_SUBDIR).mkdir(exist_ok=True)
    if Path(tokenizer_dir).resolve() != (out / TOKENIZER_SUBDIR).resolve():
        for name in TOKENIZER_FILES:
            shutil.copyfile(Path(tokenizer_dir) / name, out / TOKENIZER_SUBDIR / name)
    (out / RUN_FILE).write_text(json.dumps(run, indent=2) + "\n")


def git_commit() -> str | None:
    """The repository's HEAD commit, or None outside a repository / before the first commit."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None

"""benchmarks/gpu/validate.sh --cpu: the GPU check's every step, on the CPU with `tiny` (how CI checks the script)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from common import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "gpu" / "validate.sh"
STEPS = (
    "sdpa probe",
    "pretrain",
    "resume",
    "sft",
    "verify (llama.cpp reproduces the export)",
    "KL-divergence gates",
)


def _run(*args: str, timeout: float) -> tuple[int, str, str]:
    """Run the script in its own session; on timeout the whole group goes (torchrun and its ranks too)."""
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"validate.sh did not finish in {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out, err


@pytest.mark.slow
def test_validate_script_passes_on_the_cpu(tmp_path: Path) -> None:
    code, out, err = _run("--cpu", "--work", str(tmp_path / "work"), timeout=1800)
    assert code == 0, (out + err)[-4000:]
    for step in STEPS:
        assert f"PASS {step}" in out, step
    assert "PASS: every step" in out
    assert "attention backend: sdpa with a dense document mask" in out
    assert (tmp_path / "work" / "eval" / "eval.json").is_file()


def test_validate_script_refuses_bad_options(tmp_path: Path) -> None:
    code, _, err = _run("--gpus", "8", timeout=60)
    assert code == 2 and "unknown option --gpus" in err
    (tmp_path / "old-run").mkdir()
    code, _, err = _run("--cpu", "--work", str(tmp_path), timeout=60)
    assert code == 2 and f"--work {tmp_path} is not empty" in err

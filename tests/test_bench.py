"""`chakor bench` end to end in its cheapest mode: one benchmark, one round, then the written report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def test_bench_runs_a_selection_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "results"
    argv = [
        sys.executable,
        "-m",
        "chakor",
        "bench",
        "--out",
        str(out),
        "-k",
        "inference_path_overhead and served",
    ]
    argv += ["--inference-rounds", "1", "--no-compare-llama-cpp"]
    env = {**os.environ, "COLUMNS": "200", "CHAKOR_RUNS_DIR": str(tmp_path / "runs")}  # no quickstart here
    env.pop("CHAKOR_MODEL_PATH", None)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [results] = out.glob("*.json")
    [markdown] = out.glob("*.md")
    assert sorted(p.name for p in out.glob("*.png")) == [f"{results.stem}-inference.png"]
    [bench] = json.loads(results.read_text())["benchmarks"]
    assert bench["name"] == "test_inference_path_overhead[served]"
    info = bench["extra_info"]
    assert (info["scenario"], info["rounds"], info["n_predict"]) == ("served", 1, 256)
    assert info["model"].startswith("STAND-IN, not the served model")
    assert set(info["paths"]) == {"direct", "graphql", "nginx", "v1"}
    report = markdown.read_text()
    added = info["verdicts"]["graphql"]["added_ttft_ms"]
    verdict = "met" if added["met"] else "**MISSED**"
    assert f"- graphql vs direct: added TTFT {added['value']:.1f} ms (target <= 5 ms: {verdict})" in report
    v1 = info["added"]["v1_vs_graphql"]
    assert f"- /v1 vs GraphQL: added TTFT {v1['added_ttft_ms']:.1f} ms" in report
    assert "**Not run**" in report  # the converter comparison was switched off and the report says so

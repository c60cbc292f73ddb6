"""The same prepare pipeline on datatrove's Ray and Slurm executors gives what the local executor gives.

The sources are the planted corpus (a folder, a JSONL file) and a glob of two parquet files, which the
read stage splits into one task per file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dill
import pytest

from tests.data.corpus import PARQUET_DOCS
from trainer.data.dedup import DedupConfig
from trainer.data.executor import ExecutorConfig
from trainer.data.prepare import PrepareConfig, prepare, submit_prepare

STAGES = [
    "read",
    "filter",
    "exact-find",
    "exact-filter",
    "minhash-buckets",
    "minhash-cluster",
    "minhash-filter",
    "finish",
]


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k != "executor"}


@pytest.fixture(scope="module")
def sources(corpus_sources: list[str], parquet_glob: str) -> list[str]:
    return [*corpus_sources, parquet_glob]


@pytest.fixture(scope="module")
def local_output(sources: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("local") / "data"
    prepare(PrepareConfig(sources=sources, out_dir=out, seed=7, tasks=2))
    return out


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """One local Ray cluster with 2 CPUs (2 workers) for this module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_ray_executor_gives_the_local_documents(
    ray_cluster: None, sources: list[str], parquet_glob: str, tmp_path: Path
) -> None:
    # 4 LSH bands of 4 hashes instead of 14 x 8: fewer Ray actors to start, the planted near
    # duplicates (one word changed, Jaccard > 0.9) are still found with probability > 0.99
    dedup = DedupConfig(num_buckets=4, hashes_per_bucket=4)
    local = tmp_path / "local"
    prepare(PrepareConfig(sources=sources, out_dir=local, seed=7, tasks=2, dedup=dedup))
    out = tmp_path / "data"
    executor = ExecutorConfig(kind="ray", mem_per_cpu_gb=0.25)
    config = PrepareConfig(
        sources=sources, out_dir=out, seed=7, tasks=2, workers=2, dedup=dedup, executor=executor
    )
    report = prepare(config)
    assert report["executor"] == "ray" and report["documents"] == 10 + len(PARQUET_DOCS)
    assert report["sources"][parquet_glob]["files"] == 2
    assert report["sources"][parquet_glob]["kept_docs"] == len(PARQUET_DOCS)
    ray_files, local_files = files(out), files(local)
    assert ray_files.keys() == local_files.keys() == {"docs-00000.jsonl", "docs-00001.jsonl", "report.json"}
    for name in ("docs-00000.jsonl", "docs-00001.jsonl"):
        assert ray_files[name] == local_files[name]
    assert comparable(json.loads(ray_files["report.json"])) == comparable(
        json.loads(local_files["report.json"])
    )


def test_slurm_submits_dependent_job_arrays_that_run(
    monkeypatch: pytest.MonkeyPatch, local_output: Path, sources: list[str], tmp_path: Path
) -> None:
    """No Slurm here: record what datatrove hands to `sbatch`, then run each job's pickled pipeline as
    a Slurm array task would (`launch_pickled_pipeline`: load executor.pik, SLURM_ARRAY_TASK_ID)."""
    import datatrove.executor.slurm as slurm

    submitted: list[tuple[str, tuple[str, ...]]] = []

    def fake_sbatch(script: str, job_id_retriever: Any, *args: str) -> str:
        submitted.append((script, args))
        return str(1000 + len(submitted))

    monkeypatch.setattr(slurm, "launch_slurm_job", fake_sbatch)
    out = tmp_path / "data"
    executor = ExecutorConfig(
        kind="slurm",
        workers=2,
        partition="cpu",
        time="01:00:00",
        cpus_per_task=2,
        venv="/opt/venv/bin/activate",
    )
    config = PrepareConfig(sources=sources, out_dir=out, seed=7, tasks=2, workers=2, executor=executor)
    jobs, work = submit_prepare(config)
    assert not out.exists()  # nothing runs at submission

    arrays = [(script, args) for script, args in submitted if "launch_pickled_pipeline" in script]
    assert len(arrays) == len(STAGES) and len(jobs) == len(STAGES)
    # read: the folder, the JSONL file, and one task per parquet file
    expected_tasks = {"read": 4, "minhash-buckets": 14, "exact-find": 1, "minhash-cluster": 1, "finish": 1}
    job_ids = {script: str(1001 + submitted.index((script, args))) for script, args in arrays}
    previous = None
    for stage, (script, args) in zip(STAGES, arrays, strict=True):
        tasks = expected_tasks.get(stage, 2)
        pickle = work / "logs" / stage / "executor.pik"
        assert script.startswith("#!/bin/bash\n")
        for line in (
            "#SBATCH --partition=cpu",
            "#SBATCH --time=01:00:00",
            "#SBATCH --cpus-per-task=2",
            "#SBATCH --mem-per-cpu=2.0G",
            f"#SBATCH --job-name=chakor-prepare-{stage}",
            f"#SBATCH --array=0-{tasks - 1}%2",
            "source /opt/venv/bin/activate",
            f"srun  -l -n 1 launch_pickled_pipeline {pickle}",
        ):
            assert line in script.splitlines(), line
        assert (work / "logs" / stage / "launch_script.slurm").read_text() == script
        if previous is None:
            assert not any(arg.startswith("--dependency") for arg in args)
        else:
            assert f"--dependency=afterok:{job_ids[previous]}" in args
        previous = script

    # Run the jobs in dependency order, each array index in turn, as Slurm would (with `scontrol`'s
    # host-list expansion replaced too: there is no Slurm here).
    monkeypatch.setattr(slurm, "expand_slurm_nodelist", lambda nodelist: [nodelist])
    monkeypatch.setenv("SLURM_NODELIST", "localhost")
    for stage in STAGES:
        logs = work / "logs" / stage
        executor_pik = dill.loads((logs / "executor.pik").read_bytes())
        for index in range(len(json.loads((logs / "ranks_to_run.json").read_text()))):
            monkeypatch.setenv("SLURM_ARRAY_TASK_ID", str(index))
            executor_pik.run()
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    assert files(out).keys() == files(local_output).keys()
    for name in ("docs-00000.jsonl", "docs-00001.jsonl"):
        assert (out / name).read_bytes() == (local_output / name).read_bytes()
    kept = [
        json.loads(line) for name in ("docs-00000.jsonl", "docs-00001.jsonl") for line in (out / name).open()
    ]
    assert sorted(d["text"] for d in kept if d["source"] == sources[2]) == sorted(PARQUET_DOCS)
    assert os.environ.get("SLURM_ARRAY_TASK_ID") is None

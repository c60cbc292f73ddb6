"""`chakor bench`: the benchmark suite (pytest-benchmark) against the real stack, then the report."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer
from rich.markup import escape

from chakor.bench_tools import ToolsUnavailable, llama_cpp_converter
from common import REPO_ROOT
from common.cli import FAILED, console, fail

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
# pytest's exit codes for a bad option (ExitCode.USAGE_ERROR) and a `-k` that selects nothing
# (ExitCode.NO_TESTS_COLLECTED): the command cannot run as given.
PYTEST_USAGE_ERRORS = (4, 5)


def converter_env() -> dict[str, str]:
    """CHAKOR_LLAMA_CPP_DIR for the converter comparison, or CHAKOR_LLAMA_CPP_UNAVAILABLE saying why not."""
    try:
        return {"CHAKOR_LLAMA_CPP_DIR": str(llama_cpp_converter(REPO_ROOT / ".tools"))}
    except ToolsUnavailable as exc:
        console.print(
            "[yellow]llama.cpp's convert_hf_to_gguf.py is not available, the comparison will not run: "
            f"{escape(str(exc))}[/]"
        )
        return {"CHAKOR_LLAMA_CPP_UNAVAILABLE": str(exc)}


def register(app: typer.Typer) -> None:
    """Add `chakor bench` to the CLI."""

    @app.command()
    def bench(
        out: Path = typer.Option(RESULTS_DIR, help="Where <date>.json, <date>.md and the plots go."),
        select: str = typer.Option("", "-k", help="Only benchmarks matching this pytest -k expression."),
        concurrency: str = typer.Option("1,8,32,64", help="Simultaneous chat streams to measure."),
        inference_rounds: int = typer.Option(100, help="Rotated direct/GraphQL/nginx rounds, served model."),
        paced_rounds: int = typer.Option(16, help="The same with the model paced at 30 tokens/s."),
        load_streams: int = typer.Option(64, help="Chat streams in the load benchmark."),
        load_queries: int = typer.Option(200, help="Concurrent query loops in the load benchmark."),
        load_seconds: float = typer.Option(60.0, help="Duration of the load benchmark."),
        compare_llama_cpp: bool = typer.Option(
            True, help="Set up llama.cpp's convert_hf_to_gguf.py (downloads once) to compare the converter."
        ),
    ) -> None:
        """Run benchmarks/ and write results, a markdown summary and PNG plots."""
        out.mkdir(parents=True, exist_ok=True)
        results = out / f"{datetime.now(UTC):%Y-%m-%d}.json"
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "benchmarks",
            "--benchmark-enable",
            f"--benchmark-json={results}",
            f"--concurrency={concurrency}",
            f"--inference-rounds={inference_rounds}",
            f"--paced-rounds={paced_rounds}",
            f"--load-streams={load_streams}",
            f"--load-queries={load_queries}",
            f"--load-seconds={load_seconds}",
            *(["-k", select] if select else []),
        ]
        tools = (
            converter_env()
            if compare_llama_cpp
            else {"CHAKOR_LLAMA_CPP_UNAVAILABLE": "--no-compare-llama-cpp"}
        )
        code = subprocess.run(argv, cwd=REPO_ROOT, env={**os.environ, **tools}).returncode
        if code in PYTEST_USAGE_ERRORS:
            fail(f"pytest exited with {code}: a bad option, or -k {select!r} selects no benchmark")
        if results.exists():  # a report of what ran, even when some benchmark failed
            report = [sys.executable, "-m", "benchmarks.report", str(results), str(out)]
            if written := subprocess.run(report, cwd=REPO_ROOT).returncode:
                fail(f"benchmarks.report exited with {written}", FAILED)
        if code:
            fail(f"pytest exited with {code}: a benchmark failed (see above)", FAILED)

"""Benchmark report: pytest-benchmark JSON -> `benchmarks/results/<date>.{json,md}` and PNG plots.

usage: python -m benchmarks.report RESULTS.json [OUT_DIR]
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

RESULTS_DIR = Path(__file__).parent / "results"
INFERENCE = "test_inference_path_overhead"
CONCURRENCY = "test_concurrency"
LOAD = "test_load"


def quantiles(values: list[float]) -> dict[str, float]:
    """p50, p95, p99 (nearest rank), mean and count of `values` (NaNs dropped)."""
    data = sorted(v for v in values if not math.isnan(v))
    if not data:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "mean": math.nan, "n": 0}

    def rank(q: float) -> float:
        return data[min(len(data) - 1, max(0, math.ceil(q * len(data)) - 1))]

    return {
        "p50": rank(0.5),
        "p95": rank(0.95),
        "p99": rank(0.99),
        "mean": statistics.fmean(data),
        "n": len(data),
    }


def _by_name(results: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    return [b for b in results["benchmarks"] if b["name"].startswith(prefix)]


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def inference_section(bench: dict[str, Any]) -> list[str]:
    info = bench["extra_info"]
    lines = [
        f"### Inference path overhead (tiny model, {info['rounds']} interleaved rounds, n_predict {info['n_predict']}, greedy)",
        "",
        "| path | TTFT p50 (ms) | TTFT p95 (ms) | tokens/s p50 (first to last token) | "
        "tokens/s p50 (request to last token) | tokens/answer | backend CPU ms/token |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, stats in info["paths"].items():
        lines.append(
            f"| {path} | {_fmt(stats['ttft_ms']['p50'])} | {_fmt(stats['ttft_ms']['p95'])} | "
            f"{_fmt(stats['tokens_per_second']['p50'])} | "
            f"{_fmt(stats['end_to_end_tokens_per_second']['p50'])} | {_fmt(stats['tokens_per_answer'])} | "
            f"{_fmt(stats['backend_cpu_ms_per_token'])} |"
        )
    targets = info["targets"]
    lines += [
        "",
        f"- GraphQL tokens/s vs direct: **{info['graphql_tps_ratio']:.1%}** (target >= 98%: "
        f"{'met' if targets['graphql_tps_met'] else 'MISSED'})",
        f"- GraphQL added median TTFT: **{info['graphql_ttft_added_ms']:.1f} ms** (target <= 5 ms: "
        f"{'met' if targets['graphql_ttft_met'] else 'MISSED'})",
        f"- GraphQL request-to-last-token tokens/s vs direct: {info['graphql_e2e_tps_ratio']:.1%}",
        f"- via nginx: tokens/s {info['nginx_tps_ratio']:.1%} of direct, added median TTFT "
        f"{info['nginx_ttft_added_ms']:.1f} ms",
        "",
    ]
    return lines


def concurrency_section(benches: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### Concurrency (simultaneous chat subscriptions, distinct users)",
        "",
        "| streams | TTFT p50 / p95 / p99 (ms) | inter-token p50 / p95 / p99 (ms) | backend CPU ms/token | "
        "tokens | tokens lost |",
        "|---|---|---|---|---|---|",
    ]
    for bench in sorted(benches, key=lambda b: b["extra_info"]["streams"]):
        info = bench["extra_info"]
        ttft, gap = info["ttft_ms"], info["inter_token_ms"]
        lines.append(
            f"| {info['streams']} | {_fmt(ttft['p50'])} / {_fmt(ttft['p95'])} / {_fmt(ttft['p99'])} | "
            f"{_fmt(gap['p50'])} / {_fmt(gap['p95'])} / {_fmt(gap['p99'])} | "
            f"{_fmt(info['backend_cpu_ms_per_token'])} | {info['tokens']} | {info['tokens_lost']} |"
        )
    return [*lines, ""]


def load_section(bench: dict[str, Any]) -> list[str]:
    info = bench["extra_info"]
    return [
        f"### Load ({info['streams']} chat streams + {info['query_workers']} query loops for {info['seconds']:.0f} s)",
        "",
        "| chats | queries | errors | lost or corrupted | backend RSS before -> after (MB) | TTFT p50 / p99 (ms) |",
        "|---|---|---|---|---|---|",
        f"| {info['chats']} | {info['queries']} | {info['errors']} | {info['lost']} | "
        f"{info['rss_before_mb']:.0f} -> {info['rss_after_mb']:.0f} | "
        f"{_fmt(info['ttft_ms']['p50'])} / {_fmt(info['ttft_ms']['p99'])} |",
        "",
    ]


def other_section(benches: list[dict[str, Any]]) -> list[str]:
    """Every other benchmark (data, training, converter): timing stats and scalar extra_info."""
    if not benches:
        return []
    lines = [
        "### Other benchmarks",
        "",
        "| benchmark | mean (s) | min (s) | rounds | measured |",
        "|---|---|---|---|---|",
    ]
    for bench in benches:
        stats = bench["stats"]
        extra = ", ".join(
            f"{key} {_fmt(value)}"
            for key, value in bench.get("extra_info", {}).items()
            if isinstance(value, int | float | str | bool)
        )
        lines.append(
            f"| {bench['fullname']} | {_fmt(stats['mean'])} | {_fmt(stats['min'])} | {stats['rounds']} | {extra} |"
        )
    return [*lines, ""]


def plot_inference(bench: dict[str, Any], path: Path) -> None:
    paths = bench["extra_info"]["paths"]
    names = list(paths)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.bar(names, [paths[n]["ttft_ms"]["p50"] for n in names], color="tab:blue")
    left.set_title("median time to first token (ms)")
    right.bar(names, [paths[n]["tokens_per_second"]["p50"] for n in names], color="tab:green")
    right.set_title("median tokens/s per answer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_concurrency(benches: list[dict[str, Any]], path: Path) -> None:
    infos = sorted((b["extra_info"] for b in benches), key=lambda i: i["streams"])
    streams = [i["streams"] for i in infos]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, key, title in zip(
        axes, ("ttft_ms", "inter_token_ms"), ("TTFT (ms)", "inter-token (ms)"), strict=True
    ):
        for q in ("p50", "p95", "p99"):
            axis.plot(streams, [i[key][q] for i in infos], marker="o", label=q)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("simultaneous streams")
        axis.set_title(title)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_report(results_json: Path, out_dir: Path = RESULTS_DIR) -> Path:
    """Copy the results to `<date>.json`, write `<date>.md` and the plots; the markdown's path."""
    results = json.loads(results_json.read_text())
    date = results["datetime"][:10]
    out_dir.mkdir(parents=True, exist_ok=True)
    if results_json.resolve() != (out_dir / f"{date}.json").resolve():
        shutil.copyfile(results_json, out_dir / f"{date}.json")
    machine = results["machine_info"]
    commit = results.get("commit_info", {})
    lines = [
        f"# Chakor benchmarks {results['datetime'][:19]} UTC",
        "",
        f"Commit {commit.get('id', '?')[:12]}{' (dirty)' if commit.get('dirty') else ''}, "
        f"{machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
        f"{machine.get('cpu', {}).get('count', '?')} CPUs, Python {machine.get('python_version', '?')}. "
        "Command: `make bench` (`chakor bench`).",
        "",
    ]
    inference = _by_name(results, INFERENCE)
    concurrency = _by_name(results, CONCURRENCY)
    load = _by_name(results, LOAD)
    if inference:
        lines += inference_section(inference[0])
        plot_inference(inference[0], out_dir / f"{date}-inference.png")
        lines += [f"![inference paths]({date}-inference.png)", ""]
    if concurrency:
        lines += concurrency_section(concurrency)
        plot_concurrency(concurrency, out_dir / f"{date}-concurrency.png")
        lines += [f"![concurrency]({date}-concurrency.png)", ""]
    if load:
        lines += load_section(load[0])
    mine = {id(b) for b in inference + concurrency + load}
    lines += other_section([b for b in results["benchmarks"] if id(b) not in mine])
    markdown = out_dir / f"{date}.md"
    markdown.write_text("\n".join(lines))
    return markdown


if __name__ == "__main__":
    print(build_report(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS_DIR))

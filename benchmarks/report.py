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
VERSUS_LLAMA_CPP = "test_versus_convert_hf_to_gguf"


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


def _verdict(figure: dict[str, Any]) -> str:
    met = "met" if figure["met"] else "**MISSED**"
    return f"{figure['value']:.1f} ms (target <= {figure['target']:g} ms: {met})"


def inference_section(bench: dict[str, Any]) -> list[str]:
    info = bench["extra_info"]
    pace = info["pace_seconds_per_token"]
    speed = f"each token held {pace * 1000:.1f} ms ({1 / pace:.0f} tokens/s)" if pace else "model's own speed"
    lines = [
        f"### Inference path, {info['scenario']}: {info['model']}; {speed}",
        "",
        f"{info['rounds']} rounds in rotated path order, same prompt ids, greedy, n_predict {info['n_predict']}, "
        "same text and llama-server token count on every path. Chunking delay: a token leaving llama-server "
        "(capture proxy) to the client holding it.",
        "",
        "| path | TTFT p50 / p99 (ms) | request to last token p50 / p99 (ms) | chunking delay p50 / p99 (ms) | "
        "chunks / tokens per answer | backend CPU ms/token | backend CPU ms/answer |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, stats in info["paths"].items():
        ttft, answer, delay = stats["ttft_ms"], stats["answer_ms"], stats["chunk_delay_ms"]
        lines.append(
            f"| {path} | {_fmt(ttft['p50'])} / {_fmt(ttft['p99'])} | {_fmt(answer['p50'])} / {_fmt(answer['p99'])} | "
            f"{_fmt(delay['p50'])} / {_fmt(delay['p99'])} | "
            f"{_fmt(stats['chunks_per_answer'])} / {_fmt(stats['tokens_per_answer'])} | "
            f"{_fmt(stats['backend_cpu_ms_per_token'])} | {_fmt(stats.get('backend_cpu_ms_per_answer', math.nan))} |"
        )
    lines += ["", "Median of per-round paired differences (same prompt, same round):", ""]
    for path in info["verdicts"]:
        verdicts = info["verdicts"][path]
        lines.append(
            f"- {path} vs direct: added TTFT {_verdict(verdicts['added_ttft_ms'])}; added request-to-last-token "
            f"{_verdict(verdicts['added_answer_ms'])}; chunking delay p99 {_verdict(verdicts['chunk_delay_p99_ms'])}"
        )
    nginx = info["added"]["nginx_vs_graphql"]
    lines.append(
        f"- nginx in front of GraphQL vs GraphQL alone: added TTFT {nginx['added_ttft_ms']:.1f} ms, added request-to-last-token "
        f"{nginx['added_answer_ms']:.1f} ms"
    )
    if v1 := info["added"].get("v1_vs_graphql"):
        lines.append(
            f"- /v1 vs GraphQL: added TTFT {v1['added_ttft_ms']:.1f} ms, added request-to-last-token "
            f"{v1['added_answer_ms']:.1f} ms"
        )
    lines.append("")
    return lines


def concurrency_section(benches: list[dict[str, Any]]) -> list[str]:
    lines = [
        "### Concurrency (simultaneous chat subscriptions, distinct users and questions)",
        "",
        f"Model: {benches[0]['extra_info'].get('model', '?')}. Chunking delay: a token leaving llama-server "
        "to the client holding it.",
        "",
        "| streams | TTFT p50 / p95 / p99 (ms) | chunking delay p50 / p95 / p99 (ms) | backend CPU ms/token | "
        "tokens generated | tokens lost (client = stored = generated) | tokens/s direct / GraphQL / v1 | "
        "backend CPU ms/token v1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bench in sorted(benches, key=lambda b: b["extra_info"]["streams"]):
        info = bench["extra_info"]
        ttft, gap = info["ttft_ms"], info["chunk_delay_ms"]
        paths = info.get("paths", {})
        speeds = " / ".join(
            _fmt(paths[p]["tokens_per_second"]) if p in paths else "-" for p in ("direct", "graphql", "v1")
        )
        v1_cpu = _fmt(paths["v1"]["backend_cpu_ms_per_token"]) if "v1" in paths else "-"
        lines.append(
            f"| {info['streams']} | {_fmt(ttft['p50'])} / {_fmt(ttft['p95'])} / {_fmt(ttft['p99'])} | "
            f"{_fmt(gap['p50'])} / {_fmt(gap['p95'])} / {_fmt(gap['p99'])} | "
            f"{_fmt(info['backend_cpu_ms_per_token'])} | {info['tokens']} | {info['tokens_lost']} | "
            f"{speeds} | {v1_cpu} |"
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


def converter_section(benches: list[dict[str, Any]]) -> list[str]:
    """Our converter vs llama.cpp's convert_hf_to_gguf.py, or why that comparison did not run."""
    title = "### Converter vs llama.cpp's convert_hf_to_gguf.py (f16, same model)"
    if not benches:
        return [title, "", "**Not run**: no such entry in this results file.", ""]
    info = benches[0]["extra_info"]
    if "not_run" in info:
        return [title, "", f"**Not run**: {info['not_run']}", ""]
    return [
        title,
        "",
        f"Ours {info['ours_s']} s, theirs {info['theirs_s']} s (best of {benches[0]['stats']['rounds']}): "
        f"time ratio {info['time_ratio_ours_over_theirs']}; identical f16 tensors {info['identical_tensors']}.",
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


def plot_inference(benches: list[dict[str, Any]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(benches), figsize=(4.5 * len(benches), 3.5), squeeze=False)
    for axis, bench in zip(axes[0], benches, strict=True):
        info = bench["extra_info"]
        names = list(info["paths"])
        for offset, (key, label) in enumerate(
            (("ttft_ms", "TTFT"), ("chunk_delay_ms", "chunking delay p99"))
        ):
            quantile = "p50" if key == "ttft_ms" else "p99"
            values = [info["paths"][n][key][quantile] for n in names]
            axis.bar([i + offset * 0.4 for i in range(len(names))], values, width=0.4, label=label)
        axis.set_xticks([i + 0.2 for i in range(len(names))], names)
        axis.set_title(f"{info['scenario']} (ms)")
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_concurrency(benches: list[dict[str, Any]], path: Path) -> None:
    infos = sorted((b["extra_info"] for b in benches), key=lambda i: i["streams"])
    streams = [i["streams"] for i in infos]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for axis, key, title in zip(
        axes, ("ttft_ms", "chunk_delay_ms"), ("TTFT (ms)", "chunking delay (ms)"), strict=True
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
        for bench in inference:
            lines += inference_section(bench)
        plot_inference(inference, out_dir / f"{date}-inference.png")
        lines += [f"![inference paths]({date}-inference.png)", ""]
    if concurrency:
        lines += concurrency_section(concurrency)
        plot_concurrency(concurrency, out_dir / f"{date}-concurrency.png")
        lines += [f"![concurrency]({date}-concurrency.png)", ""]
    if load:
        lines += load_section(load[0])
    versus = _by_name(results, VERSUS_LLAMA_CPP)
    lines += converter_section(versus)
    mine = {id(b) for b in inference + concurrency + load + versus}
    lines += other_section([b for b in results["benchmarks"] if id(b) not in mine])
    markdown = out_dir / f"{date}.md"
    markdown.write_text("\n".join(lines))
    return markdown


if __name__ == "__main__":
    print(build_report(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else RESULTS_DIR))

"""eval.json and eval.md: writing them, and finding the report that vouches for a GGUF.

Kept free of torch and llama.cpp imports: the backend and `chakor up` read reports with it.
eval.json's keys are listed in docs/interfaces.md ("Eval report").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from common.hashing import sha256_file

EVAL_JSON = "eval.json"
EVAL_MD = "eval.md"
VERSION = 1


def read_report(path: Path) -> dict[str, Any] | None:
    """An eval.json, or None when it is missing or not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == VERSION else None


def row_for(report: dict[str, Any], gguf: Path) -> dict[str, Any] | None:
    """The quant table row of `gguf` (same file name and SHA-256), or None when the report does not cover it."""
    gguf = Path(gguf)
    rows = [r for r in report.get("quantization", {}).get("rows", []) if r.get("file") == gguf.name]
    if not rows or not gguf.is_file():
        return None
    if rows[0].get("size_bytes") != gguf.stat().st_size or rows[0].get("sha256") != sha256_file(gguf):
        return None
    return rows[0]


def report_for(gguf: Path) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the eval.json next to `gguf`, its row for `gguf`): either is None when there is none."""
    report = read_report(Path(gguf).parent / EVAL_JSON)
    return report, (row_for(report, gguf) if report else None)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict[str, Any]) -> str:
    """eval.md: the model card as a person reads it."""
    val, quant, qa = report["validation"], report["quantization"], report["qa"]
    lines = [
        f"# Evaluation of `{report['export']}`",
        "",
        f"Verdict: **{'all gates passed' if report['passed'] else 'a gate FAILED'}**; serve: "
        f"**{report['serve'] or 'nothing passed'}**. Evaluated in {report['total_seconds']:.1f} s.",
        "",
        "## Validation",
        "",
        f"- loss {val['loss']:.4f} nats/token (perplexity {val['perplexity']:.2f}) over {val['tokens']:,} "
        f"tokens = {val['bytes']:,} bytes of the val split",
        f"- **bits per byte {val['bits_per_byte']:.4f}**",
        "",
        "## Quantization (KL divergence vs the f32 GGUF, llama-perplexity)",
        "",
        f"{quant['scored_tokens']:,} scored tokens ({quant['chunks']} windows of {quant['n_ctx']}); "
        f"f32 reproduces PyTorch: {quant['f32_vs_pytorch']['message']}",
        "",
        "| quant | size | mean KLD | 99% KLD | same top | PPL ratio | gate | verdict | prompt tok/s | gen tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in quant["rows"]:
        gate = row.get("gate") or {}
        speed = row.get("speed") or {}
        lines.append(
            f"| {row['quant']} | {row['size_bytes'] / 1e6:.2f} MB | {_num(row.get('mean_kld'), '.3g')} | "
            f"{_num(row.get('p99_kld'), '.3g')} | {_num(row.get('same_top'), '.2%')} | "
            f"{_num(row.get('ppl_ratio'), '.5f')} | {_num(gate.get('max_mean_kld'), 'g')} | "
            f"{row['verdict']} | {_num(speed.get('prompt_tps'), '.0f')} | {_num(speed.get('gen_tps'), '.0f')} |"
        )
    if quant.get("k_quants_skipped"):
        lines += ["", f"K-quants not evaluated: {quant['k_quants_skipped']}."]
    lines += ["", f"## Held-out questions (token-F1, asked of {qa.get('gguf') or '-'})", ""]
    if qa.get("modes"):
        lines.append(f"Question set: `{qa['set']}` ({qa['items']} questions).")
        lines.append("")
        for mode in qa["modes"].values():
            lines.append(
                f"- search {mode['mode']}: mean F1 **{_num(mode['mean_f1'], '.3f')}**, exact match "
                f"{_num(mode['exact_match'], '.1%')} ({mode['asked']} asked, {mode['skipped']} without documents)"
            )
    else:
        lines.append(qa.get("note", "no question set"))
    lines += ["", "## Sample generations (greedy)", ""]
    for sample in report["samples"]:
        lines.append(f"- **{sample['prompt']}** {sample['completion']!r}")
    lines += ["", "## Time", ""]
    lines += [f"- {name}: {seconds:.1f} s" for name, seconds in report["seconds"].items()]
    return "\n".join(lines) + "\n"


def write(report: dict[str, Any], out_dir: Path) -> Path:
    """Write eval.json and eval.md into `out_dir`; returns the eval.json path."""
    out_dir = Path(out_dir)
    path = out_dir / EVAL_JSON
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out_dir / EVAL_MD).write_text(markdown(report), encoding="utf-8")
    return path


def summary(report: dict[str, Any], served: dict[str, Any] | None) -> dict[str, Any]:
    """The model card's numbers (what GraphQL `model.eval` and the admin page show)."""
    modes = report.get("qa", {}).get("modes", {})
    return {
        "passed": report["passed"],
        "bits_per_byte": report["validation"]["bits_per_byte"],
        "val_loss": report["validation"]["loss"],
        "qa_f1": (modes.get("off") or {}).get("mean_f1"),
        "qa_f1_documents": (modes.get("documents") or {}).get("mean_f1"),
        "qa_questions": report.get("qa", {}).get("items"),
        "recommended": report["serve"],
        "served_quant": None if served is None else served["quant"],
        "served_passed": None if served is None else served["passed"],
        "rows": report["quantization"]["rows"],
        "scored_tokens": report["quantization"]["scored_tokens"],
        "k_quants_skipped": report["quantization"].get("k_quants_skipped"),
        "lineage": report.get("lineage", {}),
        "created": report.get("created"),
        "total_seconds": report.get("total_seconds"),
        "plots": report.get("plots", {}),
    }

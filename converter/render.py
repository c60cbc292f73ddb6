"""Rich tables for `verify` reports and `inspect` output."""

from __future__ import annotations

import json
from collections.abc import Sequence

from rich.table import Table

from converter.gguf_info import GGUFInfo
from converter.verify import VerifyReport

_STATUS = {True: "[green]PASS", False: "[red]FAIL", None: "[cyan]INFO"}


def checks_table(reports: Sequence[VerifyReport]) -> Table:
    """One row per check of every GGUF."""
    table = Table(title="llama.cpp vs PyTorch")
    for column in ("GGUF", "type", "check", "status", "result"):
        table.add_column(column)
    for report in reports:
        for check in report.checks:
            table.add_row(report.gguf, report.file_type, check.name, _STATUS[check.passed], check.summary)
    return table


def perplexity_table(reports: Sequence[VerifyReport]) -> Table:
    """Perplexity of every f32 GGUF next to PyTorch's (quantized GGUFs are gated by `chakor eval`)."""
    table = Table(title="f32 GGUF vs PyTorch")
    for column in ("GGUF", "type", "llama.cpp", "PyTorch", "relative Δ", "top-1", "max |Δ logprob|"):
        table.add_column(column, justify="right")
    for report in reports:
        checks = {check.name: check.details for check in report.checks}
        if "perplexity" not in checks or "logits" not in checks:
            continue
        ppl, logits = checks["perplexity"], checks["logits"]
        table.add_row(
            report.gguf,
            report.file_type,
            f"{ppl['llama']:.4f}",
            f"{ppl['pytorch']:.4f}",
            f"{ppl['relative_delta']:+.2e}",
            f"{logits['top1_agreement']:.2%}",
            f"{logits['max_abs_delta']:.2e}",
        )
    return table


def metadata_table(info: GGUFInfo) -> Table:
    table = Table(title=f"{info.path} metadata")
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in info.preview().items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    return table


def tensors_table(info: GGUFInfo) -> Table:
    table = Table(title=f"{len(info.tensors)} tensors, {sum(t.nbytes for t in info.tensors):,} bytes")
    for column in ("name", "shape", "type", "bytes"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for tensor in info.tensors:
        table.add_row(tensor.name, str(list(tensor.shape)), tensor.type, f"{tensor.nbytes:,}")
    return table

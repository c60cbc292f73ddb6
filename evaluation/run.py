"""The whole evaluation of one export and its GGUFs; returns the eval.json dictionary."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from documents.index import DocumentProvider
from evaluation import bpb, gates, kld, plots, qa, report, speed
from evaluation.errors import EvalError

F32_PPL_RTOL = 1e-3  # llama.cpp f32 vs PyTorch perplexity on the same windows (measured: ~1e-5)
QUANT_NAMES = {
    "ALL_F32": "f32",
    "MOSTLY_F16": "f16",
    "MOSTLY_BF16": "bf16",
    "MOSTLY_Q8_0": "q8_0",
    "MOSTLY_Q6_K": "q6_k",
    "MOSTLY_Q5_K_M": "q5_k_m",
    "MOSTLY_Q4_K_M": "q4_k_m",
}


@dataclass
class EvalOptions:
    """What to evaluate and how much of it."""

    export_dir: Path
    ggufs: Sequence[Path]  # one of them f32: the KL-divergence base
    data_dir: Path  # shards (docs/interfaces.md) whose val split is scored
    out_dir: Path
    qa_path: Path | None = None
    qa_modes: Sequence[str] = qa.MODES
    provider: DocumentProvider | None = None  # document search for the `documents` QA mode
    runs: Sequence[Path] = ()  # training runs whose loss curves are drawn
    min_kld_tokens: int = 16384
    max_val_tokens: int = 65536
    kld_ctx: int = 256
    threads: int | None = None  # llama.cpp threads; None: converter.llama_tools.tool_threads for the model
    bench: bool = True
    seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """PyTorch on `threads` threads for the block (a tiny model on a busy 2-core machine: 1, see tool_threads)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _timed(options: EvalOptions, name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    options.seconds[name] = round(time.monotonic() - started, 2)


def quant_of(path: Path, export_dir: Path) -> str:
    """The GGUF's quant type; EvalError when it is not ours or not converted from `export_dir`."""
    from converter.errors import ConversionError
    from converter.gguf_info import read_ours
    from converter.verify import check_identity, file_type_name

    try:
        info = read_ours(Path(path))
        identity = check_identity(info, Path(export_dir))
    except ConversionError as exc:
        raise EvalError(str(exc)) from None
    if not identity.passed:
        raise EvalError(f"{path}: not converted from {export_dir} ({identity.summary})")
    name = file_type_name(info)
    if name not in QUANT_NAMES:
        raise EvalError(f"{path}: quantization {name} has no gate")
    return QUANT_NAMES[name]


def _quant_rows(
    options: EvalOptions, quants: dict[str, Path], ref: Any, text: str, tmp: Path, threads: int, context: int
) -> dict[str, Any]:
    """KL divergence of every quant against the f32 GGUF, gated; plus f32 vs PyTorch on the same windows."""
    text_file = tmp / "val.txt"
    text_file.write_text(text, encoding="utf-8")
    n_ctx = min(options.kld_ctx, context)
    chunks = kld.chunks_for(options.min_kld_tokens, n_ctx) + 1  # + 1: see kld.write_base
    base = kld.write_base(quants["f32"], text_file, tmp / "base.kld", n_ctx, chunks, threads)
    ids = [ref.bos_id, *ref.encode(text)]
    torch_ppl = ref.perplexity(ids, n_ctx, base.ppl_chunks)
    relative = abs(base.ppl / torch_ppl - 1)
    f32_check = {
        "passed": relative < F32_PPL_RTOL,
        "llama_ppl": base.ppl,
        "pytorch_ppl": torch_ppl,
        "relative_delta": relative,
        "windows": base.ppl_chunks,
        "message": f"perplexity {base.ppl:.4f} vs PyTorch {torch_ppl:.4f} over {base.ppl_chunks} windows "
        f"({relative:.1e} relative, limit {F32_PPL_RTOL:g})",
    }
    rows = [_row("f32", quants["f32"], None, None)]
    rows[0]["verdict"] = "base" if f32_check["passed"] else "FAIL"
    rows[0]["passed"] = f32_check["passed"]
    for quant, path in quants.items():
        if quant == "f32":
            continue
        stats = kld.kl_divergence(path, base, threads)
        verdict = gates.apply_gate(quant, stats.mean_kld, stats.same_top)
        rows.append(_row(quant, path, stats, verdict))
    return {
        "base": "f32",
        "n_ctx": base.n_ctx,
        "chunks": base.chunks,
        "scored_tokens": base.scored_tokens,
        "min_scored_tokens": options.min_kld_tokens,
        "enough_tokens": base.scored_tokens >= options.min_kld_tokens,
        "f32_vs_pytorch": f32_check,
        "rows": rows,
    }


def _row(
    quant: str, path: Path, stats: kld.KldStats | None, verdict: gates.GateResult | None
) -> dict[str, Any]:
    gate = gates.GATES.get(quant)
    row: dict[str, Any] = {
        "quant": quant,
        "file": Path(path).name,
        "size_bytes": Path(path).stat().st_size,
        "sha256": report.sha256_file(path),
        "gate": None if gate is None else asdict(gate),
        "passed": None if verdict is None else verdict.passed,
        "verdict": "base" if verdict is None else ("pass" if verdict.passed else "FAIL"),
        "message": None if verdict is None else verdict.message,
    }
    if stats is not None:
        row.update({k: v for k, v in asdict(stats).items() if k not in ("chunks", "n_ctx")})
    return row


def kld_text(options: EvalOptions, ref: Any, tokenizer_hash: str, context: int) -> tuple[str, dict[str, int]]:
    """Text for the KL divergence: the val split, then the train split when val is too short.

    A quant's drift from f32 is a property of its weights on in-distribution text, so train text
    measures it as well as held-out text does; the report says how much of each was used.
    """
    n_ctx = min(options.kld_ctx, context)
    needed = (kld.chunks_for(options.min_kld_tokens, n_ctx) + 2) * n_ctx  # the spare window and some slack
    val = bpb.split_ids(options.data_dir, "val", tokenizer_hash, needed)
    train = (
        bpb.split_ids(options.data_dir, "train", tokenizer_hash, needed - len(val))
        if len(val) < needed
        else val[:0]
    )
    if len(val) + len(train) < 2 * n_ctx:
        raise EvalError(
            f"{options.data_dir}: {len(val) + len(train)} tokens, too few for KL divergence windows of {n_ctx}"
        )
    text = "\n".join(
        t for t in (bpb.documents_text(val, ref.tokenizer), bpb.documents_text(train, ref.tokenizer)) if t
    )
    return text, {"val": len(val), "train": len(train)}


def evaluate(options: EvalOptions) -> dict[str, Any]:
    """Run every part of the evaluation; write eval.json, eval.md and the PNGs into out_dir."""
    from common.chat import DOCUMENT_RESULTS
    from common.hashing import sha256_file
    from common.settings import get_settings
    from converter.export_dir import read_export
    from converter.llama_server import llama_server
    from converter.reference import Reference
    from evaluation.ask import ChatModel

    started = time.monotonic()
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from converter.llama_tools import tool_threads

    with _timed(options, "load"):
        quants: dict[str, Path] = {}
        for path in options.ggufs:
            quant = quant_of(path, options.export_dir)
            if quant in quants:
                raise EvalError(f"two GGUFs of type {quant}: {quants[quant]} and {path}")
            quants[quant] = Path(path)
        if "f32" not in quants:
            raise EvalError(
                "the KL-divergence base is missing: pass an f32 GGUF of the export (chakor convert --outtype f32)"
            )
        export = read_export(Path(options.export_dir))
        ref = Reference(Path(options.export_dir))
        tokenizer_hash = sha256_file(export.tokenizer_file)
        context = export.context_length  # the trained context, as the GGUF and llama-server have it
        items = qa.read_qa(options.qa_path) if options.qa_path is not None else None
        threads = options.threads or tool_threads(ref.config.num_params())
        serving_threads = get_settings().llama_threads  # speed as `chakor up` serves (CHAKOR_LLAMA_THREADS)
    with _timed(options, "validation"), _torch_threads(threads):
        ids = bpb.val_ids(options.data_dir, tokenizer_hash, options.max_val_tokens)
        val = bpb.validation_loss(ref.model, ids, bpb.token_byte_lengths(ref.tokenizer), context)
    with (
        _timed(options, "kl_divergence"),
        _torch_threads(threads),
        tempfile.TemporaryDirectory(prefix="chakor-eval-") as tmp,
    ):
        text, sources = kld_text(options, ref, tokenizer_hash, context)
        quantization = {
            **_quant_rows(options, quants, ref, text, Path(tmp), threads, context),
            "text_tokens": sources,
            "threads": threads,
        }
    quantization["k_quants_skipped"] = gates.k_quant_obstacle(export.shape.dim, export.shape.ffn_hidden_dim)
    passed = {row["quant"]: bool(row["passed"]) for row in quantization["rows"] if row["quant"] != "f32"}
    serve = gates.smallest_passing(passed)
    asked = quants[serve] if serve else quants["f32"]
    with (
        _timed(options, "qa_and_samples"),
        llama_server(asked, ctx_size=context, threads=threads) as server,
    ):
        settings = get_settings()
        chat = ChatModel(
            server,
            ref.tokenizer,
            settings.chat_system_prompt,
            context,
            settings.chat_max_tokens,
        )
        qa_part: dict[str, Any] = {"gguf": serve or "f32"}
        if items is not None:
            scores = qa.score_qa(items, chat.answer, options.qa_modes, options.provider, DOCUMENT_RESULTS)
            qa_part.update(
                set=str(options.qa_path),
                items=len(items),
                modes={mode: score.to_dict() for mode, score in scores.items()},
                prompts_too_long=chat.too_long,
                results_dropped_to_fit=chat.results_dropped,
            )
        else:
            qa_part.update(set=None, items=0, modes={}, note="no question set given (--qa)")
        samples = chat.samples()
    if options.bench:
        with _timed(options, "speed"):
            speeds = speed.bench(list(quants.values()), serving_threads)
        for row in quantization["rows"]:
            found = speeds[str(quants[row["quant"]])]
            row["speed"] = {
                "prompt_tps": found.prompt_tps,
                "gen_tps": found.gen_tps,
                "threads": serving_threads,
            }
    with _timed(options, "plots"):
        drawn = {
            "loss": plots.loss_curves(options.runs, out_dir / plots.LOSS_PNG),
            "kld": plots.kld_bars(
                [r for r in quantization["rows"] if r["quant"] != "f32"], out_dir / plots.KLD_PNG
            ),
        }
    data = {
        "version": report.VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "export": str(options.export_dir),
        "passed": all(row["passed"] is not False for row in quantization["rows"]),
        "serve": serve,
        "model": {"parameters": ref.config.num_params(), **asdict(ref.config)},
        "lineage": export.lineage,
        "validation": {
            "loss": val.loss,
            "perplexity": val.perplexity,
            "bits_per_byte": val.bits_per_byte,
            "tokens": val.tokens,
            "bytes": val.bytes,
            "window": val.window,
            "data": str(options.data_dir),
        },
        "quantization": quantization,
        "qa": qa_part,
        "samples": samples,
        "plots": {name: path.name for name, path in drawn.items() if path is not None},
        "seconds": options.seconds,
        "total_seconds": round(time.monotonic() - started, 2),
    }
    report.write(data, out_dir)
    return data

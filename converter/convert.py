"""Export directory -> llama-architecture GGUF, tensor by tensor, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from common.hashing import sha256_file
from converter import __version__
from converter.errors import ConversionError
from converter.export_dir import ExportDir, read_export
from converter.quantize import K_QUANTS, llama_quantize
from converter.tensor_map import TensorSpec, tensor_specs
from converter.vocab import Vocab, read_vocab
from converter.weights import check_weights, open_weights

Q = gguf.GGMLQuantizationType
# outtype -> (type of 2-D tensors, general.file_type)
DIRECT_TYPES: dict[str, tuple[Q, gguf.LlamaFileType]] = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
}
OUTTYPES = (*DIRECT_TYPES, *K_QUANTS)
CHAKOR_KEY = "chakor.checkpoint_sha256"  # present in every GGUF this converter writes


@dataclass(frozen=True)
class PlannedTensor:
    """A tensor to write: where it comes from and the GGML type it gets."""

    spec: TensorSpec
    qtype: Q
    fallback: bool  # True when the requested type did not fit the row length


def plan_tensor(spec: TensorSpec, wanted: Q) -> PlannedTensor:
    """1-D tensors stay F32; rows that do not fill whole blocks fall back to F16 (as llama.cpp does)."""
    if len(spec.shape) == 1:
        return PlannedTensor(spec, Q.F32, fallback=False)
    block_size, _ = gguf.GGML_QUANT_SIZES[wanted]
    if spec.shape[-1] % block_size:
        return PlannedTensor(spec, Q.F16, fallback=True)
    return PlannedTensor(spec, wanted, fallback=False)


def nbytes(shape: tuple[int, ...], qtype: Q) -> int:
    """Size in bytes of a tensor of `shape` stored as `qtype`."""
    return int(np.prod(gguf.quant_shape_to_byte_shape(shape, qtype)))


def _lineage_value(lineage: dict[str, object], key: str) -> str:
    value = lineage.get(key)
    return "unknown" if value in (None, "") else str(value)


def add_metadata(writer: gguf.GGUFWriter, export: ExportDir, vocab: Vocab, file_type: int, name: str) -> None:
    """Hyperparameters, tokenizer and lineage keys."""
    s, lineage = export.shape, export.lineage
    writer.add_name(name)
    writer.add_version(str(lineage.get("version") or f"step-{lineage.get('steps', 0)}"))
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_vocab_size(s.vocab_size)
    writer.add_context_length(export.context_length)  # the trained context, not max_seq_len
    writer.add_embedding_length(s.dim)
    writer.add_block_count(s.n_layers)
    writer.add_feed_forward_length(s.ffn_hidden_dim)
    writer.add_head_count(s.n_heads)
    writer.add_head_count_kv(s.n_kv_heads)
    writer.add_rope_dimension_count(s.head_dim)
    writer.add_rope_freq_base(s.rope_theta)
    writer.add_layer_norm_rms_eps(s.norm_eps)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    writer.add_bos_token_id(vocab.bos_id)
    # eos = eot = <|end|>: every turn ends with it, so llama-server's end-of-generation set is exactly it
    writer.add_eos_token_id(vocab.end_id)
    writer.add_eot_token_id(vocab.end_id)
    writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(True)  # every training document starts with <|bos|>
    writer.add_add_eos_token(False)
    writer.add_chat_template(vocab.chat_template)

    writer.add_string(CHAKOR_KEY, sha256_file(export.model_file))
    writer.add_string("chakor.tokenizer_sha256", sha256_file(export.tokenizer_file))
    writer.add_string("chakor.data_manifest_sha256", _lineage_value(lineage, "data_manifest_sha256"))
    writer.add_string("chakor.git_commit", _lineage_value(lineage, "git_commit"))
    writer.add_string("chakor.lineage", json.dumps(lineage, sort_keys=True))
    writer.add_string("chakor.converter_version", __version__)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[tensor]}"),
        disable=not enabled,
        console=Console(stderr=True),
    )


def write_gguf(export: ExportDir, outtype: str, path: Path, name: str, progress: bool) -> list[PlannedTensor]:
    """Write the GGUF for a direct outtype (f32/f16/bf16/q8_0) to `path`; returns the tensor plan."""
    wanted, file_type = DIRECT_TYPES[outtype]
    specs = tensor_specs(export.shape)
    vocab = read_vocab(export)
    with open_weights(export.model_file) as weights:
        check_weights(weights, specs)
        plan = [plan_tensor(spec, wanted) for spec in specs]
        writer = gguf.GGUFWriter(path, "llama")
        add_metadata(writer, export, vocab, int(file_type), name)
        for item in plan:
            writer.add_tensor_info(
                item.spec.target,
                item.spec.shape,
                np.dtype(np.float32),
                nbytes(item.spec.shape, item.qtype),
                raw_dtype=item.qtype,
            )
        try:
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            total = sum(int(np.prod(item.spec.shape)) * 4 for item in plan)
            with _progress(progress) as bar:
                task = bar.add_task(f"convert {outtype}", total=total, tensor="")
                for item in plan:
                    bar.update(task, tensor=item.spec.source)
                    data = weights.read(item.spec.source)
                    writer.write_tensor_data(gguf.quants.quantize(data, item.qtype))
                    bar.advance(task, data.nbytes)
        finally:
            writer.close()
    return plan


@contextmanager
def temp_path(outfile: Path, suffix: str) -> Iterator[Path]:
    """A fresh path beside `outfile` (same filesystem, so renaming is atomic), removed afterwards.

    Readable by all like any new file (mkstemp's 0600 would follow the GGUF into place).
    """
    fd, name = tempfile.mkstemp(dir=outfile.parent, prefix=f".{outfile.name}.", suffix=suffix)
    os.fchmod(fd, 0o644)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def convert(
    export_dir: Path,
    outfile: Path,
    outtype: str = "f16",
    *,
    name: str | None = None,
    progress: bool = False,
    server_bin: Path | None = None,
) -> Path:
    """Convert `export_dir` to `outfile` as `outtype`; a failure leaves no file at `outfile`.

    `server_bin`: the configured llama-server (CHAKOR_LLAMA_SERVER_BIN), beside which K-quants find llama-quantize.
    """
    if outtype not in OUTTYPES:
        raise ConversionError(f"unsupported outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    export = read_export(Path(export_dir))
    outfile = Path(outfile)
    outfile.parent.mkdir(parents=True, exist_ok=True)
    model_name = name or export.path.resolve().name
    with temp_path(outfile, ".part") as part:
        if outtype in DIRECT_TYPES:
            plan = write_gguf(export, outtype, part, model_name, progress)
            fallbacks = [item.spec.target for item in plan if item.fallback]
        else:
            with temp_path(outfile, ".f16.part") as f16:
                write_gguf(export, "f16", f16, model_name, progress)
                fallbacks = llama_quantize(f16, part, outtype, server_bin)
        os.replace(part, outfile)
    if fallbacks:
        Console(stderr=True).print(
            f"[yellow]{len(fallbacks)} tensor(s) have rows that do not fill whole {outtype} blocks and "
            f"were stored in a fallback type: {', '.join(fallbacks)}"
        )
    return outfile

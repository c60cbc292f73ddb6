"""What the served model is: GGUF metadata, quantization, context, lineage, verify and eval reports."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from backend.services.llama import LlamaPool
from evaluation.report import EVAL_JSON, ModelCard, report_for, summary

SKIPPED_PREFIXES = (
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.scores",
)
MAX_METADATA_VALUE_CHARS = 2000
MAX_PLOT_BYTES = 2 << 20  # the eval's PNGs are ~50 KB; anything far larger is not one of them
ABSOLUTE_PATH = re.compile(r"^(/[^/\s]+)+/?$")  # one word of /-separated parts: how a server path looks


@dataclass(frozen=True)
class PlotImage:
    """One of the eval report's PNGs, inline."""

    name: str
    data_uri: str


@dataclass(frozen=True)
class Evaluation:
    """The model card of the eval report beside the served GGUF, with its plots."""

    card: ModelCard
    plot_images: tuple[PlotImage, ...]


@dataclass
class ModelDetails:
    """The model as the API reports it."""

    name: str | None = None
    path: str | None = None
    architecture: str | None = None
    quantization: str | None = None
    context_length: int | None = None
    served_context: int | None = None
    parameters: int | None = None
    file_size_bytes: int | None = None
    chat_template: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    verify_report: dict[str, Any] | None = None
    evaluation: Evaluation | None = None


def file_name(value: Any) -> Any:
    """`value` with every absolute server path in it (also inside lists and dicts) cut to its file name."""
    if isinstance(value, str):
        return Path(value).name if ABSOLUTE_PATH.match(value) else value
    if isinstance(value, list):
        return [file_name(item) for item in value]
    if isinstance(value, dict):
        return {key: file_name(item) for key, item in value.items()}
    return value


def without_paths(details: ModelDetails) -> ModelDetails:
    """What a non-admin sees: the details with file names where the server's paths were (the GGUF's,
    the verify report's GGUF and export folders, any in its metadata), so the API does not map the
    server's file system for any signed-in user."""
    return replace(
        details,
        path=file_name(details.path),
        metadata=file_name(details.metadata),
        lineage=file_name(details.lineage),
        verify_report=file_name(details.verify_report),
    )


def _value(reader_field: Any) -> Any:
    try:
        value = reader_field.contents()
    except (ValueError, IndexError, TypeError):
        return None
    if isinstance(value, str) and len(value) > MAX_METADATA_VALUE_CHARS:
        return value[:MAX_METADATA_VALUE_CHARS] + "…"
    if isinstance(value, list) and len(value) > 64:
        return f"[{len(value)} values]"
    return value


@lru_cache(maxsize=4)
def _read_gguf(path: str, mtime: float) -> dict[str, Any]:
    from gguf import GGUFReader  # imported lazily: it pulls in numpy

    reader = GGUFReader(path)
    metadata = {
        name: _value(reader_field)
        for name, reader_field in reader.fields.items()
        if not name.startswith(("GGUF.", *SKIPPED_PREFIXES))
    }
    quant_types = sorted({tensor.tensor_type.name for tensor in reader.tensors})
    parameters = sum(int(tensor.n_elements) for tensor in reader.tensors)
    return {"metadata": metadata, "tensor_types": quant_types, "parameters": parameters}


def _verify_report(gguf_path: Path) -> dict[str, Any] | None:
    for candidate in (gguf_path.with_suffix(".verify.json"), gguf_path.parent / "verify.json"):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (OSError, ValueError):
                return None
    return None


def _plot_images(folder: Path, names: dict[str, str]) -> tuple[PlotImage, ...]:
    """The report's PNGs as data: URIs; only plain `.png` names inside the report's folder are read."""
    images = []
    for name in names.values():
        path = folder / name
        if Path(name).name != name or not name.endswith(".png") or not path.is_file():
            continue
        if path.stat().st_size > MAX_PLOT_BYTES:
            continue
        images.append(
            PlotImage(name, "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode())
        )
    return tuple(images)


@lru_cache(maxsize=4)
def _evaluation(path: str, gguf_mtime: float, report_mtime: float) -> Evaluation | None:
    """The model card for the GGUF at `path` (cached until the GGUF or its eval.json changes)."""
    report, row = report_for(Path(path))
    if report is None:
        return None
    return Evaluation(summary(report, row), _plot_images(Path(path).parent, report.plots))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


async def model_details(model_path: Path | None, pool: LlamaPool) -> ModelDetails:
    """Details from the GGUF file at `model_path` (when readable) and the servers' `/props`."""
    details = ModelDetails()
    props = await pool.props()
    if props:
        details.served_context = (props.get("default_generation_settings") or {}).get("n_ctx")
        details.path = props.get("model_path")
        details.chat_template = props.get("chat_template")
    path = model_path or (Path(details.path) if details.path else None)
    if path is None or not path.is_file():
        return details
    gguf = _read_gguf(str(path), path.stat().st_mtime)
    meta = gguf["metadata"]
    arch = meta.get("general.architecture")
    details.path = str(path)
    details.name = meta.get("general.name") or path.stem
    details.architecture = arch
    details.context_length = meta.get(f"{arch}.context_length")
    details.parameters = gguf["parameters"]
    details.file_size_bytes = path.stat().st_size
    details.quantization = "+".join(gguf["tensor_types"])
    details.chat_template = meta.get("tokenizer.chat_template") or details.chat_template
    details.metadata = {k: v for k, v in meta.items() if not k.startswith("chakor.")}
    details.lineage = {k.removeprefix("chakor."): v for k, v in meta.items() if k.startswith("chakor.")}
    details.verify_report = _verify_report(path)
    details.evaluation = _evaluation(str(path), path.stat().st_mtime, _mtime(path.parent / EVAL_JSON))
    return details

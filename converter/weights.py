"""Open the export's safetensors lazily and check names, shapes and dtypes before anything is written."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError, safe_open

from converter.errors import ConversionError
from converter.tensor_map import TensorSpec

_FLOAT_DTYPES = {"F32", "F16"}


@contextmanager
def open_weights(path: Path) -> Iterator[Any]:
    """A memory-mapped safetensors handle (numpy), with errors that name the file."""
    try:
        with safe_open(str(path), framework="numpy") as handle:
            yield handle
    except SafetensorError as exc:
        raise ConversionError(f"{path}: not a readable safetensors file ({exc})") from None


def check_weights(handle: Any, specs: list[TensorSpec], path: Path) -> None:
    """Raise ConversionError naming every missing, unknown, mis-shaped or non-float tensor."""
    present = set(handle.keys())
    expected = {spec.source for spec in specs}
    problems = []
    if missing := sorted(expected - present):
        problems.append(f"missing tensor(s) {', '.join(missing)}")
    if unknown := sorted(present - expected):
        problems.append(f"unknown tensor(s) {', '.join(unknown)}")
    for spec in specs:
        if spec.source not in present:
            continue
        tensor = handle.get_slice(spec.source)
        got = tuple(tensor.get_shape())
        if got != spec.shape:
            problems.append(f"tensor {spec.source} has shape {list(got)}, expected {list(spec.shape)}")
        if tensor.get_dtype() not in _FLOAT_DTYPES:
            problems.append(f"tensor {spec.source} has dtype {tensor.get_dtype()}, expected F32 or F16")
    if problems:
        raise ConversionError(f"{path}: " + "; ".join(problems))


def read_tensor(handle: Any, name: str, path: Path) -> np.ndarray:
    """One tensor as float32, naming file and tensor when its bytes cannot be read."""
    try:
        return np.asarray(handle.get_tensor(name), dtype=np.float32)
    except (SafetensorError, ValueError, OSError) as exc:
        raise ConversionError(f"{path}: cannot read tensor {name} ({exc})") from None

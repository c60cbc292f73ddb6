"""Memory-mapped safetensors, read one tensor at a time, with names and shapes checked up front.

The safetensors layout is small: an 8-byte little-endian header length, a JSON header
(`name -> {dtype, shape, data_offsets}`), then the tensor bytes. Reading it directly lets the
converter drop each tensor's pages from the mapping once written (madvise DONTNEED), so peak RSS
stays near the largest tensor instead of growing to the file size as a plain mapping does.
"""

from __future__ import annotations

import json
import mmap
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from converter.errors import ConversionError
from converter.tensor_map import TensorSpec

_DTYPES: dict[str, np.dtype[Any]] = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2")}
_PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class _Entry:
    dtype: str
    shape: tuple[int, ...]
    begin: int  # absolute file offsets
    end: int


class Weights:
    """An open safetensors file: tensor names, shapes, dtypes and float32 data."""

    def __init__(self, path: Path, buffer: mmap.mmap, entries: dict[str, _Entry]) -> None:
        self.path, self._buffer, self.entries = path, buffer, entries

    def read(self, name: str) -> np.ndarray:
        """Tensor `name` as a float32 array (a copy; the mapped pages are released)."""
        entry = self.entries[name]
        count = int(np.prod(entry.shape))
        data = np.frombuffer(self._buffer, _DTYPES[entry.dtype], count, entry.begin).reshape(entry.shape)
        out = data.astype(np.float32)
        del data
        start = entry.begin - entry.begin % _PAGE
        self._buffer.madvise(mmap.MADV_DONTNEED, start, entry.end - start)
        return out


def _parse_header(path: Path, raw: bytes, size: int) -> dict[str, _Entry]:
    if len(raw) < 8:
        raise ConversionError(f"{path}: not a safetensors file (only {len(raw)} bytes)")
    (length,) = struct.unpack("<Q", raw[:8])
    if 8 + length > size:
        raise ConversionError(
            f"{path}: truncated safetensors file (header needs {8 + length} bytes, file has {size})"
        )
    try:
        header = json.loads(raw[8 : 8 + length])
        entries = {
            name: _Entry(info["dtype"], tuple(info["shape"]), 8 + length + info["data_offsets"][0],
                         8 + length + info["data_offsets"][1])
            for name, info in header.items()
            if name != "__metadata__"
        }  # fmt: skip
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise ConversionError(f"{path}: not a safetensors file (bad header: {exc})") from None
    for name, entry in entries.items():
        if entry.end > size:
            raise ConversionError(
                f"{path}: truncated safetensors file (tensor {name} ends at byte {entry.end}, file has {size})"
            )
    return entries


@contextmanager
def open_weights(path: Path) -> Iterator[Weights]:
    """Map `path` read-only; errors name the file."""
    try:
        with path.open("rb") as f:
            size = path.stat().st_size
            head = f.read(8)
            length = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            entries = _parse_header(path, head + f.read(min(length, size)), size)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                yield Weights(path, buffer, entries)
    except OSError as exc:
        raise ConversionError(f"{path}: cannot read ({exc})") from None


def check_weights(weights: Weights, specs: list[TensorSpec]) -> None:
    """Raise ConversionError naming every missing, unknown, mis-shaped, mis-sized or non-float tensor."""
    present, expected = set(weights.entries), {spec.source for spec in specs}
    problems = []
    if missing := sorted(expected - present):
        problems.append(f"missing tensor(s) {', '.join(missing)}")
    if unknown := sorted(present - expected):
        problems.append(f"unknown tensor(s) {', '.join(unknown)}")
    for spec in specs:
        entry = weights.entries.get(spec.source)
        if entry is None:
            continue
        if entry.shape != spec.shape:
            problems.append(
                f"tensor {spec.source} has shape {list(entry.shape)}, expected {list(spec.shape)}"
            )
        if entry.dtype not in _DTYPES:
            problems.append(f"tensor {spec.source} has dtype {entry.dtype}, expected F32 or F16")
        elif entry.end - entry.begin != int(np.prod(entry.shape)) * _DTYPES[entry.dtype].itemsize:
            problems.append(
                f"tensor {spec.source} has {entry.end - entry.begin} bytes, not {list(entry.shape)}"
            )
    if problems:
        raise ConversionError(f"{weights.path}: " + "; ".join(problems))

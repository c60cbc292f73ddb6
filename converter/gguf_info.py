"""Read a GGUF's metadata and tensor table, and check that it is one of ours."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from converter.convert import CHAKOR_KEY
from converter.errors import ConversionError

_ARRAY_PREVIEW = 8


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as stored: GGUF name, shape (PyTorch order, rows first), GGML type, bytes."""

    name: str
    shape: tuple[int, ...]
    type: str
    nbytes: int


@dataclass(frozen=True)
class GGUFInfo:
    """Metadata (arrays as full lists) and tensors of a GGUF file."""

    path: Path
    metadata: dict[str, Any]
    tensors: list[TensorInfo]

    def preview(self) -> dict[str, Any]:
        """Metadata with long arrays shortened to their first items and length, for display."""
        out: dict[str, Any] = {}
        for key, value in self.metadata.items():
            if isinstance(value, list) and len(value) > _ARRAY_PREVIEW:
                value = [*value[:_ARRAY_PREVIEW], f"... ({len(value)} items)"]
            out[key] = value
        return out


def read_gguf(path: Path) -> GGUFInfo:
    """Parse `path`; ConversionError naming it when it is missing or not a GGUF file."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: file not found")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError) as exc:
        raise ConversionError(f"{path}: not a GGUF file ({exc})") from None
    metadata = {
        name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")
    }
    tensors = [
        TensorInfo(
            name=t.name,
            shape=tuple(int(d) for d in reversed(t.shape)),
            type=t.tensor_type.name,
            nbytes=int(t.n_bytes),
        )
        for t in reader.tensors
    ]
    return GGUFInfo(path=path, metadata=metadata, tensors=tensors)


def read_ours(path: Path) -> GGUFInfo:
    """`read_gguf`, raising ConversionError when the file is not a llama GGUF written by this converter."""
    info = read_gguf(path)
    arch = info.metadata.get("general.architecture")
    if arch != "llama" or CHAKOR_KEY not in info.metadata:
        raise ConversionError(
            f"{path}: not a Chakor GGUF (architecture {arch!r}, {CHAKOR_KEY} "
            f"{'present' if CHAKOR_KEY in info.metadata else 'missing'})"
        )
    return info

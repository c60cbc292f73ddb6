"""Validation text for perplexity: the `val` split of a data directory, decoded back to text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from converter.errors import ConversionError
from converter.export_dir import read_json


def validation_text(data_dir: Path, tokenizer: Tokenizer, tokenizer_sha256: str, max_tokens: int) -> str:
    """Documents of the `val` shards (split at <|bos|>), decoded and joined by newlines.

    The manifest's tokenizer hash must equal the export's, or the ids would decode to other text.
    """
    manifest_path = Path(data_dir) / "manifest.json"
    manifest = read_json(manifest_path)
    if manifest.get("tokenizer_sha256") != tokenizer_sha256:
        raise ConversionError(f"{manifest_path}: data was tokenized with another tokenizer than the export's")
    try:
        shards, dtype = manifest["splits"]["val"]["shards"], np.dtype(manifest["dtype"]).newbyteorder("<")
    except (KeyError, TypeError) as exc:
        raise ConversionError(f"{manifest_path}: no val split ({exc})") from None
    ids: list[int] = []
    for name in shards:
        path = Path(data_dir) / name
        if not path.is_file():
            raise ConversionError(f"{path}: validation shard not found")
        ids.extend(np.fromfile(path, dtype=dtype)[: max_tokens - len(ids)].tolist())
    bos = tokenizer.token_to_id("<|bos|>")
    docs: list[list[int]] = []
    current: list[int] = []
    for token in ids:
        if token == bos and current:
            docs.append(current)
            current = []
        elif token != bos:
            current.append(token)
    docs.append(current)
    return "\n".join(tokenizer.decode(doc, skip_special_tokens=False) for doc in docs if doc)

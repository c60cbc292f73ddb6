"""Read and check an export directory (docs/interfaces.md); its config.json is the trainer's ModelConfig."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from converter.errors import ConversionError
from trainer.configs import ModelConfig

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
LINEAGE_FILE = "lineage.json"
REQUIRED_FILES = (MODEL_FILE, CONFIG_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, LINEAGE_FILE)

_INT_FIELDS = ("dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "ffn_hidden_dim", "max_seq_len")
_FLOAT_FIELDS = ("rope_theta", "norm_eps")


@dataclass(frozen=True)
class ExportDir:
    """A checked export directory: its config, tokenizer configuration and lineage."""

    path: Path
    shape: ModelConfig  # the model's hyperparameters, from config.json
    tokenizer_config: dict[str, Any]
    lineage: dict[str, Any]

    @property
    def context_length(self) -> int:
        """The context the model was trained at: lineage `seq_len`, or max_seq_len for exports without it.

        It is the GGUF's `llama.context_length`, so llama-server caps every slot there (positions past
        it were never trained, even though the RoPE tables would reach max_seq_len).
        """
        seq_len = self.lineage.get("seq_len")
        return self.shape.max_seq_len if seq_len is None else int(seq_len)

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def tokenizer_file(self) -> Path:
        return self.path / TOKENIZER_FILE


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or ConversionError naming the file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def parse_shape(config: dict[str, Any], source: Path) -> ModelConfig:
    """Validate `config.json` fields (types and divisibility), naming `source` and the field.

    Stricter than `ModelConfig.from_dict`: every field must be present (a GGUF records them all) and of
    its JSON type, so an export that is not what the trainer writes fails here with ConversionError."""
    missing = [name for name in (*_INT_FIELDS, *_FLOAT_FIELDS, "tie_embeddings") if name not in config]
    if missing:
        raise ConversionError(f"{source}: missing field(s) {', '.join(missing)}")
    for name in _INT_FIELDS:
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConversionError(f"{source}: {name} must be a positive integer, got {value!r}")
    for name in _FLOAT_FIELDS:
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConversionError(f"{source}: {name} must be a positive number, got {value!r}")
    if not isinstance(config["tie_embeddings"], bool):
        raise ConversionError(f"{source}: tie_embeddings must be true or false")
    dim, n_heads, n_kv_heads = config["dim"], config["n_heads"], config["n_kv_heads"]
    if dim % n_heads or n_heads % n_kv_heads or (dim // n_heads) % 2:
        raise ConversionError(
            f"{source}: dim {dim}, n_heads {n_heads}, n_kv_heads {n_kv_heads} "
            "need dim % n_heads == 0, n_heads % n_kv_heads == 0 and an even head dim"
        )
    return ModelConfig(
        dim=dim,
        n_layers=config["n_layers"],
        n_heads=n_heads,
        n_kv_heads=n_kv_heads,
        vocab_size=config["vocab_size"],
        ffn_hidden_dim=config["ffn_hidden_dim"],
        max_seq_len=config["max_seq_len"],
        rope_theta=float(config["rope_theta"]),
        norm_eps=float(config["norm_eps"]),
        tie_embeddings=config["tie_embeddings"],
    )


def read_export(path: Path) -> ExportDir:
    """Check that `path` holds every export file and parse its JSON files."""
    path = Path(path)
    if not path.is_dir():
        raise ConversionError(f"{path}: export directory not found")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ConversionError(f"{path}: missing export file(s) {', '.join(missing)}")
    tokenizer_config = read_json(path / TOKENIZER_CONFIG_FILE)
    shape = parse_shape(read_json(path / CONFIG_FILE), path / CONFIG_FILE)
    lineage = read_json(path / LINEAGE_FILE)
    seq_len = lineage.get("seq_len")
    if seq_len is not None and (
        isinstance(seq_len, bool) or not isinstance(seq_len, int) or not 0 < seq_len <= shape.max_seq_len
    ):
        raise ConversionError(
            f"{path / LINEAGE_FILE}: seq_len must be an integer from 1 to max_seq_len {shape.max_seq_len}, "
            f"got {seq_len!r}"
        )
    return ExportDir(path=path, shape=shape, tokenizer_config=tokenizer_config, lineage=lineage)

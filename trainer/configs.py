"""Model and training configurations as dataclasses, plus the named model registry."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of the decoder (the fields of an export's `config.json`)."""

    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    ffn_hidden_dim: int
    max_seq_len: int
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.dim % self.n_heads:
            raise ValueError(f"dim {self.dim} is not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads {self.n_heads} is not divisible by n_kv_heads {self.n_kv_heads}")
        if (self.dim // self.n_heads) % 2:
            raise ValueError(f"head dim {self.dim // self.n_heads} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        """Build from a dict (e.g. `config.json`), naming `source` and the field on bad input."""
        names = {f.name for f in fields(cls)}
        missing = sorted(n for n in names if n not in data and n not in _DEFAULTED)
        if missing:
            raise ValueError(f"{source}: missing model field(s) {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None

    def num_params(self) -> int:
        """Exact parameter count (embedding and head counted once when tied)."""
        d, hd, kv = self.dim, self.head_dim, self.n_kv_heads
        attention = d * d * 2 + 2 * d * kv * hd
        ffn = 3 * d * self.ffn_hidden_dim
        per_layer = attention + ffn + 2 * d
        head = 0 if self.tie_embeddings else self.vocab_size * d
        return self.vocab_size * d + self.n_layers * per_layer + d + head


_DEFAULTED = {"rope_theta", "norm_eps", "tie_embeddings"}

MODEL_CONFIGS: dict[str, ModelConfig] = {
    # CPU: ~1.3M parameters at vocab 4096, learns a small corpus in minutes.
    "tiny": ModelConfig(
        dim=128, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=4096,
        ffn_hidden_dim=384, max_seq_len=256, tie_embeddings=True,
    ),
    # GPT-2-small sized: ~124M parameters at vocab 32000.
    "small": ModelConfig(
        dim=768, n_layers=12, n_heads=12, n_kv_heads=12, vocab_size=32000,
        ffn_hidden_dim=2560, max_seq_len=2048, tie_embeddings=True,
    ),
    # Llama-3.2-1B shaped: ~1.04B parameters at vocab 32000.
    "1b": ModelConfig(
        dim=2048, n_layers=16, n_heads=32, n_kv_heads=8, vocab_size=32000,
        ffn_hidden_dim=8192, max_seq_len=2048, rope_theta=500000.0, tie_embeddings=True,
    ),
    # The seed's model (Llama-2-7B shaped): 6,738,415,616 parameters.
    "7b": ModelConfig(
        dim=4096, n_layers=32, n_heads=32, n_kv_heads=32, vocab_size=32000,
        ffn_hidden_dim=11008, max_seq_len=4096, tie_embeddings=False,
    ),
}  # fmt: skip


def get_model_config(name: str, vocab_size: int | None = None) -> ModelConfig:
    """The named config, with `vocab_size` replaced by the tokenizer's when given."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model config {name!r}; choose one of {', '.join(MODEL_CONFIGS)}")
    cfg = MODEL_CONFIGS[name]
    return cfg if vocab_size is None else replace(cfg, vocab_size=vocab_size)


def resolve_model(
    model: str | ModelConfig, vocab_size: int | None = None, tokenizer: str = "the tokenizer"
) -> tuple[str, ModelConfig]:
    """A model to train as (name, config), sized for a tokenizer of `vocab_size` tokens.

    `model` is a MODEL_CONFIGS name, which gets the tokenizer's vocabulary (the registry's when
    `vocab_size` is None), or a ModelConfig, named "custom", whose vocab_size must already match.
    Every caller that turns a model name into a config (the recipe, `--plan`, a run) goes through here,
    so they all plan and train the same model. `tokenizer` names the tokenizer in the error.
    """
    if not isinstance(model, ModelConfig):
        return model, get_model_config(model, vocab_size)
    if vocab_size is not None and model.vocab_size != vocab_size:
        raise ValueError(
            f"{tokenizer}: vocab size {vocab_size} does not match the model config's vocab_size "
            f"{model.vocab_size}"
        )
    return "custom", model


@dataclass
class TrainConfig:
    """The pretraining recipe (defaults suit `tiny` on CPU)."""

    steps: int = 600
    seq_len: int = 256
    local_batch_size: int = 8
    global_batch_size: int = -1  # -1: local batch x data-parallel degree; larger: gradient accumulation
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    max_norm: float = 1.0
    seed: int = 1234
    eval_every: int = 100
    eval_batches: int = 8
    checkpoint_every: int = 100
    sample_tokens: int = 48
    tensor_parallel: int = 1
    data_parallel_replicate: int = 1  # > 1: HSDP, replicas of FSDP groups (DDP when the group is 1 process)
    compile: bool = False
    activation_checkpointing: bool = False
    activation_checkpointing_mode: str = "full"  # with activation_checkpointing: "full" or "selective"
    log_freq: int = 1  # steps between logged metrics (each logged step synchronises with the device)


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning: lower LR, a few epochs over packed conversations."""

    epochs: int = 3
    lr: float = 3e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0

"""Export a trained model: safetensors with the trainer's names, config.json, tokenizer and lineage.

Layout (docs/interfaces.md): `model.safetensors` (float32), `config.json` (ModelConfig fields),
`tokenizer.json`, `tokenizer_config.json`, `lineage.json`; with `hf=True` also `hf/`, a
LlamaForCausalLM layout whose q/k rows are permuted to Hugging Face's rotate-half rotary convention.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from common.chat import BOS, EOS, load_tokenizer, special_id
from trainer.configs import ModelConfig
from trainer.metrics import METRICS_FILE, read_metrics
from trainer.model import Transformer, rope_tables
from trainer.run_folder import CHECKPOINT_SUBDIR, RUN_FILE, TOKENIZER_SUBDIR, checkpoint_steps, read_run
from trainer.tokenizer.train import TOKENIZER_FILES

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LINEAGE_FILE = "lineage.json"


def expected_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every tensor name of the model and its shape."""
    with torch.device("meta"):
        model = Transformer(cfg)
    return {name: tuple(p.shape) for name, p in model.state_dict().items()}


def check_shapes(shapes: dict[str, tuple[int, ...]], cfg: ModelConfig, source: str) -> None:
    """Raise ValueError naming `source` when tensor names or shapes do not fit `cfg`."""
    expected = expected_shapes(cfg)
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = [
        f"{name} {shapes[name]} != {shape}"
        for name, shape in expected.items()
        if name in shapes and shapes[name] != shape
    ]
    if missing or extra or wrong:
        details = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:4])}" if missing else "",
                f"unexpected {', '.join(extra[:4])}" if extra else "",
                f"shape {', '.join(wrong[:4])}" if wrong else "",
            )
            if part
        )
        raise ValueError(f"{source}: weights do not match the model config ({details})")


def check_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig, source: str) -> None:
    """`check_shapes` for a state dict."""
    check_shapes({name: tuple(t.shape) for name, t in state_dict.items()}, cfg, source)


def check_tokenizer(tokenizer_dir: Path, cfg: ModelConfig) -> None:
    """Raise ValueError when the tokenizer's vocabulary size differs from the config's."""
    vocab = load_tokenizer(tokenizer_dir).get_vocab_size()
    if vocab != cfg.vocab_size:
        raise ValueError(
            f"{Path(tokenizer_dir) / 'tokenizer.json'}: vocab size {vocab} does not match "
            f"the model config's vocab_size {cfg.vocab_size}"
        )


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Move the finished `tmp` to `out_dir`, replacing an older export there."""
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old)
    else:
        os.replace(tmp, out_dir)


def export_state_dict(
    state_dict: dict[str, torch.Tensor],
    cfg: ModelConfig,
    tokenizer_dir: Path,
    out_dir: Path,
    lineage: dict[str, Any],
    hf: bool = False,
) -> Path:
    """Write the export directory atomically (a temporary sibling renamed into place); returns it."""
    out_dir, tokenizer_dir = Path(out_dir), Path(tokenizer_dir)
    check_state_dict(state_dict, cfg, "state dict")
    check_tokenizer(tokenizer_dir, cfg)
    tensors = {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in state_dict.items()}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        _write_json(tmp / CONFIG_FILE, cfg.to_dict())
        for name in TOKENIZER_FILES:
            shutil.copyfile(tokenizer_dir / name, tmp / name)
        _write_json(tmp / LINEAGE_FILE, lineage)
        if hf:
            write_hf(tensors, cfg, tokenizer_dir, tmp / "hf")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def read_config(export_dir: Path) -> ModelConfig:
    """The ModelConfig in `export_dir/config.json`."""
    path = Path(export_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: not an export directory")
    return ModelConfig.from_dict(json.loads(path.read_text()), source=str(path))


def load_export(export_dir: Path) -> tuple[Transformer, ModelConfig]:
    """Rebuild the model from an export directory (eval mode, float32, CPU).

    Built on the meta device and given the loaded tensors themselves (`assign=True`): host memory
    holds the weights once, not a randomly initialised copy as well (2 x 27 GB at 7B).
    """
    export_dir = Path(export_dir)
    cfg = read_config(export_dir)
    state_dict = load_file(str(export_dir / MODEL_FILE))
    check_state_dict(state_dict, cfg, str(export_dir / MODEL_FILE))
    with torch.device("meta"):
        model = Transformer(cfg)
    model.load_state_dict({name: t.float() for name, t in state_dict.items()}, assign=True)
    model.rope_cos, model.rope_sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
    return model.eval(), cfg


# ---------------------------------------------------------------- Hugging Face layout


def permute_to_hf(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Reorder q/k rows of each head from interleaved pairs (x0,x1),(x2,x3).. to halves (x0,x2,..|x1,x3,..)."""
    rows, cols = weight.shape
    return weight.view(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def permute_from_hf(weight: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Inverse of `permute_to_hf`."""
    rows, cols = weight.shape
    return weight.view(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


_HF_LAYER_NAMES = {
    "attention_norm.weight": "input_layernorm.weight",
    "attention.wq.weight": "self_attn.q_proj.weight",
    "attention.wk.weight": "self_attn.k_proj.weight",
    "attention.wv.weight": "self_attn.v_proj.weight",
    "attention.wo.weight": "self_attn.o_proj.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "feed_forward.w1.weight": "mlp.gate_proj.weight",
    "feed_forward.w2.weight": "mlp.down_proj.weight",
    "feed_forward.w3.weight": "mlp.up_proj.weight",
}


def to_hf_state_dict(state_dict: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename to LlamaForCausalLM names and permute q/k to rotate-half."""
    out = {"model.embed_tokens.weight": state_dict["tok_embeddings.weight"]}
    out["model.norm.weight"] = state_dict["norm.weight"]
    if "output.weight" in state_dict:
        out["lm_head.weight"] = state_dict["output.weight"]
    for i in range(cfg.n_layers):
        for ours, theirs in _HF_LAYER_NAMES.items():
            tensor = state_dict[f"layers.{i}.{ours}"]
            if ours == "attention.wq.weight":
                tensor = permute_to_hf(tensor, cfg.n_heads)
            elif ours == "attention.wk.weight":
                tensor = permute_to_hf(tensor, cfg.n_kv_heads)
            out[f"model.layers.{i}.{theirs}"] = tensor.contiguous()
    return out


def from_hf_state_dict(hf_state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Inverse of `to_hf_state_dict`."""
    out = {"tok_embeddings.weight": hf_state["model.embed_tokens.weight"]}
    out["norm.weight"] = hf_state["model.norm.weight"]
    if "lm_head.weight" in hf_state:
        out["output.weight"] = hf_state["lm_head.weight"]
    for i in range(cfg.n_layers):
        for ours, theirs in _HF_LAYER_NAMES.items():
            tensor = hf_state[f"model.layers.{i}.{theirs}"]
            if ours == "attention.wq.weight":
                tensor = permute_from_hf(tensor, cfg.n_heads)
            elif ours == "attention.wk.weight":
                tensor = permute_from_hf(tensor, cfg.n_kv_heads)
            out[f"layers.{i}.{ours}"] = tensor.contiguous()
    return out


def hf_config(cfg: ModelConfig, bos_token_id: int, eos_token_id: int) -> dict[str, Any]:
    """A transformers LlamaConfig as a dict."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_hidden_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "vocab_size": cfg.vocab_size,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "tie_word_embeddings": cfg.tie_embeddings,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }


def write_hf(
    state_dict: dict[str, torch.Tensor], cfg: ModelConfig, tokenizer_dir: Path, out_dir: Path
) -> None:
    """Write a LlamaForCausalLM directory (config, weights, fast-tokenizer files)."""
    out_dir.mkdir(parents=True)
    tokenizer = load_tokenizer(tokenizer_dir)
    save_file(to_hf_state_dict(state_dict, cfg), str(out_dir / MODEL_FILE), metadata={"format": "pt"})
    _write_json(out_dir / CONFIG_FILE, hf_config(cfg, special_id(tokenizer, BOS), special_id(tokenizer, EOS)))
    shutil.copyfile(tokenizer_dir / "tokenizer.json", out_dir / "tokenizer.json")
    tok_cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg["model_max_length"] = cfg.max_seq_len
    _write_json(out_dir / "tokenizer_config.json", tok_cfg)


# ---------------------------------------------------------------- from a training run

_TRAINER_STATE = ("optimizer.", "lr_scheduler.", "dataloader.", "train_state.")


def check_checkpoint(checkpoint_dir: Path, cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Compare a DCP checkpoint's model tensors (from its metadata only) with `cfg`; returns their shapes."""
    # lazy: DCP adds 0.6 s to every import of this module, and only checkpoint readers need it
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    metadata = dcp.FileSystemReader(str(checkpoint_dir)).read_metadata().state_dict_metadata
    shapes = {
        name: tuple(meta.size)
        for name, meta in metadata.items()
        if isinstance(meta, TensorStorageMetadata) and not name.startswith(_TRAINER_STATE)
    }
    check_shapes(shapes, cfg, f"checkpoint {checkpoint_dir}")
    return shapes


def load_checkpoint(checkpoint_dir: Path, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """The model weights of a torchtitan DCP checkpoint (any number of shards), checked against `cfg`."""
    import torch.distributed.checkpoint as dcp  # lazy: see check_checkpoint

    shapes = check_checkpoint(checkpoint_dir, cfg)
    reader = dcp.FileSystemReader(str(checkpoint_dir))
    state_dict = {name: torch.empty(shape, dtype=torch.float32) for name, shape in shapes.items()}
    with warnings.catch_warnings():  # "assuming the intent is to load in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state_dict, storage_reader=reader, no_dist=True)
    return state_dict


def run_lineage(run_dir: Path, step: int) -> dict[str, Any]:
    """lineage.json for a run: data and tokenizer hashes, steps, final losses, git commit."""
    run = read_run(run_dir)
    records = [r for r in read_metrics(Path(run_dir) / METRICS_FILE) if r.get("step", 0) <= step]
    train = [r["loss"] for r in records if "loss" in r]
    val = [r["val_loss"] for r in records if "val_loss" in r]
    lineage = {
        "run": Path(run_dir).name,
        "kind": run["kind"],
        "model_name": run["model_name"],
        "data_manifest_sha256": run["data_manifest_sha256"],
        "tokenizer_sha256": run["tokenizer_sha256"],
        "steps": step,
        # The context the model was trained at: the GGUF's context length (docs/interfaces.md).
        "seq_len": run["train"]["seq_len"],
        "final_losses": {"train": train[-1] if train else None, "val": val[-1] if val else None},
        "git_commit": run["git_commit"],
    }
    if "base_run" in run:
        lineage["base_run"] = Path(run["base_run"]).name
    return lineage


def export_run(run_dir: Path, out_dir: Path, hf: bool = False) -> Path:
    """Consolidate the last checkpoint of a run folder into an export directory."""
    run_dir = Path(run_dir)
    cfg = ModelConfig.from_dict(read_run(run_dir)["model"], source=str(run_dir / RUN_FILE))
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise FileNotFoundError(f"{run_dir / CHECKPOINT_SUBDIR} holds no checkpoint to export")
    state_dict = load_checkpoint(run_dir / CHECKPOINT_SUBDIR / f"step-{steps[-1]}", cfg)
    lineage = run_lineage(run_dir, steps[-1])
    return export_state_dict(state_dict, cfg, run_dir / TOKENIZER_SUBDIR, out_dir, lineage, hf=hf)

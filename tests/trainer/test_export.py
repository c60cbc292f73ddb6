"""Export -> reload gives identical logits; the HF layout's q/k permutation matches rotate-half RoPE."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from trainer.configs import ModelConfig
from trainer.export import (
    export_state_dict,
    from_hf_state_dict,
    load_export,
    permute_from_hf,
    permute_to_hf,
    to_hf_state_dict,
)
from trainer.model import Transformer, rope_tables

LINEAGE = {"steps": 3, "tokenizer_sha256": "abc"}


def test_export_reload_identical_logits(tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path) -> None:
    torch.manual_seed(0)
    model = Transformer(micro_cfg).eval()
    out = export_state_dict(model.state_dict(), micro_cfg, tokenizer_dir, tmp_path / "export", LINEAGE)
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json", "lineage.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
    ]  # fmt: skip
    assert json.loads((out / "config.json").read_text()) == micro_cfg.to_dict()
    assert json.loads((out / "lineage.json").read_text()) == LINEAGE
    reloaded, cfg = load_export(out)
    assert cfg == micro_cfg
    # Built on meta and given the loaded tensors: every parameter and RoPE table is a real CPU tensor.
    loaded = [*reloaded.parameters(), *reloaded.buffers()]
    assert {(t.device.type, t.dtype) for t in loaded} == {("cpu", torch.float32)}
    torch.testing.assert_close(reloaded.rope_cos, model.rope_cos, rtol=0, atol=0)
    tokens = torch.randint(0, micro_cfg.vocab_size, (2, 10))
    torch.testing.assert_close(reloaded(tokens), model(tokens), rtol=0, atol=0)
    assert not list(tmp_path.glob(".export*"))  # no temporary directory left behind


def test_export_untied_writes_output_head(
    tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path
) -> None:
    cfg = replace(micro_cfg, tie_embeddings=False)
    out = export_state_dict(Transformer(cfg).state_dict(), cfg, tokenizer_dir, tmp_path / "e", LINEAGE)
    tensors = load_file(str(out / "model.safetensors"))
    assert tensors["output.weight"].shape == (cfg.vocab_size, cfg.dim)
    assert all(t.dtype == torch.float32 for t in tensors.values())


def test_export_rejects_tokenizer_with_other_vocab(
    tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path
) -> None:
    cfg = replace(micro_cfg, vocab_size=micro_cfg.vocab_size + 8)
    with pytest.raises(ValueError, match=r"tokenizer.json: vocab size 320 does not match .* vocab_size 328"):
        export_state_dict(Transformer(cfg).state_dict(), cfg, tokenizer_dir, tmp_path / "e", LINEAGE)
    assert not (tmp_path / "e").exists()


def test_export_rejects_weights_of_another_config(
    tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path
) -> None:
    other = Transformer(replace(micro_cfg, dim=32)).state_dict()
    with pytest.raises(ValueError, match=r"weights do not match the model config \(shape tok_embeddings"):
        export_state_dict(other, micro_cfg, tokenizer_dir, tmp_path / "e", LINEAGE)


def _rotate_half_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Hugging Face's RoPE: x * cos + rotate_half(x) * sin with cos/sin repeated over both halves."""
    cos, sin = torch.cat([cos, cos], -1)[:, None, :], torch.cat([sin, sin], -1)[:, None, :]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def test_hf_permutation_round_trip_and_attention_scores(micro_cfg: ModelConfig, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Transformer(micro_cfg)
    state = model.state_dict()
    hf = to_hf_state_dict(state, micro_cfg)
    assert "lm_head.weight" not in hf and len(hf) == len(state)
    back = from_hf_state_dict(hf, micro_cfg)
    for name, tensor in state.items():
        torch.testing.assert_close(back[name], tensor, rtol=0, atol=0)
    wq = state["layers.0.attention.wq.weight"]
    assert not torch.equal(permute_to_hf(wq, micro_cfg.n_heads), wq)
    torch.testing.assert_close(permute_from_hf(permute_to_hf(wq, 4), 4), wq, rtol=0, atol=0)

    # q.k scores: our interleaved RoPE on our weights == HF rotate-half RoPE on the permuted weights.
    x = torch.randn(1, 6, micro_cfg.dim)
    hd, cos, sin = micro_cfg.head_dim, *rope_tables(micro_cfg.head_dim, 6, micro_cfg.rope_theta)
    attn = model.layers["0"].attention
    from trainer.model import apply_rope

    ours_q = apply_rope(attn.wq(x).view(1, 6, -1, hd), cos, sin)
    ours_k = apply_rope(attn.wk(x).view(1, 6, -1, hd), cos, sin)
    hf_q = _rotate_half_rope(
        (x @ hf["model.layers.0.self_attn.q_proj.weight"].T).view(1, 6, -1, hd), cos, sin
    )
    hf_k = _rotate_half_rope(
        (x @ hf["model.layers.0.self_attn.k_proj.weight"].T).view(1, 6, -1, hd), cos, sin
    )
    group = micro_cfg.n_heads // micro_cfg.n_kv_heads
    ours = torch.einsum("bthd,bshd->bhts", ours_q, ours_k.repeat_interleave(group, 2))
    theirs = torch.einsum("bthd,bshd->bhts", hf_q, hf_k.repeat_interleave(group, 2))
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-5)


def test_hf_export_layout(tmp_path: Path, micro_cfg: ModelConfig, tokenizer_dir: Path) -> None:
    out = export_state_dict(
        Transformer(micro_cfg).state_dict(), micro_cfg, tokenizer_dir, tmp_path / "e", LINEAGE, hf=True
    )
    config = json.loads((out / "hf" / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (config["hidden_size"], config["num_key_value_heads"], config["tie_word_embeddings"]) == (
        64,
        2,
        True,
    )
    names = set(load_file(str(out / "hf" / "model.safetensors")))
    assert "model.layers.1.mlp.gate_proj.weight" in names and "model.embed_tokens.weight" in names
    assert (out / "hf" / "tokenizer.json").is_file()

"""The hand-written model: names, parameter counts, causality, RoPE convention, document masks."""

from __future__ import annotations

import torch

from trainer.configs import MODEL_CONFIGS, ModelConfig, get_model_config
from trainer.model import DENSE, FLEX, Transformer, apply_rope, document_attention_backend, rope_tables


def test_7b_parameter_count_on_meta() -> None:
    with torch.device("meta"):
        model = Transformer(MODEL_CONFIGS["7b"])
    assert sum(p.numel() for p in model.parameters()) == 6_738_415_616
    assert MODEL_CONFIGS["7b"].num_params() == 6_738_415_616


def test_registry_parameter_counts() -> None:
    counts = {}
    for name in ("tiny", "small", "1b"):
        with torch.device("meta"):
            model = Transformer(MODEL_CONFIGS[name])
        counts[name] = sum(p.numel() for p in model.parameters())
        assert counts[name] == MODEL_CONFIGS[name].num_params()
    assert counts == {"tiny": 1_311_872, "small": 123_685_632, "1b": 1_038_682_112}


def test_vocab_override_and_unknown_name() -> None:
    assert get_model_config("tiny", vocab_size=320).vocab_size == 320
    try:
        get_model_config("huge")
    except ValueError as exc:
        assert "unknown model config 'huge'" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_parameter_names_follow_the_export_format(micro_cfg: ModelConfig) -> None:
    names = list(Transformer(micro_cfg).state_dict())
    assert names[:10] == [
        "tok_embeddings.weight",
        "layers.0.attention_norm.weight",
        "layers.0.attention.wq.weight",
        "layers.0.attention.wk.weight",
        "layers.0.attention.wv.weight",
        "layers.0.attention.wo.weight",
        "layers.0.ffn_norm.weight",
        "layers.0.feed_forward.w1.weight",
        "layers.0.feed_forward.w2.weight",
        "layers.0.feed_forward.w3.weight",
    ]
    assert names[-1] == "norm.weight"  # tied: no output.weight
    assert len(names) == 2 + 9 * micro_cfg.n_layers


def test_logits_are_causal(micro_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = Transformer(micro_cfg).eval()
    tokens = torch.randint(0, micro_cfg.vocab_size, (1, 12))
    changed = tokens.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % micro_cfg.vocab_size
    a, b = model(tokens), model(changed)
    assert a.dtype == torch.float32 and a.shape == (1, 12, micro_cfg.vocab_size)
    torch.testing.assert_close(a[:, :8], b[:, :8], rtol=0, atol=0)
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_rope_rotates_interleaved_pairs() -> None:
    cos, sin = rope_tables(head_dim=4, max_seq_len=3, theta=10000.0)
    x = torch.tensor([1.0, 0.0, 1.0, 0.0]).expand(1, 3, 1, 4)
    out = apply_rope(x, cos, sin)[0, :, 0]
    # Pair (x0, x1) turns by position * 1, pair (x2, x3) by position * 10000^-0.5 = position / 100.
    expected = torch.tensor(
        [
            [1.0, 0.0, 1.0, 0.0],
            [cos[1, 0], sin[1, 0], cos[1, 1], sin[1, 1]],
            [cos[2, 0], sin[2, 0], cos[2, 1], sin[2, 1]],
        ]
    )
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(sin[2, 1], torch.tensor(0.02).sin())


def test_neox_init_scales_output_projections(micro_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(**{**micro_cfg.to_dict(), "dim": 256, "n_layers": 4})
    model = Transformer(cfg)
    block = model.layers["0"]
    assert abs(block.attention.wq.weight.std().item() - (2 / (5 * 256)) ** 0.5) < 2e-3
    assert abs(block.attention.wo.weight.std().item() - 2 / (4 * 16)) < 2e-3
    assert abs(block.feed_forward.w2.weight.std().item() - 2 / (4 * 16)) < 2e-3


def test_packed_row_with_positions_equals_each_document_alone(micro_cfg: ModelConfig) -> None:
    """Document masking + per-document RoPE: a packed row's logits are those of its documents run alone."""
    torch.manual_seed(0)
    model = Transformer(micro_cfg).eval()
    a, b = torch.randint(0, micro_cfg.vocab_size, (1, 7)), torch.randint(0, micro_cfg.vocab_size, (1, 5))
    row = torch.cat([a, b], dim=1)
    positions = torch.cat([torch.arange(7), torch.arange(5)])[None]
    with torch.no_grad():
        packed = model(row, positions=positions)
        alone = torch.cat([model(a), model(b)], dim=1)
        unmasked = model(row)
    torch.testing.assert_close(packed, alone, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(unmasked[:, 7:], alone[:, 7:], atol=1e-3)  # without it, b sees a


def test_flex_attention_block_mask_equals_the_dense_mask_on_a_packed_batch(micro_cfg: ModelConfig) -> None:
    """The CUDA path (FlexAttention, eager here) against the CPU path (SDPA, dense mask), whole model."""
    torch.manual_seed(0)
    model = Transformer(micro_cfg).eval()
    rows = torch.randint(0, micro_cfg.vocab_size, (2, 40))
    lengths = [[7, 20, 13], [40]]  # documents per row; the second row is one document
    positions = torch.stack([torch.cat([torch.arange(n) for n in row]) for row in lengths])
    assert document_attention_backend(rows.device) == DENSE  # what CPU training uses
    with torch.no_grad():
        dense = model(rows, positions=positions)
        model.document_attention = "flex"
        flex = model(rows, positions=positions)
        causal = model(rows)
    torch.testing.assert_close(flex, dense, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(flex[0, 7:], causal[0, 7:], atol=1e-3)  # the later documents were masked
    torch.testing.assert_close(flex[1], causal[1], rtol=1e-5, atol=1e-5)  # one document: plain causal
    assert document_attention_backend(torch.device("cuda")) == FLEX

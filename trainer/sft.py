"""Supervised fine-tuning launcher: multi-turn chats, loss on assistant tokens, packed, lower LR.

The training itself is torchtitan's (config `sft` in trainer.titan.config_registry): the base run's
last checkpoint is loaded as initial weights (model only) and trainer.titan.data.ChatDataLoader feeds
whole conversations best-fit packed into rows (trainer.titan.packing), labelling only assistant tokens.
An epoch is one pass over the packed rows; run.json records the rows, their fill and any conversation
dropped for being longer than a row. The recipe (trainer.recipe.plan_sft) keeps the base run's layout
and re-plans the micro-batch with the memory model, so a 7B fine-tune fits where its pretraining did.
"""

from __future__ import annotations

import shlex
from dataclasses import fields
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from common.chat import load_tokenizer
from trainer.configs import ModelConfig, TrainConfig
from trainer.launch import Nodes, launch_record
from trainer.recipe import Plan, plan_sft
from trainer.run_folder import CHECKPOINT_SUBDIR, RUN_FILE, TOKENIZER_SUBDIR, checkpoint_steps, read_run
from trainer.train import launch, record_run, torchrun_for


def _val_rows(data: Path, tokenizer: Tokenizer, seq_len: int) -> int:
    """Packed rows of the held-out conversations (0 when none fits a row)."""
    # lazy: trainer.titan imports torch and torchtitan; `chakor sft --help` stays fast
    from trainer.titan.packing import pack_conversations

    try:
        return len(pack_conversations(data, tokenizer, seq_len, "val").ids)
    except ValueError:
        return 0


def base_recipe(base_run: dict[str, Any]) -> TrainConfig:
    """The pretraining recipe a base run recorded (fields a newer TrainConfig lacks are dropped)."""
    known = {f.name for f in fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in base_run["train"].items() if k in known})


def plan_base_sft(
    base: Path, nproc: int = 1, nnodes: int = 1, data: Path | None = None, **recipe: Any
) -> Plan:
    """`plan_sft` for the last checkpoint of run `base` (with `data`: its packed rows set the steps)."""
    base_run = read_run(base)
    cfg = ModelConfig.from_dict(base_run["model"], source=str(Path(base) / RUN_FILE))
    rows = None
    if data is not None:
        # lazy: trainer.titan imports torch and torchtitan; `chakor sft --help` stays fast
        from trainer.titan.packing import pack_conversations

        seq_len = recipe.get("seq_len", base_run["train"]["seq_len"])
        rows = len(pack_conversations(data, load_tokenizer(Path(base) / TOKENIZER_SUBDIR), seq_len).ids)
    return plan_sft(
        base_run.get("model_name", "custom"), cfg, base_recipe(base_run), nproc, nnodes, rows, **recipe
    )


def run_sft(
    base: Path,
    data: Path,
    out: Path,
    nproc: int = 1,
    quiet: bool = False,
    nodes: Nodes | None = None,
    **recipe: Any,
) -> Path:
    """Fine-tune the last checkpoint of run `base` on conversations (JSONL). Returns the run folder.

    The recipe is `trainer.recipe.plan_sft`'s (the base run's layout and sequence length, a micro-batch
    that fits, a fine-tuning LR); `recipe` overrides SFTConfig fields. `nodes` as in
    `trainer.train.run_training`: node 0 writes the run folder, the others only start their processes.
    """
    # lazy: trainer.titan imports torch and torchtitan; `chakor sft --help` stays fast
    from trainer.titan.packing import pack_conversations, read_conversations, split_conversations

    nodes = nodes or Nodes()
    base, out, data = Path(base).resolve(), Path(out).resolve(), Path(data).resolve()
    if nodes.node_rank > 0:
        launch(out, "sft", nproc, quiet=quiet, nodes=nodes)
        return out
    base_run = read_run(base)
    steps_saved = checkpoint_steps(base)
    if not steps_saved:
        raise FileNotFoundError(f"{base / CHECKPOINT_SUBDIR} holds no checkpoint to fine-tune")
    if (out / RUN_FILE).is_file():
        raise FileExistsError(f"{out} already holds a run; choose another --out")
    cfg = ModelConfig.from_dict(base_run["model"], source=str(base / RUN_FILE))
    tokenizer = load_tokenizer(base / TOKENIZER_SUBDIR)
    seq_len = recipe.get("seq_len", base_run["train"]["seq_len"])
    packed = pack_conversations(data, tokenizer, seq_len)
    plan = plan_sft(
        base_run.get("model_name", "custom"),
        cfg,
        base_recipe(base_run),
        nproc,
        nodes.nnodes,
        len(packed.ids),
        **recipe,
    )
    sft = plan.train
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
        # Validation needs a packed row of held-out conversations for every data-parallel rank.
        validation=val_rows >= plan.world_size // plan.tensor_parallel,
        sample_prompts=prompts,
        lr_rule=plan.rules.get("lr", "override"),
        **launch_record(nproc, nodes.nnodes, shlex.join(torchrun_for(out, "sft", nproc, nodes))),
    )  # fmt: skip
    launch(out, "sft", nproc, quiet=quiet, nodes=nodes)
    return out

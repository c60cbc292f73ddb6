"""torchtitan config registry: `--module trainer.titan --config pretrain|sft`.

The recipe comes from the run folder's `run.json` (`CHAKOR_RUN_DIR`, set by the launcher), so a
resumed run trains with exactly the same settings. Any field stays overridable from torchtitan's CLI.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchtitan.components.checkpoint import CheckpointManager
from torchtitan.components.loss import CrossEntropyLoss
from torchtitan.components.metrics import MetricsProcessor
from torchtitan.components.optimizer import LRSchedulersContainer, OptimizersContainer
from torchtitan.components.optimizer.optimizer import ParamGroupConfig
from torchtitan.config import CompileConfig, ParallelismConfig, TrainingConfig
from torchtitan.config.configs import DebugConfig
from torchtitan.distributed.activation_checkpoint import FullAC, SelectiveAC

from trainer.configs import SFTConfig, TrainConfig
from trainer.run_folder import TOKENIZER_SUBDIR, read_run
from trainer.titan.data import ChatDataLoader, ShardDataLoader
from trainer.titan.loss import LabelledCrossEntropyLoss
from trainer.titan.trainer import ChakorTrainer, SampleValidator

RUN_DIR_ENV = "CHAKOR_RUN_DIR"


def _run_dir() -> Path:
    if RUN_DIR_ENV not in os.environ:
        raise RuntimeError(f"{RUN_DIR_ENV} is not set: start training with `chakor train` or trainer.train")
    return Path(os.environ[RUN_DIR_ENV])


def adamw(recipe: TrainConfig) -> OptimizersContainer.Config:
    """AdamW; norm weights get no weight decay."""
    kwargs = {"lr": recipe.lr, "betas": tuple(recipe.betas), "eps": 1e-8}
    return OptimizersContainer.Config(
        param_groups=[
            ParamGroupConfig(
                pattern=r"norm\.weight$", optimizer_name="AdamW", optimizer_kwargs={**kwargs, "weight_decay": 0.0}
            ),
            ParamGroupConfig(
                pattern=r".*", optimizer_name="AdamW",
                optimizer_kwargs={**kwargs, "weight_decay": recipe.weight_decay},
            ),
        ]
    )  # fmt: skip


def checkpointing(recipe: TrainConfig, on_gpu: bool) -> CheckpointManager.Config:
    """DCP checkpoints every `checkpoint_every` steps, the latest two kept (torchtitan's minimum: one
    may still be writing). On GPU they save asynchronously from pinned host memory (training goes on
    while a ~81 GB 7B checkpoint is written); on CPU (gloo) synchronously: a CPU run's checkpoints take
    well under a second, and async staging would hold a second copy of the state in the same RAM.
    The last step always saves synchronously (torchtitan)."""
    return CheckpointManager.Config(
        enable=True,
        interval=recipe.checkpoint_every,
        last_save_model_only=False,
        keep_latest_k=2,
        async_mode="async_with_pinned_mem" if on_gpu else "disabled",
    )


def activation_checkpointing(recipe: TrainConfig) -> FullAC.Config | SelectiveAC.Config | None:
    """torchtitan's full (whole blocks) or selective (per-op) activation checkpointing, or none."""
    if not recipe.activation_checkpointing:
        return None
    if recipe.activation_checkpointing_mode == "selective":
        return SelectiveAC.Config()
    if recipe.activation_checkpointing_mode != "full":
        raise ValueError(
            f"activation_checkpointing_mode must be full or selective, got {recipe.activation_checkpointing_mode!r}"
        )
    return FullAC.Config()


def _base(run_dir: Path, recipe: TrainConfig, vocab_size: int) -> ChakorTrainer.Config:
    on_gpu = torch.cuda.is_available()
    return ChakorTrainer.Config(
        run_dir=str(run_dir),
        dump_folder=str(run_dir),
        hf_assets_path=str(run_dir / TOKENIZER_SUBDIR),
        loss=CrossEntropyLoss.Config(global_vocab_size=vocab_size),
        optimizer=adamw(recipe),
        lr_scheduler=LRSchedulersContainer.Config(
            warmup_steps=recipe.warmup_steps, decay_type="cosine", min_lr_factor=recipe.min_lr_ratio
        ),
        training=TrainingConfig(
            local_batch_size=recipe.local_batch_size,
            global_batch_size=recipe.global_batch_size,
            seq_len=recipe.seq_len,
            steps=recipe.steps,
            max_norm=recipe.max_norm,
            # bf16 compute on GPU (FSDP2 mixed precision: bf16 params, fp32 reductions and master weights).
            mixed_precision_param="bfloat16" if on_gpu else "float32",
            disable_cuda_graphs=True,
        ),
        # The non-finite-loss check rides on the logged loss: every step unless the recipe logs less
        # often (big models, where each logged step synchronises with the GPU).
        metrics=MetricsProcessor.Config(log_freq=recipe.log_freq, disable_color_printing=True),
        checkpoint=checkpointing(recipe, on_gpu),
        activation_checkpoint=activation_checkpointing(recipe),
        compile=CompileConfig(enable=recipe.compile),
        parallelism=ParallelismConfig(
            spmd_backend="partial_dtensor",
            tensor_parallel_degree=recipe.tensor_parallel,
            data_parallel_replicate_degree=recipe.data_parallel_replicate,
        ),
        debug=DebugConfig(seed=recipe.seed, enable_structured_logging=False),
    )


def pretrain() -> ChakorTrainer.Config:
    """Pretraining on the shards named in run.json, validation and samples every `eval_every` steps."""
    run_dir = _run_dir()
    run = read_run(run_dir)
    recipe = TrainConfig(**run["train"])
    config = _base(run_dir, recipe, run["model"]["vocab_size"])
    config.dataloader = ShardDataLoader.Config(dataset_path=run["data"], seed=recipe.seed)
    config.validator = SampleValidator.Config(
        enable=True,
        freq=recipe.eval_every,
        steps=recipe.eval_batches,
        dataloader=ShardDataLoader.Config(dataset_path=run["data"], split="val", infinite=False),
        run_dir=str(run_dir),
        sample_tokens=recipe.sample_tokens,
    )
    return config


def sft() -> ChakorTrainer.Config:
    """Multi-turn SFT from the base run's last checkpoint (weights only), loss on assistant tokens;
    validation and chat samples on the held-out conversations when there are enough."""
    run_dir = _run_dir()
    run = read_run(run_dir)
    recipe = SFTConfig(**run["train"])
    config = _base(run_dir, recipe, run["model"]["vocab_size"])
    # The loader marks the labelled tokens (`predict`); the model computes logits for those alone.
    config.loss = LabelledCrossEntropyLoss.Config(global_vocab_size=run["model"]["vocab_size"])
    config.dataloader = ChatDataLoader.Config(
        dataset_path=run["data"], tokenizer_dir=str(run_dir / TOKENIZER_SUBDIR), seed=recipe.seed
    )
    if run["validation"]:
        config.validator = SampleValidator.Config(
            enable=True,
            freq=recipe.eval_every,
            steps=recipe.eval_batches,
            dataloader=ChatDataLoader.Config(
                dataset_path=run["data"],
                tokenizer_dir=str(run_dir / TOKENIZER_SUBDIR),
                split="val",
                infinite=False,
            ),
            run_dir=str(run_dir),
            prompts=run["sample_prompts"],
            sample_tokens=recipe.sample_tokens,
            chat=True,
        )
    config.checkpoint.initial_load_path = run["base_checkpoint"]
    config.checkpoint.initial_load_model_only = True
    return config

"""torchtitan's Trainer, extended where Chakor needs more (no training loop of our own).

- `ChakorTrainer`: takes the model config from the run folder's `run.json`, logs metrics to
  `metrics.jsonl` (+ `loss.png`), and turns a non-finite loss into a clear error that names the last
  good checkpoint (torchtitan raises before that step is saved, so it is kept).
- `ChakorTrainer` also all-reduces gradients across HSDP/DDP replicas once per optimizer step: on the
  non-final micro-batches of gradient accumulation FSDP2 only reduce-scatters inside the replica
  (`set_requires_all_reduce(False)`) and the replica all-reduce of the final one carries the sum.
- `SampleValidator`: torchtitan's Validator under `torch.no_grad()`, then perplexity and a few sampled
  continuations written to `samples.jsonl` (rank 0 samples, every rank runs the same forwards:
  trainer.titan.sampling).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.distributed.fsdp import FSDPModule
from torchtitan.components.metrics import BaseLogger
from torchtitan.components.validate import Validator
from torchtitan.tools.logging import logger
from torchtitan.trainer import Trainer

from common.chat import BOS, END, EOS, encode_chat, load_tokenizer, special_id
from trainer.configs import ModelConfig
from trainer.metrics import LOSS_PNG, METRICS_FILE, MetricsWriter, plot_loss_curves
from trainer.model import document_attention_backend
from trainer.run_folder import CHECKPOINT_SUBDIR, RUN_FILE, TOKENIZER_SUBDIR, checkpoint_steps, read_run
from trainer.titan.model_spec import model_spec
from trainer.titan.sampling import generate_in_lockstep

SAMPLES_FILE = "samples.jsonl"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without saving that step."""


def _is_logging_rank() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


class JsonlLogger(BaseLogger):
    """torchtitan metric logger writing compact records to metrics.jsonl and redrawing loss.png.

    Besides loss, grad norm, tokens/s and lr: the peak reserved device memory, the caching allocator's
    retries and OOMs (torch.cuda.memory_stats; null on CPU, which keeps no such statistics) and the share
    of the step spent waiting for the data loader (measured on every device).
    """

    _KEYS = {
        "loss_metrics/global_avg_loss": "loss",
        "grad_norm": "grad_norm",
        "throughput(tps)": "tokens_per_s",
        "mfu(%)": "mfu",
        "n_tokens_seen": "tokens",
        "validation_metrics/loss": "val_loss",
        "nonfinite_loss": "nonfinite_loss",
        "memory/max_reserved(GiB)": "memory_max_reserved_gib",
        "memory/num_alloc_retries": "alloc_retries",
        "memory/num_ooms": "ooms",
        "time_metrics/data_loading(%)": "data_loading_pct",
    }
    _DEVICE_ONLY = {"mfu", "memory_max_reserved_gib", "alloc_retries", "ooms"}

    def __init__(self, run_dir: Path, on_gpu: bool) -> None:
        self.run_dir = Path(run_dir)
        self.writer = MetricsWriter(self.run_dir / METRICS_FILE)
        self.on_gpu = on_gpu

    def log(self, metrics: dict[str, Any], step: int) -> None:
        record: dict[str, Any] = {"step": step}
        for key, value in metrics.items():
            name = self._KEYS.get(key) or ("lr" if key.startswith("lr") else None)
            if name in self._DEVICE_ONLY and not self.on_gpu:
                if name != "mfu":  # not measured: null rather than torchtitan's -1
                    record[name] = None
            elif name:
                value = float(value)
                record[name] = round(value, 6) if math.isfinite(value) else None  # JSON has no NaN
        if record.get("val_loss") is not None:
            record["val_ppl"] = round(math.exp(min(record["val_loss"], 50.0)), 4)
            plot_loss_curves([self.run_dir / METRICS_FILE], self.run_dir / LOSS_PNG)
        self.writer.log(record)

    def close(self) -> None:
        if (self.run_dir / METRICS_FILE).is_file():
            plot_loss_curves([self.run_dir / METRICS_FILE], self.run_dir / LOSS_PNG)


class SampleValidator(Validator):
    """Validation loss without autograd, then sampled continuations of a few prompts."""

    @dataclass(kw_only=True, slots=True)
    class Config(Validator.Config):
        run_dir: str = ""
        prompts: list[str] = field(default_factory=lambda: ["The", "Once upon a time", "def "])
        sample_tokens: int = 32
        chat: bool = False
        """Prompt as a user turn followed by the assistant header (SFT)."""

    def validate(self, model_parts: list[torch.nn.Module], step: int) -> None:
        with torch.no_grad():
            super().validate(model_parts, step)
            if self.config.sample_tokens > 0 and len(model_parts) == 1:
                self._sample(model_parts[0], step)

    def _sample(self, model: torch.nn.Module, step: int) -> None:
        tokenizer = load_tokenizer(Path(self.config.run_dir) / TOKENIZER_SUBDIR)
        stops = tuple(special_id(tokenizer, t) for t in (BOS, EOS, END))  # BOS: the next document
        generator = torch.Generator().manual_seed(step)
        # Sequence parallel splits the window over the TP ranks: its length must divide evenly.
        multiple_of = self.parallel_dims.tp if self.parallel_dims.tp_enabled else 1
        model.eval()
        samples = []
        for prompt in self.config.prompts:
            if self.config.chat:
                ids = encode_chat(
                    tokenizer, [{"role": "user", "content": prompt}], add_generation_prompt=True
                ).ids
            else:
                ids = [special_id(tokenizer, BOS), *tokenizer.encode(prompt, add_special_tokens=False).ids]
            out = generate_in_lockstep(
                model, ids, self.config.sample_tokens, multiple_of, stop_ids=stops, generator=generator
            )
            samples.append({"prompt": prompt, "completion": tokenizer.decode(out, skip_special_tokens=False)})
        model.train()
        if _is_logging_rank():
            with (Path(self.config.run_dir) / SAMPLES_FILE).open("a") as f:
                f.write(json.dumps({"step": step, "samples": samples}) + "\n")
            for sample in samples:
                logger.info(f"sample {sample['prompt']!r} -> {sample['completion']!r}")


class ChakorTrainer(Trainer):
    """torchtitan Trainer for a run folder made by `trainer.train.prepare_run`."""

    @dataclass(kw_only=True, slots=True)
    class Config(Trainer.Config):
        run_dir: str = ""
        """Run folder: run.json (model config), tokenizer/, checkpoint/, metrics.jsonl."""

    def __init__(self, config: Config) -> None:
        run_dir = Path(config.run_dir)
        run = read_run(run_dir)
        cfg = ModelConfig.from_dict(run["model"], source=str(run_dir / RUN_FILE))
        config.model_spec = model_spec(cfg, flavor=run.get("model_name", "custom"))
        config.dump_folder = str(run_dir)
        config.hf_assets_path = str(run_dir / TOKENIZER_SUBDIR)
        config.checkpoint.folder = CHECKPOINT_SUBDIR
        super().__init__(config)
        self._micro_step = 0
        # Pretraining rows are one causal stream; SFT rows are packed documents (trainer.model).
        packed = run["kind"] == "sft"
        attention = document_attention_backend(self.device) if packed else "sdpa causal (is_causal=True)"
        logger.info(f"attention backend: {attention}")
        if _is_logging_rank():
            on_gpu = torch.cuda.is_available()
            self.metrics_processor.logger = JsonlLogger(run_dir, on_gpu=on_gpu)

    def forward_backward_step(self, **kwargs: Any) -> torch.Tensor:
        """torchtitan's forward and backward of one micro-batch, with the replica all-reduce only on
        the last micro-batch of a step (torchtitan calls this gradient_accumulation_steps times per step)."""
        last = self._micro_step == self.gradient_accumulation_steps - 1
        self._micro_step = 0 if last else self._micro_step + 1
        if self.parallel_dims.dp_replicate_enabled and self.gradient_accumulation_steps > 1:
            for part in self.model_parts:
                if isinstance(part, FSDPModule):
                    part.set_requires_all_reduce(last)
        return super().forward_backward_step(**kwargs)

    def train_step(self, data_iterator: Any) -> None:
        try:
            super().train_step(data_iterator)
        except RuntimeError as exc:
            if "Loss is not finite" not in str(exc):
                raise
            steps = checkpoint_steps(Path(self.config.dump_folder))
            kept = f"the last good checkpoint is step {steps[-1]}" if steps else "no checkpoint was saved yet"
            self.metrics_processor.logger.log({"nonfinite_loss": 1.0}, self.step)
            raise NonFiniteLossError(
                f"loss became NaN/inf at step {self.step}; training stopped and {kept} "
                f"({Path(self.config.dump_folder) / CHECKPOINT_SUBDIR}). Lower the learning rate "
                "and resume with --resume."
            ) from None

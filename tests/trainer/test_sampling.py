"""Validation-time sampling: rank 0 chooses, every rank follows, on two real gloo processes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.configs import ModelConfig
from trainer.model import Transformer
from trainer.titan.sampling import generate_in_lockstep

PROMPT = [1, 5, 9, 2]


def _sample(model: Transformer, multiple_of: int = 1, temperature: float = 0.8) -> list[int]:
    generator = torch.Generator().manual_seed(7)
    return generate_in_lockstep(model, PROMPT, 12, multiple_of, temperature=temperature, generator=generator)


def _worker(rank: int, store_file: str, cfg: ModelConfig, out: str) -> None:
    """Each rank holds DIFFERENT weights (seeded by rank): sampling alone, the ranks would diverge."""
    dist.init_process_group("gloo", init_method=f"file://{store_file}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)
        model = Transformer(cfg).eval()
        forwards: list[int] = []
        model.register_forward_hook(lambda module, args, output: forwards.append(args[0].shape[1]))
        ids = _sample(model, multiple_of=4)
        Path(out, f"rank{rank}.json").write_text(json.dumps({"ids": ids, "lengths": forwards}))
    finally:
        dist.destroy_process_group()


def test_every_rank_gets_rank_zeros_tokens_and_runs_the_same_forwards(
    tmp_path: Path, micro_cfg: ModelConfig
) -> None:
    mp.start_processes(
        _worker, args=(str(tmp_path / "store"), micro_cfg, str(tmp_path)), nprocs=2, start_method="spawn"
    )
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert ranks[0] == ranks[1]
    # The same forwards: one per new token, each on the window padded to a multiple of 4.
    assert ranks[0]["lengths"] == [-(-n // 4) * 4 for n in range(len(PROMPT), len(PROMPT) + 12)]
    torch.manual_seed(0)
    alone = Transformer(micro_cfg).eval()  # rank 0's weights, no process group
    assert ranks[0]["ids"] == _sample(alone)
    torch.manual_seed(1)
    assert _sample(Transformer(micro_cfg).eval()) != ranks[0]["ids"]  # rank 1 alone would have diverged


def test_padding_the_window_does_not_change_the_tokens(micro_cfg: ModelConfig) -> None:
    torch.manual_seed(0)
    model = Transformer(micro_cfg).eval()
    assert _sample(model, multiple_of=8, temperature=0) == _sample(model, multiple_of=1, temperature=0)

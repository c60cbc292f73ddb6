"""Which attention kernel runs at the 7B shapes: `python -m benchmarks.gpu.probe [--cpu]`.

The kernel SDPA dispatches to is read from the profiler's op names (aten::_scaled_dot_product_*),
for one forward and backward of each attention the trainer uses (trainer.model.attend):

- pretraining, causal: must be flash or cuDNN on CUDA (the kernels that skip the masked half);
- SFT, packed documents: the trainer's CUDA path is FlexAttention with a block mask (no SDPA op at
  all); the dense-mask fallback is reported too and must not be the math kernel, which would
  materialize the T x T scores (4 GiB per layer at 7B shapes in fp32).

On CUDA the shapes are one 7B layer's (batch 1, 32 heads, T 4096, head_dim 128, bf16); with --cpu
a tiny layer's (the CPU has no flash kernel: its results are reported, only the math kernel fails).
Prints one line per probe and exits 1 when one fails.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable

import torch
from torch.nn.attention.flex_attention import BlockMask
from torch.profiler import ProfilerActivity, profile

from trainer.model import FLEX, attend, document_attention_backend, document_block_mask, document_mask

KERNELS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
}


def _kernels(run: Callable[[], None]) -> tuple[list[str], float]:
    """The SDPA kernels one call of `run` (forward + backward) dispatched to, and its seconds."""
    activities = [ProfilerActivity.CPU]
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        run()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    names = {event.name for event in prof.events()}
    return sorted({label for op, label in KERNELS.items() if op in names}), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="tiny shapes on the CPU")
    args = parser.parse_args()
    cuda = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if cuda else "cpu")
    heads, length, head_dim = (32, 4096, 128) if cuda else (4, 256, 32)
    dtype = torch.bfloat16 if cuda else torch.float32
    q, k, v = (torch.randn(1, heads, length, head_dim, device=device, dtype=dtype) for _ in range(3))
    for t in (q, k, v):
        t.requires_grad_(True)
    # Three documents in the row, as SFT packs them: positions restart at 0 at each.
    cuts = [0, length // 4, length // 2 + 17, length]
    positions = torch.cat([torch.arange(b - a) for a, b in itertools.pairwise(cuts)])[None].to(device)
    dense = torch.zeros(1, 1, length, length, device=device, dtype=dtype)
    dense.masked_fill_(~document_mask(positions), float("-inf"))

    def backward_of(mask: torch.Tensor | BlockMask | None) -> Callable[[], None]:
        return lambda: attend(q, k, v, mask).sum().backward()

    failed = False
    probes: list[tuple[str, torch.Tensor | None]] = [
        ("causal (pretraining)", None),
        ("dense document mask (fallback)", dense),
    ]
    for name, mask in probes:
        backward_of(mask)()  # warm-up: cuDNN / flash pick their plans on the first call
        kernels, seconds = _kernels(backward_of(mask))
        if name.startswith("causal"):
            ok = bool(set(kernels) & {"flash", "cudnn"}) if cuda else "math" not in kernels
            rule = "flash or cudnn" if cuda else "not math"
        else:
            ok = "math" not in kernels
            rule = "not math"
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} sdpa {name}: {', '.join(kernels) or 'none'} "
              f"(threshold: {rule}) {seconds * 1e3:.1f} ms fwd+bwd")  # fmt: skip
    backend = document_attention_backend(device)
    if cuda:
        block_mask = document_block_mask(positions)
        backward_of(block_mask)()  # compiles flex_attention (tens of seconds, once)
        kernels, seconds = _kernels(backward_of(block_mask))
        ok = backend == FLEX and "math" not in kernels
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} SFT path on CUDA: {backend}, sdpa kernels {kernels or 'none'} "
              f"(threshold: flex_attention, never math) {seconds * 1e3:.1f} ms fwd+bwd")  # fmt: skip
    else:
        # Eager FlexAttention on the CPU is forward only (no autograd inputs): the check of the mask.
        qd, kd, vd = q.detach(), k.detach(), v.detach()
        flex, reference = attend(qd, kd, vd, document_block_mask(positions)), attend(qd, kd, vd, dense)
        error = (flex - reference).abs().max().item()
        ok = error < 1e-5
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} SFT path on CPU: {backend}; flex_attention == dense mask: "
              f"max |diff| {error:.2e} (threshold: < 1e-5)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shims so torchtitan 0.3.0 runs on a CPU-only torch 2.13.0 build (research: torchtitan-cpu/NOTES.md).

`apply()` must run before torchtitan is imported. Everything here is a no-op when CUDA is present,
except `_torch_compat`, which papers over an API torchtitan uses that torch 2.13.0 lacks on any device.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import types
from typing import Any

import torch
import torch.distributed as dist

_EP_KERNELS = "torchtitan.distributed.minimal_async_ep.kernels"
_EP_KERNEL_NAMES = (
    "copy_full_counts_to_peers_kernel",
    "copy_rows_to_peers_kernel",
    "expand_topk_grad_kernel",
    "fill_combine_metadata_kernel",
    "fill_dispatch_metadata_kernel",
    "invert_flat_indices_kernel",
    "reduce_topk_slots_kernel",
    "topk_scores_grad_kernel",
)


def _torch_compat() -> None:
    """torchtitan calls `torch.distributed.set_timeout` (newer torch); 2.13.0 has `_set_pg_timeout`."""
    if not hasattr(dist, "set_timeout"):
        # Not in torch 2.13's stubs: this is where it gets added.
        dist.set_timeout = dist.distributed_c10d._set_pg_timeout  # type: ignore[attr-defined]


def _stub_triton_kernels() -> None:
    """MoE expert-parallel kernels `import triton` at import time; stub that one module without triton."""
    if importlib.util.find_spec("triton") is not None:
        return
    stub = types.ModuleType(_EP_KERNELS)
    for name in _EP_KERNEL_NAMES:
        setattr(stub, name, _needs_triton)
    sys.modules[_EP_KERNELS] = stub


def _needs_triton(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("MoE expert-parallel kernels need triton, which is not installed")


class _CpuDeviceModule:
    """`torch.cpu` plus the `torch.cuda`-style calls torchtitan makes on its device module."""

    def __getattr__(self, name: str) -> Any:
        return getattr(torch.cpu, name)

    def get_device_name(self, device: object = None) -> str:
        return f"CPU ({platform.machine()})"

    def get_device_properties(self, device: object = None) -> types.SimpleNamespace:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return types.SimpleNamespace(total_memory=total, name="cpu")

    def current_device(self) -> int:
        return 0

    def device_count(self) -> int:
        return 1

    def set_device(self, device: object) -> None:
        pass

    def memory_stats(self, device: object = None) -> dict[str, int]:
        return {}

    def reset_peak_memory_stats(self, device: object = None) -> None:
        pass

    def empty_cache(self) -> None:
        pass


def _force_cpu_device() -> None:
    """torchtitan picks "cuda" when no accelerator is found; make its device globals say "cpu"."""
    import torch._utils as tu  # torchtitan must not be imported before this patch: see apply()

    saved = tu._get_available_device_type, tu._get_device_module
    tu._get_available_device_type = lambda: "cpu"

    def device_module(dt: str | None = None) -> Any:
        return _CpuDeviceModule() if dt == "cpu" else saved[1](dt)

    # A plain function in place of torch's lru_cache wrapper, only while torchtitan imports (restored below).
    tu._get_device_module = device_module  # type: ignore[assignment]
    try:
        import torchtitan.tools.utils as tt_utils  # its device globals are read while this patch holds
    finally:
        tu._get_available_device_type, tu._get_device_module = saved
    if tt_utils.device_type != "cpu":
        raise RuntimeError("torchtitan was imported before trainer.titan.shims.apply()")


def _gloo_sum_reduction() -> None:
    """Gloo rejects FSDP's PREMUL_SUM; torchtitan's divide factor is 1.0, so plain SUM is the same."""
    # after _force_cpu_device: importing torchtitan earlier would fix its device type to "cuda"
    import torchtitan.distributed.fsdp as tt_fsdp
    from torch.distributed.fsdp import FSDPModule

    original = tt_fsdp.disable_fsdp_gradient_division

    def with_sum_reduction(model: torch.nn.Module) -> None:
        original(model)
        for module in model.modules():
            if isinstance(module, FSDPModule):
                module.set_force_sum_reduction_for_comms(True)

    tt_fsdp.disable_fsdp_gradient_division = with_sum_reduction


_applied = False


def apply() -> None:
    """Install the shims (once per process)."""
    global _applied
    if _applied:
        return
    _applied = True
    _torch_compat()
    if torch.cuda.is_available():
        return
    _stub_triton_kernels()
    _force_cpu_device()
    _gloo_sum_reduction()

"""The training-speed options and the checks that keep them from costing speed (issue 7).

Each option is one config key, each measured by `scripts/bench.py` (the framework's ResNet-20
training on CIFAR-10 at batch 128, 2 AVX512 CPU cores; README, Speed):

- `module.channels_last`: NHWC weights and inputs, the layout oneDNN and cuDNN's tensor-core
  convolutions prefer: +33% here.
- `module.compile`: `torch.compile` of the network (false, true or a mode such as
  "max-autotune"): +26% training, +29% evaluation here, after 18 s of compiling with a warm
  inductor cache, 70 s cold. A run records its compile time as `time/compile_s`.
- `trainer.precision`: Lightning's key ("32-true", "bf16-mixed", "16-mixed"). Whether bf16 is fast
  depends on the machine: +83% on this CPU, which has AVX512-BF16; 15x slower than fp32 on one
  without it (1.3 against 180 GFLOP/s). `check_precision` warns when a run asks for a half type
  that the device only emulates; the default stays fp32, which is never the slower choice.
- `data.eval_batch_size`: evaluation keeps no graph (Lightning runs it under `inference_mode`),
  so it defaults to twice the training batch.
- `data.on_device`: an in-memory set held on the GPU, batches drawn there (resnet_exp/data.py).
"""

from __future__ import annotations

import functools
import time
import warnings

import torch

# Lightning's precision names for the half types; anything else runs in fp32 or fp64.
HALF_TYPES = {"bf16": torch.bfloat16, "16": torch.float16}


class SlowPrecisionWarning(UserWarning):
    """A run asked for a number format that this device emulates, slower than fp32."""


def _matmul_seconds(dtype: torch.dtype, size: int = 256, repeats: int = 3) -> float:
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # the first call picks the kernel
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return best


@functools.cache
def is_native(dtype: torch.dtype, device_type: str) -> bool:
    """Whether `device_type` computes in `dtype` at least about as fast as in fp32.

    CUDA says so itself. On a CPU the flags do not tell (oneDNN needs AVX512-BF16 or AMX, and a VM
    may hide them), so one 256 x 256 matmul is timed in both types: a few ms, once per process.
    Emulated bf16 runs it about 100x slower than fp32; native bf16 about 2x faster.
    """
    if device_type == "cuda":
        if dtype == torch.bfloat16:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        return True
    if device_type != "cpu":
        return True  # mps, xla: whatever the backend offers is its fast path
    return _matmul_seconds(dtype) <= 2 * _matmul_seconds(torch.float32)


def check_precision(precision: str | int | None, device: torch.device) -> bool:
    """Warn when `precision` (a Lightning precision name) asks for a half type that `device`
    only emulates. Returns whether the precision is fast there."""
    name = str(precision)
    dtype = next((t for prefix, t in HALF_TYPES.items() if name.startswith(prefix)), None)
    if dtype is None or is_native(dtype, device.type):
        return True
    warnings.warn(
        f"trainer.precision={name} runs slower than fp32 here: this {device.type} emulates "
        f"{str(dtype).removeprefix('torch.')} matrix products (no AVX512-BF16/AMX on a CPU). "
        f"Set trainer.precision=32-true for speed",
        SlowPrecisionWarning,
        stacklevel=2,
    )
    return False


def compile_seconds() -> float:
    """Seconds this process has spent compiling with `torch.compile` so far: Dynamo's frame
    compiles plus AOTAutograd's lazily compiled backward graphs (torch._dynamo's own counters,
    what `torch._dynamo.utils.compile_times()` reports)."""
    from torch._dynamo.utils import cumulative_time_spent_ns

    spent = cumulative_time_spent_ns.get("entire_frame_compile", 0.0)
    return (spent + cumulative_time_spent_ns.get("entire_backward_compile", 0.0)) / 1e9

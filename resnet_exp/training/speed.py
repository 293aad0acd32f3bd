"""The training-speed options and the checks that keep them from costing speed.

Each option is one config key; `make bench` (scripts/bench.py) measures each, and the figures,
with their machine and command, are in docs/speed.md.

- `module.channels_last`: NHWC weights and inputs, the layout oneDNN and cuDNN's tensor-core
  convolutions prefer. `auto` (the default): on where it was measured to pay, see
  `channels_last_pays`.
- `module.compile`: `torch.compile` of the network (false, true or a mode such as
  "max-autotune"). A run records its compile time as `time/compile_s`.
- `trainer.precision`: Lightning's key ("32-true", "bf16-mixed", "16-mixed"). Whether bf16 is fast
  depends on the machine: a CPU without AVX512-BF16 or AMX emulates it, many times slower than
  fp32. `check_precision` warns when a run asks for a half type that the device only emulates;
  the default stays fp32, which is never the slower choice.
- `data.eval_batch_size`: evaluation keeps no graph (Lightning runs it under `inference_mode`),
  so it defaults to twice the training batch.
- `data.on_device`: an in-memory set held on the GPU, batches drawn there (data/module.py).
"""

from __future__ import annotations

import functools
import time
import warnings

import torch

# Lightning's precision names for the half types; anything else runs in fp32 or fp64.
HALF_TYPES = {"bf16": torch.bfloat16, "16": torch.float16}


def channels_last_pays(device: torch.device, precision: str) -> bool:
    """Whether NHWC speeds training up here: on a CPU (oneDNN's convolutions; measured in
    docs/speed.md#channels-last), and on a GPU with a half type (cuDNN's tensor-core kernels are
    NHWC; in fp32 PyTorch's own guide expects little gain, and it was not measured here)."""
    if device.type == "cpu":
        return True
    return device.type == "cuda" and str(precision).split("-")[0] in HALF_TYPES


class ChannelsLast:
    """`module.channels_last` (true, false or "auto"): whether weights and batches are NHWC.
    "auto" is decided by `lay_out` once the device and precision are known (Lightning's setup);
    until then batches pass as they are."""

    def __init__(self, setting: bool | str = "auto") -> None:
        self.setting = setting
        self.on = False

    def lay_out(self, device: torch.device, precision: str, *modules: torch.nn.Module) -> bool:
        """Decide for this device and precision and lay `modules` out so; whether NHWC is on."""
        self.on = self.setting is True or (self.setting == "auto"
                                           and channels_last_pays(device, precision))
        if self.on:
            for module in modules:
                module.to(memory_format=torch.channels_last)
        return self.on

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the weights' layout."""
        return x.contiguous(memory_format=torch.channels_last) if self.on and x.dim() == 4 else x


class SlowPrecisionWarning(UserWarning):
    """A run asked for a number format that this device emulates, slower than fp32."""


def _matmul_seconds(dtype: torch.dtype, size: int = 256) -> float:
    """Seconds of one size x size matrix product in `dtype`, its kernel already chosen."""
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    a @ b  # the first call picks the kernel
    start = time.perf_counter()
    a @ b
    return time.perf_counter() - start


def close_to_fp32(half: list[float], fp32: list[float]) -> bool:
    """Whether the half type's products are at most twice as slow as fp32's: emulated bf16 is
    about 100x slower, native bf16 about 2x faster, so the margin is wide both ways. The fastest
    of each is compared: load only ever adds time, so the minimum is the machine's own speed.

    >>> close_to_fp32([0.9, 0.004], [0.002, 0.003]), close_to_fp32([0.3, 0.2], [0.002, 0.05])
    (True, False)
    """
    return min(half) <= 2 * min(fp32)


@functools.cache
def is_native(dtype: torch.dtype, device_type: str, rounds: int = 5) -> bool:
    """Whether `device_type` computes in `dtype` at least about as fast as in fp32.

    CUDA says so itself. On a CPU the flags do not tell (oneDNN needs AVX512-BF16 or AMX, and a VM
    may hide them), so a 256 x 256 product is timed `rounds` times in each type, taking turns, so
    that other processes slow both alike: a few ms, once per process.
    """
    if dtype in (torch.float32, torch.float64):
        return True
    if device_type == "cuda":
        if dtype == torch.bfloat16:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        return True
    if device_type != "cpu":
        return True  # mps, xla: whatever the backend offers is its fast path
    half, fp32 = [], []
    for _ in range(rounds):
        fp32.append(_matmul_seconds(torch.float32))
        half.append(_matmul_seconds(dtype))
    return close_to_fp32(half, fp32)


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

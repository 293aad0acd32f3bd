"""How many threads a run computes with on the CPU (`cpu_threads`, recorded in run.json).

torch starts one OpenMP thread per core, and OpenMP threads spin while they wait for each other.
On a shared machine a thread whose core another process holds keeps the others spinning: on
this project's 2-core VM with one busy process per core, the default run took 60 s with torch's
2 threads and 8 s with one (docs/speed.md#cpu-threads). `auto` therefore counts the cores this
process may use that are idle now (a 0.2 s sample of /proc/stat) and takes that many threads,
at least one; an OMP_NUM_THREADS the user set is kept as it is (joblib sets it for its workers).
"""

from __future__ import annotations

import os
import time

SAMPLE_S = 0.2


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """(idle, total) jiffies of each CPU in `cpus`, from /proc/stat."""
    times = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *fields = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
                # user nice system idle iowait irq softirq steal
                values = [int(v) for v in fields[:8]]
                times[int(name[3:])] = (values[3] + values[4], sum(values))
    return times


def idle_cpus(cpus: set[int], sample_s: float = SAMPLE_S) -> float | None:
    """How many of `cpus` were idle over the next `sample_s` seconds; None off Linux."""
    try:
        before = _cpu_times(cpus)
        time.sleep(sample_s)
        after = _cpu_times(cpus)
    except OSError:
        return None
    idle = 0.0
    for cpu, (idle_after, total_after) in after.items():
        idle_before, total_before = before.get(cpu, (idle_after, total_after))
        if total_after > total_before:
            idle += (idle_after - idle_before) / (total_after - total_before)
    return idle


def usable_cpus() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return os.sched_getaffinity(0)
    return set(range(os.cpu_count() or 1))


def choose(setting: int | str, idle: float | None = None) -> tuple[int, str]:
    """The intra-op thread count for `setting` (a number, or "auto") and why, e.g.
    (1, "auto: 0.1 of 2 CPUs idle")."""
    if setting != "auto":
        return int(setting), "cpu_threads"
    if os.environ.get("OMP_NUM_THREADS"):
        import torch

        return torch.get_num_threads(), "OMP_NUM_THREADS"
    cpus = usable_cpus()
    idle = idle_cpus(cpus) if idle is None else idle
    if idle is None:
        return len(cpus), f"auto: {len(cpus)} CPUs"
    return max(1, min(len(cpus), int(idle + 0.5))), f"auto: {idle:.1f} of {len(cpus)} CPUs idle"


def apply(setting: int | str) -> dict:
    """Set torch's intra-op threads for `setting`; what run.json records."""
    import torch

    threads, why = choose(setting)
    torch.set_num_threads(threads)
    return {"cpu_threads": threads, "cpu_threads_from": why}

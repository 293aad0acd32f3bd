"""CPU threads and memory layout of the default run, on a quiet machine and a busy one.

    python scripts/bench_threads.py                    # ~10 min on 2 cores
    python scripts/bench_threads.py --rounds 7 --epochs 15 --conditions quiet

Runs `python -m resnet_exp` (ResNet-20 on the embedded digits, `callbacks=lean`) as a user does,
in a fresh process per measurement, with:
  default              cpu_threads=auto, module.channels_last=auto (what a user gets)
  OMP_NUM_THREADS=1    one intra-op thread
  OMP_NUM_THREADS=<n>  one per core this process may use (torch's own default)
  channels_last=false  the default threads, NCHW
first on a quiet machine, then beside one busy process per core (scripts/stress_cpu.py's loop).
The settings take turns within each round, so that a change in the machine's load slows them
alike; each figure is the median over rounds of the run's own time/total_s (fit and the two tests,
without the interpreter's start-up). The ratios it prints are the targets of docs/speed.md:
default / best thread setting (busy: <= 1.3, quiet: <= 1.05), and channels_last on / off.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from stress_cpu import spin  # noqa: E402


def settings(cores: int) -> dict[str, tuple[dict, list[str]]]:
    """name -> (environment changes, overrides)."""
    return {"default": ({}, []),
            "OMP_NUM_THREADS=1": ({"OMP_NUM_THREADS": "1"}, []),
            f"OMP_NUM_THREADS={cores}": ({"OMP_NUM_THREADS": str(cores)}, []),
            "channels_last=false": ({}, ["module.channels_last=false"])}


def one_run(env: dict, overrides: list[str], epochs: int) -> tuple[float, int]:
    """(time/total_s, threads used) of one default run in a fresh process."""
    with tempfile.TemporaryDirectory() as tmp:
        environment = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | env
        environment["PYTHONPATH"] = str(ROOT)
        subprocess.run([sys.executable, "-m", "resnet_exp", f"trainer.max_epochs={epochs}",
                        "callbacks=lean", "extras.print_config=none", "hydra.run.dir=run",
                        *overrides], cwd=tmp, env=environment, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        metrics = json.loads((Path(tmp) / "run" / "metrics.json").read_text())
        info = json.loads((Path(tmp) / "run" / "run.json").read_text())
        return metrics["time/total_s"], info.get("cpu_threads")


def measure(cases: dict, rounds: int, epochs: int) -> dict[str, tuple[float, float, float, set]]:
    times: dict[str, list[float]] = {name: [] for name in cases}
    threads: dict[str, set] = {name: set() for name in cases}
    for _ in range(rounds):
        for name, (env, overrides) in cases.items():
            seconds, used = one_run(env, overrides, epochs)
            times[name].append(seconds)
            threads[name].add(used)
    return {name: (statistics.median(t), min(t), max(t), threads[name])
            for name, t in times.items()}


def show(title: str, results: dict, cores: int) -> None:
    print(f"\n{title}")
    for name, (median, low, high, used) in results.items():
        print(f"  {name:22s} {median:7.2f} s  (range {low:.2f}-{high:.2f})  threads {sorted(used)}")
    best = min(results[n][0] for n in ("OMP_NUM_THREADS=1", f"OMP_NUM_THREADS={cores}"))
    print(f"  default / best thread setting: {results['default'][0] / best:.2f}")
    print(f"  channels_last on / off (default threads): "
          f"{results['default'][0] / results['channels_last=false'][0]:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--conditions", default="quiet,busy", help="quiet, busy or both")
    args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; load average before: {os.getloadavg()[0]:.2f}; "
          f"{args.epochs} epochs per run, {args.rounds} rounds")
    cases = settings(cores)
    if "quiet" in args.conditions:
        show("quiet", measure(cases, args.rounds, args.epochs), cores)
    if "busy" not in args.conditions:
        return
    busy = [mp.Process(target=spin, daemon=True) for _ in range(cores)]
    for process in busy:
        process.start()
    try:
        show(f"beside {cores} busy processes (one per core)",
             measure(cases, args.rounds, args.epochs), cores)
    finally:
        for process in busy:
            process.terminate()


if __name__ == "__main__":
    main()

"""Busy processes beside a test run: `make test-under-load` runs the suite while this keeps N
processes per core spinning, as a shared CI machine does.

    python scripts/stress_cpu.py --per-core 4 -- python -m pytest -q

Starts the busy processes (niced to 0, like the work they compete with), runs the command, stops
them, and exits with the command's status. Each process is a Python loop of float arithmetic;
memory stays flat. Without a command it runs until interrupted.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import sys
import time


def spin() -> None:
    x = 0.0
    while True:
        for i in range(100_000):
            x = (x + i * 1.000001) % 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-core", type=int, default=4, help="busy processes per core")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the command to run under load (after --)")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    workers = [mp.Process(target=spin, daemon=True) for _ in range(args.per_core * (cores or 1))]
    for worker in workers:
        worker.start()
    print(f"stress: {len(workers)} busy processes on {cores} cores", file=sys.stderr)
    started = time.perf_counter()
    try:
        if not command:
            while True:
                time.sleep(3600)
        status = subprocess.call(command)
    except KeyboardInterrupt:
        status = 130
    finally:
        for worker in workers:
            worker.terminate()
    print(f"stress: the command took {time.perf_counter() - started:.0f} s under load, "
          f"exit status {status}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())

"""cpu_threads=auto: as many intra-op threads as the usable cores that are idle, at least one;
an OMP_NUM_THREADS that is set, or a number, wins. (How fast each choice is: a benchmark,
scripts/bench_threads.py, not a test.)"""

from __future__ import annotations

import pytest
import torch

from resnet_exp.training import cpu_threads


@pytest.fixture
def two_cpus(monkeypatch):
    monkeypatch.setattr(cpu_threads, "usable_cpus", lambda: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.mark.parametrize(("idle", "threads"), [(0.0, 1), (0.4, 1), (0.6, 1), (1.6, 2), (2.0, 2)])
def test_auto_takes_the_idle_cores_and_at_least_one(two_cpus, idle, threads):
    assert cpu_threads.choose("auto", idle=idle)[0] == threads


def test_a_number_or_omp_num_threads_wins(two_cpus, monkeypatch):
    assert cpu_threads.choose(3) == (3, "cpu_threads")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert cpu_threads.choose("auto", idle=2.0) == (torch.get_num_threads(), "OMP_NUM_THREADS")


def test_idle_cores_are_read_from_the_kernel():
    cpus = cpu_threads.usable_cpus()
    idle = cpu_threads.idle_cpus(cpus, sample_s=0.05)
    assert idle is None or 0.0 <= idle <= len(cpus) + 1e-6


def test_apply_sets_torch_and_says_what_it_set(two_cpus):
    before = torch.get_num_threads()
    try:
        assert cpu_threads.apply(1) == {"cpu_threads": 1, "cpu_threads_from": "cpu_threads"}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

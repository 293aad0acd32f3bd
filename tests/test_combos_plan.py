"""The combination matrix's plan (tests/combos/matrix.py), checked in every `make test` without
running it: each option of each group is in a cell or excluded with a reason, each pair of
options that may run together is in some cell, no cell holds a pair that may not, and each
known failure has its own cell."""

from __future__ import annotations

from itertools import combinations

from combos import matrix, tree


def test_every_option_of_every_group_is_in_a_cell_or_excluded_with_its_reason():
    groups = {"model": tree.options("model"), "launcher": tree.launchers(),
              **{g: tree.options(g) for g in ("data", "augmentation", "trick", "optimizer",
                                                "scheduler", "callbacks", "logger", "analysis",
                                                "trainer")}}
    cells = matrix.cells()
    ran = {("model", c.model) for c in cells} | {
        (group, value) for c in cells for group, value in c.values.items()}
    ran |= {("logger", name) for c in cells for name in c.logger.strip("[]").split(",")}
    for group, names in groups.items():
        for name in names:
            assert ((group, name) in ran) != ((group, name) in matrix.EXCLUDED), (group, name)
    # an exclusion names an option that exists, so that none outlives its option
    assert set(matrix.EXCLUDED) <= {(g, n) for g, names in groups.items() for n in names}


def test_every_pair_that_may_run_together_is_in_a_cell_and_no_cell_holds_one_that_may_not():
    params = matrix.parameters()
    covered = set().union(*(matrix.pairs(c.values) for c in matrix.cells()))
    for a, b in combinations(params, 2):
        for x in params[a]:
            for y in params[b]:
                if matrix.conflict({a: x, b: y}) is None:
                    assert ((a, x), (b, y)) in covered, ((a, x), (b, y))
    assert not [c.id for c in matrix.cells() if not c.known and matrix.conflict(c.values)]


def test_each_known_failure_has_one_cell_that_holds_it_and_nothing_the_framework_refuses():
    known = [c for c in matrix.cells() if c.known]
    assert sorted(c.known for c in known) == sorted(matrix.KNOWN)
    assert all(matrix.conflict(c.values) and not matrix.refusal(c.values) for c in known)


def test_a_cell_runs_a_member_of_its_family():
    assert all(c.model in tree.families()[c.values["model"]] for c in matrix.cells())

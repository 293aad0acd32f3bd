"""Statistics over seeds as a paper reports them, from a configuration's (mean, std, n)
(compare.Configuration.stats): the 95% confidence interval of the mean, Student's t with n - 1
degrees of freedom, and Welch's t-test between two configurations, which does not assume their
variances equal (Welch 1947, Biometrika 34:28-35; Satterthwaite's degrees of freedom).

The t distribution's quantile and tail are scipy.special's `stdtrit` and `stdtr` (scipy comes
with scikit-learn), imported on first use: scipy.special loads in a third of scipy.stats' time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Stats = tuple[float, float | None, int]  # mean, sample std (None for one value), n

LEVEL = 0.95


def ci95(stats: Stats | None) -> tuple[float, float] | None:
    """The 95% confidence interval of the mean, mean ± t(0.975, n - 1) std / sqrt(n); None
    below two values, where it is not defined.

    >>> low, high = ci95((10.0, 2.0, 4))  # t(0.975, 3) = 3.182 (any t table)
    >>> print(f"{low:.3f} {high:.3f}")
    6.818 13.182
    """
    if stats is None or stats[1] is None or stats[2] < 2:
        return None
    from scipy.special import stdtrit

    mean, std, n = stats
    half = float(stdtrit(n - 1, 0.5 + LEVEL / 2)) * std / math.sqrt(n)
    return mean - half, mean + half


@dataclass(frozen=True)
class Welch:
    t: float
    dof: float
    p: float  # two-sided


def welch(a: Stats, b: Stats) -> Welch | None:
    """Welch's t-test of mean a = mean b; None where it is not defined: no spread in either
    (std 0 in both: every seed gave the same number).

    >>> w = welch((0.91, 0.01, 3), (0.885, 0.012909944487358056, 4))
    >>> print(f"t={w.t:.3f} dof={w.dof:.2f} p={w.p:.4f}")
    t=2.887 dof=4.96 p=0.0346
    """
    from scipy.special import stdtr

    (mean_a, std_a, n_a), (mean_b, std_b, n_b) = a, b
    if n_a < 2 or n_b < 2:
        raise ValueError(f"Welch's t-test needs two values or more in each (n = {n_a}, {n_b})")
    var_a, var_b = std_a**2 / n_a, std_b**2 / n_b  # squared standard errors of the means
    if var_a + var_b == 0:
        return None
    statistic = (mean_a - mean_b) / math.sqrt(var_a + var_b)
    dof = (var_a + var_b) ** 2 / (var_a**2 / (n_a - 1) + var_b**2 / (n_b - 1))
    return Welch(statistic, dof, float(2 * stdtr(dof, -abs(statistic))))

"""Paired statistics over seeds, for the verdicts a board prints (pure Python, no scipy).

A seed fixes the data split and the order of batches, so two methods run with the same seed saw
the same data: they are compared seed by seed. :func:`paired` takes two ``{seed: value}`` maps,
pairs the seeds both have, and gives the mean difference with a two-sided 95 % Student
t-interval over the n paired differences (``mean ± t(0.975, n-1) · sd / sqrt(n)``). With fewer
than two pairs no interval exists (``low``/``high`` are None), which boards print as
"n=1, no interval", never as "± 0.00".

Words boards use, defined here once:

- **significant**: the interval excludes 0 (``low > 0`` or ``high < 0``); otherwise, and
  whenever no interval exists, the two are *not distinguishable* and a board never calls one
  better than the other.
- **tied** (:func:`tie_groups`): see there.
- **Holm** (:func:`holm`): a board compares every row with its baseline, a *family* of m contrasts;
  a row is called better or worse only when its paired t-test's p-value, adjusted by Holm's
  step-down over that family, is below :data:`ALPHA` (family-wise error ≤ 5 %). The printed
  intervals stay the per-contrast 95 % intervals, so one may exclude 0 while the adjusted verdict
  says "not distinguishable".
- **Detectable difference** (:func:`detectable_difference`): the smallest true paired difference a
  two-sided paired t-test at :data:`ALPHA` finds with 80 % power, from n and a paired sd.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Two-sided 95 % quantiles of Student's t, t(0.975, df), df = 1..30 (standard tables).
T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
        2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
        2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
Z975 = 1.959964
#: One-sided 80 % quantiles of Student's t, t(0.80, df), df = 1..30 (the power term of a sample-size formula).
T80 = (1.3764, 1.0607, 0.9785, 0.9410, 0.9195, 0.9057, 0.8960, 0.8889, 0.8834, 0.8791, 0.8755, 0.8726,
       0.8702, 0.8681, 0.8662, 0.8647, 0.8633, 0.8620, 0.8610, 0.8600, 0.8591, 0.8583, 0.8575, 0.8569,
       0.8562, 0.8557, 0.8551, 0.8546, 0.8542, 0.8538)
Z80 = 0.841621
#: The family-wise error rate of a board's verdicts (two-sided).
ALPHA = 0.05


def t975(df: int) -> float:
    """t(0.975, df): the table up to 30, then the Cornish-Fisher expansion (error < 1e-4)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be ≥ 1, got {df}")
    if df <= len(T975):
        return T975[df - 1]
    z = Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Interval:
    """A mean over n values with its 95 % t-interval (None bounds when n < 2)."""

    n: int
    mean: float | None
    low: float | None = None
    high: float | None = None
    seeds: tuple[Any, ...] = ()

    @property
    def exists(self) -> bool:
        return self.low is not None and self.high is not None

    @property
    def half_width(self) -> float | None:
        # (the bounds tested here, not through .exists, so that the checker sees them set)
        return None if self.low is None or self.high is None else (self.high - self.low) / 2

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (False without an interval)."""
        return self.low is not None and self.high is not None and (self.low > 0 or self.high < 0)

    @property
    def includes_zero(self) -> bool:
        return not self.significant


def mean_interval(values: Iterable[float], seeds: Iterable[Any] = ()) -> Interval:
    """Mean of ``values`` with its 95 % t-interval (n ≥ 2), e.g. a row's top-1 over seeds."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return Interval(0, None, seeds=tuple(seeds))
    mean = statistics.fmean(values)
    if n < 2:
        return Interval(n, mean, seeds=tuple(seeds))
    half = t975(n - 1) * statistics.stdev(values) / math.sqrt(n)
    return Interval(n, mean, mean - half, mean + half, tuple(seeds))


def paired(a: dict[Any, float], b: dict[Any, float]) -> Interval:
    """``a − b`` paired by seed: the mean difference over the seeds both have, with its 95 %
    t-interval over those n pairs (a paired t-interval; none when n < 2)."""
    common = sorted(set(a) & set(b), key=lambda s: (str(type(s)), s))
    return mean_interval([a[s] - b[s] for s in common], common)


def tie_groups(order: list[Any], values: dict[Any, dict[Any, float]], family: int = 1) -> list[int]:
    """Tie groups of rows already ranked by their mean (best first), as a shared rank per row.

    ``values[row]`` is ``{seed: top-1}``. The first row leads group 1; every later row whose
    paired t-test against that leader is not significant at ``ALPHA / family`` (the strictest
    step of Holm's procedure over a family of ``family`` contrasts, so never looser than the
    board's Holm-adjusted verdicts), or that has no interval (fewer than two common seeds:
    nothing separates it), is tied with that leader and shares its rank. The first row that is
    separated leads the next group, and so on; a group's rank is its leader's position
    (competition ranking: 1, 1, 1, 4, ...). So "tied" means "not distinguishable from the best
    row of its group", never "equal"."""
    ranks: list[int] = []
    leader = None
    for pos, row in enumerate(order, 1):
        if leader is not None:
            diff = paired(values[order[leader - 1]], values[row])
            p = p_value(diff)
            if p is None or not (diff.mean or 0) > 0 or p * max(family, 1) >= ALPHA:
                ranks.append(ranks[leader - 1])
                continue
        leader = pos
        ranks.append(pos)
    return ranks

def t80(df: int) -> float:
    """t(0.80, df): the table up to 30, then the normal quantile with its first correction."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be ≥ 1, got {df}")
    return T80[df - 1] if df <= len(T80) else Z80 + (Z80**3 + Z80) / (4 * df)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_two_sided_p(t: float, df: int) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom."""
    return _betainc(df / 2, 0.5, df / (df + t * t))


def p_value(diff: Interval, values: Iterable[float] | None = None) -> float | None:
    """The two-sided paired t-test's p-value of an interval from :func:`paired` (None without one).
    Recovered from the interval: sd/√n = half-width / t(0.975, n−1)."""
    if diff.mean is None or diff.half_width is None:
        return None
    se = diff.half_width / t975(diff.n - 1)
    if se == 0:
        return 1.0 if diff.mean == 0 else 0.0
    return t_two_sided_p(diff.mean / se, diff.n - 1)


def holm(pvalues: dict[Any, float | None]) -> dict[Any, float | None]:
    """Holm's step-down adjustment over a family: sort the m p-values ascending, multiply the k-th
    (k = 0..m−1) by m − k, keep them non-decreasing (running maximum) and cap at 1. A contrast is
    significant at family-wise level α when its adjusted p < α. None (no test) stays None and is
    not counted in m."""
    tested = sorted(((p, k) for k, p in pvalues.items() if p is not None), key=lambda pk: (pk[0], str(pk[1])))
    m, running = len(tested), 0.0
    out: dict[Any, float | None] = {k: None for k in pvalues}
    for i, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def paired_sd(diff: Interval) -> float | None:
    """The sample sd of the paired differences behind an interval from :func:`paired` (None without one)."""
    if diff.half_width is None:
        return None
    return diff.half_width / t975(diff.n - 1) * math.sqrt(diff.n)


def detectable_difference(n: int, sd: float | None, alpha: float = ALPHA) -> float | None:
    """The smallest true paired difference a two-sided paired t-test at ``alpha`` = 0.05 detects
    with 80 % power from ``n`` pairs of sample sd ``sd``: (t(0.975, n−1) + t(0.80, n−1)) · sd / √n
    (the usual t-approximation of the noncentral t; None when n < 2 or no sd)."""
    if alpha != ALPHA:
        raise ValueError(f"only two-sided alpha = {ALPHA} is tabulated, got {alpha}")
    if sd is None or n < 2:
        return None
    return (t975(n - 1) + t80(n - 1)) * sd / math.sqrt(n)

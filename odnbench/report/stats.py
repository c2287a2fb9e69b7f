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


def tie_groups(order: list[Any], values: dict[Any, dict[Any, float]]) -> list[int]:
    """Tie groups of rows already ranked by their mean (best first), as a shared rank per row.

    ``values[row]`` is ``{seed: top-1}``. The first row leads group 1; every later row whose
    paired 95 % interval of (leader − row) includes 0, or that has no interval (fewer than two
    common seeds: nothing separates it), is tied with that leader and shares its rank. The first
    row that is separated (its interval lies wholly above 0) leads the next group, and so on; a
    group's rank is its leader's position (competition ranking: 1, 1, 1, 4, ...). So "tied" means
    "not distinguishable from the best row of its group", never "equal"."""
    ranks: list[int] = []
    leader = None
    for pos, row in enumerate(order, 1):
        if leader is not None and paired(values[order[leader - 1]], values[row]).includes_zero:
            ranks.append(ranks[leader - 1])
            continue
        leader = pos
        ranks.append(pos)
    return ranks

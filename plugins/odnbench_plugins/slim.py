"""The ``slim`` control: is depth the right axis at all? The whole backbone (every block) with
every stage's width scaled by one multiplier, trained from scratch under the cell's recipe.

The multiplier is set by hand (``width``) or chosen so that the model equals another method's on
one axis (``match=odn:size`` / ``odn:macs`` / ``odn:params``, or ``match=AXIS`` with ``target``),
within ``tolerance`` below the target. Stage widths are whole channels: ``round(w × m)``, at least
1. When plain rounding cannot land in the window, each stage may round ``w × m`` down or up
instead; the widths used are stored. A target below what the narrowest network (one channel per
stage) measures, or one no rounding lands near, fails the cell with a "cannot reach" error saying
why, as a pruning target does.
"""

from __future__ import annotations

import itertools
import math

from odnbench import Method, MethodOutput, Param, hookimpl
from odnbench.errors import OdnbenchError
from odnbench_plugins import match_rule

MAX_MULTIPLIER = 8.0


def scaled(base, m: float) -> tuple[int, ...]:
    """Stage widths ``w × m`` rounded half up to whole channels, at least one."""
    return tuple(max(1, int(w * m + 0.5)) for w in base)


def fit_widths(build, base, input_shape, axis: str, target: float, tolerance: float):
    """The largest stage widths scaled from ``base`` whose ``axis`` measure (as the harness measures
    it) is at most ``target`` and at least ``target × (1 - tolerance)``.

    The measure grows with every stage width, so a bisection over the multipliers where some stage's
    rounded width changes finds the largest uniformly scaled widths under the target; if those land
    below the window, each stage may round ``w × m`` down or up instead. Returns (multiplier, widths,
    value, models sized); raises OdnbenchError with the nearest values when nothing lands."""
    measure = match_rule.measure_fn(axis, input_shape)
    unit = match_rule.AXIS_UNITS[axis]
    cache: dict[tuple[int, ...], float] = {}

    def value(widths: tuple[int, ...]) -> float:
        if widths not in cache:
            cache[widths] = float(measure(build(width=widths)))
        return cache[widths]

    narrowest = (1,) * len(base)
    if value(narrowest) > target:
        raise OdnbenchError(
            f"slim cannot reach {target:,.6g} {unit}: the narrowest network (stage widths "
            f"{','.join(map(str, narrowest))}, every block kept) already measures {value(narrowest):,.6g}; "
            "a whole-depth network cannot be that small")
    cap = 1.0  # the multiplier to search below: widen only when the target is above the base widths
    while cap < MAX_MULTIPLIER and value(scaled(base, cap)) <= target:
        cap *= 2
    # Every multiplier at which some stage's rounded width steps up, up to the cap.
    steps = sorted({(k - 0.5) / w + 1e-9 for w in base for k in range(2, int(w * cap + 0.5) + 1)})
    lo, hi = -1, len(steps)  # value(scaled(steps[lo])) <= target < value(scaled(steps[hi]))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if value(scaled(base, steps[mid])) <= target:
            lo = mid
        else:
            hi = mid
    m = steps[lo] if lo >= 0 else 0.0
    best = scaled(base, m)
    low = target * (1.0 - tolerance)
    if value(best) < low:
        # Whole channels step coarsely: let each stage round w x m down or up instead, at this
        # multiplier and at the next one (the first whose plain rounding overshoots).
        combos = set()
        for mult in {m, steps[hi] if hi < len(steps) else m}:
            combos |= set(itertools.product(*[{max(1, math.floor(w * mult)), max(1, math.ceil(w * mult))}
                                              for w in base]))
        fits = [c for c in sorted(combos) if value(c) <= target]
        best = max(fits, key=lambda c: value(c))
    if value(best) < low:
        above = min((v for v in cache.values() if v > target), default=None)
        raise OdnbenchError(
            f"slim cannot land within {tolerance:.0%} below {target:,.6g} {unit}: the closest stage widths under "
            f"it, {','.join(map(str, best))}, measure {value(best):,.6g}"
            + (f", and the next wider measure {above:,.6g}" if above is not None else "")
            + "; whole channels step too coarsely here (raise slim.tolerance, or match another axis)")
    return m, best, value(best), len(cache)


class Slim(Method):
    name = "slim"
    description = "Every block kept, every stage's width x one multiplier, trained from scratch (width baseline)"
    params = (
        Param("width", float, 0.5, gt=0, le=MAX_MULTIPLIER, sweep=True,
              help="Multiplier of every stage's width when no match is set (whole channels, at least 1 per stage)."),
        *match_rule.match_params("slim", "Choose the multiplier that equals"),
        Param("tolerance", float, match_rule.TOLERANCE, gt=0, lt=1,
              help="A match lands within this fraction below the target."),
    )

    def requires(self, params):
        # Ranges are declared on the Params; a bad combination fails when the grid is planned.
        return match_rule.match_requirements(match_rule.parse_match(params, "slim"))

    def run(self, ctx):
        import time

        import torch

        spec = match_rule.parse_match(ctx.params, "slim")
        base = tuple(ctx.stage_widths)
        info: dict = {"full_widths": list(base)}
        started = time.perf_counter()
        if spec is None:
            m, widths = ctx.params["width"], scaled(base, ctx.params["width"])
        else:
            target = match_rule.target_value(ctx, spec)
            m, widths, achieved, sized = fit_widths(ctx.build_backbone, base, ctx.input_shape, spec.axis, target,
                                                    ctx.params["tolerance"])
            info.update(match_rule.match_info(spec, target, achieved, ctx.params["tolerance"]), models_sized=sized)
            ctx.cost.add("width search", train_seconds=time.perf_counter() - started)
        torch.manual_seed(ctx.seed)  # the same initial weights whatever the search built before
        model = ctx.build_backbone(width=widths).to(ctx.device)
        model.meta["slim"] = {"multiplier": m, "widths": list(widths)}
        fit = ctx.trainer.fit(model, label="slim")
        info.update(multiplier=round(m, 6), widths=list(widths),
                    stage_ratios=[round(w / b, 4) for w, b in zip(widths, base)], **fit.summary())
        # With a match the search chose the multiplier: width did not shape the model.
        return MethodOutput(model, info, unused_params=None if spec is None else ["width"])


@hookimpl
def register_methods(register):
    register(Slim())

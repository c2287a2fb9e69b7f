"""Matching another method's model on one axis: the rule shared by ``prune``, ``slim`` and
``blockdrop``. ``match=odn:size`` (or ``odn:macs``, ``odn:params``) takes the target from the
``odn`` result of the same cell, which is then required and run first; ``match=size`` with
``target=VALUE`` states it by hand. Every axis is measured exactly as the harness measures the
exported model. No torch at import: this module is imported when plugins register.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from odnbench import Param, Requirement
from odnbench.errors import OdnbenchError

AXES = ("size", "macs", "params")
METRIC_KEYS = {"size": "size_mb", "macs": "macs", "params": "params"}  # the harness's metric per axis
AXIS_UNITS = {"size": "MB (saved state_dict / 1e6)", "macs": "MACs", "params": "parameters"}
TOLERANCE = 0.05  # a match lands at most this fraction below its target


@dataclass(frozen=True)
class MatchSpec:
    axis: str
    target: float | None = None  # explicit target; None when it comes from ``source``
    source: str | None = None  # the method whose result sets the target

    @property
    def label(self) -> str:
        return f"{self.source}:{self.axis}" if self.source else self.axis


def match_params(owner: str, what: str) -> tuple[Param, Param]:
    """The ``match`` and ``target`` parameters, declared alike by every method that matches."""
    return (
        Param("match", str, None, nullable=True, sweep=True,
              help=f"{what} another method's model on one axis: METHOD:AXIS (odn:size, odn:macs, odn:params), "
                   f"or AXIS (size, macs, params) with {owner}.target."),
        Param("target", float, None, nullable=True, gt=0,
              help="Explicit target for match=AXIS: MB for size (saved state_dict / 1e6), MACs, or parameters."),
    )


def parse_match(params, owner: str) -> MatchSpec | None:
    """``match`` / ``target`` as one spec (None when no match is asked), with one-line errors."""
    match, target = params.get("match"), params.get("target")
    if match is None:
        if target is not None:
            raise OdnbenchError(f"{owner}.target needs {owner}.match=size|macs|params to say what it is")
        return None
    if ":" in match:
        source, axis = (s.strip() for s in match.split(":", 1))
        if not source or axis not in AXES:
            raise OdnbenchError(f"{owner}.match={match!r}: use METHOD:AXIS with AXIS one of {', '.join(AXES)} "
                                f"(e.g. odn:size), or AXIS with {owner}.target=VALUE")
        if target is not None:
            raise OdnbenchError(f"{owner}.match={match} takes its target from {source}; drop {owner}.target")
        if source == owner:
            raise OdnbenchError(f"{owner}.match cannot name {owner} itself")
        return MatchSpec(axis, source=source)
    axis = match.strip()
    if axis not in AXES:
        raise OdnbenchError(f"{owner}.match={match!r}: use METHOD:AXIS (e.g. odn:size, odn:macs) or one of "
                            f"{', '.join(AXES)} with {owner}.target=VALUE")
    if target is None:  # its range (> 0) is declared on the Param
        raise OdnbenchError(f"{owner}.match={axis} needs {owner}.target (a positive number, in "
                            f"{'MB' if axis == 'size' else axis})")
    return MatchSpec(axis, target=float(target))


def match_requirements(spec: MatchSpec | None, already: tuple[str, ...] = ()) -> list[Requirement]:
    """The result a match takes its target from, unless it is among ``already`` required."""
    if spec is None or spec.source is None or spec.source in already:
        return []
    return [Requirement(spec.source)]


def target_value(ctx, spec: MatchSpec) -> float:
    """The number to match: the explicit target, or the source result's metric on that axis."""
    if spec.source is None:
        return float(spec.target)
    key = METRIC_KEYS[spec.axis]
    value = ctx.dependency(spec.source).metrics.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise OdnbenchError(f"{ctx.method}.match={spec.label}: the {spec.source} result has no metrics.{key}")
    return float(value)


def measure_fn(axis: str, input_shape: tuple[int, ...]) -> Callable:
    """How a target axis is measured: exactly as the harness measures the exported model."""
    from odnbench import metrics

    if axis == "size":
        return metrics.saved_size_mb
    if axis == "macs":
        return lambda m: metrics.count_macs(m, input_shape)
    if axis == "params":
        return metrics.count_params
    raise OdnbenchError(f"unknown match axis {axis!r}; choose one of: {', '.join(AXES)}")


def match_info(spec: MatchSpec, target: float, achieved: float, tolerance: float = TOLERANCE) -> dict:
    """What a matched result records: target, achieved, relative error and whether it is in the window."""
    return {"match": spec.label, "axis": spec.axis, "source": spec.source, "target": target, "achieved": achieved,
            "relative_error": round((achieved - target) / target, 6), "tolerance": tolerance,
            "within_tolerance": target * (1.0 - tolerance) <= achieved <= target}

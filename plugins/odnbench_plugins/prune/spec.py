"""How far ``prune`` prunes: the criteria, the match axes and the target specification read
from its parameters (plain data, no torch), shared by the registration module
(:mod:`odnbench_plugins.prune`) and the implementation (:mod:`odnbench_plugins.prune.core`)."""

from __future__ import annotations

from dataclasses import dataclass

from odnbench.errors import OdnbenchError

CRITERIA = ("l1", "l2", "taylor", "lamp", "bn-scale", "fpgm", "random")
AXES = ("size", "macs", "params")


@dataclass(frozen=True)
class TargetSpec:
    mode: str  # "ratio" or "match"
    ratio: float | None = None
    axis: str | None = None
    target: float | None = None  # explicit target; None when it comes from ``source``
    source: str | None = None  # the method whose result sets the target


def parse_target(params) -> TargetSpec:
    """Read ratio / match / target into one spec, with one-line errors for bad combinations."""
    match, target, ratio = params.get("match"), params.get("target"), params.get("ratio")
    if match is None:
        if target is not None:
            raise OdnbenchError("prune.target needs prune.match=size|macs|params to say what it is")
        return TargetSpec("ratio", ratio=ratio)  # its range (0, 1) is declared on the Param
    if ":" in match:
        source, axis = (s.strip() for s in match.split(":", 1))
        if not source or axis not in AXES:
            raise OdnbenchError(f"prune.match={match!r}: use METHOD:AXIS with AXIS one of {', '.join(AXES)} "
                                "(e.g. odn:size), or AXIS with prune.target=VALUE")
        if target is not None:
            raise OdnbenchError(f"prune.match={match} takes its target from {source}; drop prune.target")
        if source == "prune":
            raise OdnbenchError("prune.match cannot name prune itself")
        return TargetSpec("match", axis=axis, source=source)
    axis = match.strip()
    if axis not in AXES:
        raise OdnbenchError(f"prune.match={match!r}: use METHOD:AXIS (e.g. odn:size, odn:macs) or one of "
                            f"{', '.join(AXES)} with prune.target=VALUE")
    if target is None:
        raise OdnbenchError(f"prune.match={axis} needs prune.target (a positive number, in {'MB' if axis == 'size' else axis})")
    return TargetSpec("match", axis=axis, target=float(target))

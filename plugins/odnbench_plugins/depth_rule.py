"""The depth rule shared by the ``scratch``, ``truncate`` and ``kd`` controls (and ``blockdrop``'s
block count): k is set by hand (``--set METHOD.depth=K``) or taken from the matching ``odn``
result (the depth it states). Also which full-depth model ``truncate`` and ``blockdrop`` start from
(``full_survival``). No torch here: it is imported at registration time."""

from __future__ import annotations

from odnbench import Param, Requirement
from odnbench.errors import OdnbenchError

DEPTH_PARAM = Param(
    "depth", int, None, nullable=True, ge=1, sweep=True,
    help="Keep the stem and residual blocks 1..depth. none: the optimal depth of the matching odn result.",
)


FULL_SURVIVAL_PARAM = Param(
    "full_survival", float, None, nullable=True, gt=0, le=1, omit_default=True, sweep=True,
    help="Start from the full model trained with stochastic depth at this last-block survival (full.survival); "
         "none: the grid's full model.",
)


def full_requirement(params) -> Requirement:
    """The full-depth model a control starts from: the grid's, or the stochastic-depth one ``full_survival`` names."""
    survival = params.get("full_survival")
    return Requirement("full") if survival is None else Requirement("full", {"survival": survival})


def depth_requirements(params, name: str = "depth") -> list[Requirement]:
    """An explicit depth needs nothing; otherwise the odn result of the same cell decides it."""
    return [] if params.get(name) is not None else [Requirement("odn")]


def chosen_depth(ctx, full_depth: int, name: str = "depth") -> tuple[int, str]:
    """(k, where k came from), checked against the backbone's number of blocks. ``name``: the
    parameter that sets k by hand."""
    k = ctx.params.get(name)
    source = "set"
    if k is None:
        k = ctx.dependency("odn").facts.depth
        if not isinstance(k, int) or isinstance(k, bool):
            raise OdnbenchError(
                f"{ctx.method}: the odn result states no depth (got {k!r}); "
                f"set the depth by hand with --set {ctx.method}.{name}=K"
            )
        source = "odn"
    if not 1 <= k <= full_depth:
        raise OdnbenchError(
            f"{ctx.method}.{name}={k} is out of range: backbone {ctx.config.get('backbone', '?')} "
            f"has blocks 1..{full_depth}"
        )
    return k, source

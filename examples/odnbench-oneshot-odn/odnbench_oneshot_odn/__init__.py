"""``oneshot-odn``: Optimally Deep Networks without the depth-by-depth search.

ODN (Tareen & Tareen, arXiv 2510.10764) warms up a private head after every residual block by
summing the heads' losses, then trains depth 1, 2, ... one at a time until one reaches the
target. One-shot ODN keeps only the first part: it trains all depths jointly (summed
cross-entropy of every head) for the recipe's epochs, then reads every head's validation
accuracy once and exports the shallowest depth that meets the threshold, as
``DepthNet.truncated(k, head=heads[k-1])``. One training run instead of a search.

Threshold, as in odn: ``target`` set -> ``target - tolerance``; ``target`` none (default) ->
validation top-1 of the ``full`` result for the same cell minus ``relative_tolerance``
(``full`` runs first, and its cost counts toward this method's cost to obtain).

This module only registers the method (no torch at import, so the CLI starts fast); the
training lives in :mod:`odnbench_oneshot_odn.train`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odnbench import Method, Param, Requirement, hookimpl

__version__ = "0.1.0"


class OneShotODN(Method):
    name = "oneshot-odn"
    description = ("One-shot ODN: train every depth at once (a head per block, summed loss), keep the "
                   "shallowest head that meets the target")
    params = (
        # Ranges (gt/ge/le) are checked by odnbench at plan time, with a one-line error naming them.
        Param("target", float, None, "Fixed target validation top-1 %; threshold = target - tolerance. "
              "none: relative to the full-depth result", nullable=True, gt=0, le=100),
        Param("tolerance", float, 0.5, "Fixed target: points below the target that still pass (ODN: 0.5)", ge=0),
        Param("relative_tolerance", float, 1.75, "Relative target: points below full depth's validation top-1",
              ge=0),
        Param("epochs", int, None, "Joint training epochs (none: the recipe's epochs and patience)", nullable=True,
              ge=1),
    )

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        return [Requirement("full")] if params["target"] is None else []

    def run(self, ctx):
        from odnbench_oneshot_odn.train import run_oneshot

        return run_oneshot(ctx)


@hookimpl
def register_methods(register):
    register(OneShotODN())

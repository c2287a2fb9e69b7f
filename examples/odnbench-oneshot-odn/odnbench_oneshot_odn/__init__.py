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

from typing import Any, Mapping

from odnbench import Method, OdnbenchError, Param, Requirement, hookimpl

__version__ = "0.1.0"


class OneShotODN(Method):
    name = "oneshot-odn"
    description = ("One-shot ODN: train every depth at once (a head per block, summed loss), keep the "
                   "shallowest head that meets the target")
    params = (
        Param("target", float, None, "Fixed target validation top-1 %; threshold = target - tolerance. "
              "none: relative to the full-depth result", nullable=True),
        Param("tolerance", float, 0.5, "Fixed target: points below the target that still pass (ODN: 0.5)"),
        Param("relative_tolerance", float, 1.75, "Relative target: points below full depth's validation top-1"),
        Param("epochs", int, None, "Joint training epochs (none: the recipe's epochs and patience)", nullable=True),
    )

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        check_params(params)  # at plan time: a bad value fails before anything trains
        return [Requirement("full")] if params["target"] is None else []

    def run(self, ctx):
        from odnbench_oneshot_odn.train import run_oneshot

        check_params(ctx.params)
        return run_oneshot(ctx)


def check_params(p: Mapping[str, Any]) -> None:
    if p["target"] is not None and not 0 < p["target"] <= 100:
        raise OdnbenchError(f"oneshot-odn.target={p['target']} must be a top-1 % in (0, 100], or none")
    if p["tolerance"] < 0 or p["relative_tolerance"] < 0:
        raise OdnbenchError("oneshot-odn.tolerance and oneshot-odn.relative_tolerance must be >= 0")
    if p["epochs"] is not None and p["epochs"] < 1:
        raise OdnbenchError(f"oneshot-odn.epochs={p['epochs']} must be >= 1, or none for the recipe's")


@hookimpl
def register_methods(register):
    register(OneShotODN())

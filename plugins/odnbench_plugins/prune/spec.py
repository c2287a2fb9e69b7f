"""How ``prune`` prunes: the criteria, the pruners, and the target specification read from its
parameters (plain data, no torch), shared by the registration module
(:mod:`odnbench_plugins.prune`) and the implementation (:mod:`odnbench_plugins.prune.core`)."""

from __future__ import annotations

from dataclasses import dataclass

from odnbench.errors import OdnbenchError
from odnbench_plugins import match_rule

CRITERIA = ("l1", "l2", "taylor", "lamp", "bn-scale", "fpgm", "random")
AXES = match_rule.AXES
# torch-pruning's pruners: "base" ranks channels by `criterion` and prunes at once; the others first
# train the full model with their sparsity regulariser, then prune by the importance they sparsified.
PRUNERS = ("base", "group-norm", "bn-scale", "growing-reg")
PRUNER_CRITERION = {"group-norm": "l2", "growing-reg": "l2", "bn-scale": "bn-scale"}
SPARSE_ONLY = ("sparse_epochs", "reg", "delta_reg")


@dataclass(frozen=True)
class TargetSpec:
    mode: str  # "ratio" or "match"
    ratio: float | None = None
    axis: str | None = None
    target: float | None = None  # explicit target; None when it comes from ``source``
    source: str | None = None  # the method whose result sets the target


def parse_target(params) -> TargetSpec:
    """Read ratio / match / target into one spec, with one-line errors for bad combinations."""
    spec = match_rule.parse_match(params, "prune")
    if spec is None:
        return TargetSpec("ratio", ratio=params.get("ratio"))  # its range (0, 1) is declared on the Param
    return TargetSpec("match", axis=spec.axis, target=spec.target, source=spec.source)


def check_pruner(params) -> None:
    """The sparse-training and iterative options, checked together (one-line errors; each one's
    range is declared on its Param)."""
    pruner = params.get("pruner", "base")
    if pruner == "base":
        stray = [n for n in SPARSE_ONLY if params.get(n) is not None]
        if stray:
            raise OdnbenchError(f"prune.{stray[0]} applies to the sparse-training pruners "
                                f"({', '.join(PRUNERS[1:])}); set prune.pruner to one of them")
    else:
        own = PRUNER_CRITERION[pruner]
        if params["criterion"] not in ("l2", own):
            raise OdnbenchError(f"prune.criterion={params['criterion']} does not apply to prune.pruner={pruner}, "
                                f"which ranks channels by the importance it sparsified ({own}); leave criterion unset")
        if pruner != "growing-reg" and params.get("delta_reg") is not None:
            raise OdnbenchError(f"prune.delta_reg applies to prune.pruner=growing-reg only, not {pruner}")
    between = params.get("finetune_between", 0)
    if between and params["steps"] < 2:
        raise OdnbenchError(f"prune.finetune_between={between} needs prune.steps of at least 2 "
                            "(it fine-tunes between pruning steps)")

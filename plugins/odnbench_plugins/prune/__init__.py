"""The ``prune`` method: structured channel pruning of the trained full-depth model with
torch-pruning, then fine-tuning under the recipe.

How far to prune is either a channel ``ratio`` or a target on one axis:

- ``--set prune.match=odn:size`` / ``odn:macs`` / ``odn:params``: the saved size (MB), MACs or
  parameter count of another method's model on the same dataset/backbone/seed/preset (that
  result is then required and run first). Size-matching and MACs-matching give very different
  models against a depth cut, which keeps the expensive full-resolution early blocks.
- ``--set prune.match=size --set prune.target=0.5``: an explicit target (MB, MACs or params).

The implementation (torch, torch-pruning) lives in :mod:`odnbench_plugins.prune.core` and the
target specification in :mod:`odnbench_plugins.prune.spec`; this module only declares the
method, so registering it stays cheap.
"""

from __future__ import annotations

from odnbench import Method, Param, Requirement, hookimpl
from odnbench.errors import OdnbenchError
from odnbench_plugins.prune.spec import CRITERIA, parse_target


class Prune(Method):
    name = "prune"
    description = "torch-pruning structured channel pruning of the trained full-depth model, then fine-tuning"
    params = (
        Param("criterion", str, "l2", choices=CRITERIA,
              help="Channel importance: group L1/L2 magnitude, first-order Taylor, LAMP, BN scale, FPGM, or random."),
        Param("scope", str, "local", choices=("local", "global"),
              help="Rank channels within each layer group (local) or across the whole network (global)."),
        Param("ratio", float, 0.5, help="Channel share to remove when no match is set (params fall ~1-(1-r)^2)."),
        Param("match", str, None, nullable=True,
              help="Prune to another method's model on one axis: METHOD:AXIS (odn:size, odn:macs, odn:params), "
                   "or AXIS (size, macs, params) with prune.target."),
        Param("target", float, None, nullable=True,
              help="Explicit target for match=AXIS: MB for size (saved state_dict / 1e6), MACs, or parameters."),
        Param("tolerance", float, 0.05, help="Matching lands within this fraction below the target."),
        Param("steps", int, 5, help="Iterative pruning steps for a ratio (channels re-ranked before each)."),
        Param("max_step", float, 0.1, help="Largest share of the remaining channels removed per matching step."),
        Param("round_to", int, None, nullable=True, help="Keep channel counts multiples of this (none: any)."),
        Param("grad_batches", int, 4, help="Training batches whose gradients feed the Taylor criterion."),
        Param("finetune_epochs", int, None, nullable=True, help="Fine-tuning epochs (none: the recipe's epochs)."),
        Param("finetune_lr", float, None, nullable=True, help="Fine-tuning learning rate (none: the recipe's)."),
    )

    def requires(self, params):
        spec = parse_target(params)  # a bad combination fails when the grid is planned, not mid-run
        for name in ("steps", "grad_batches"):
            if params[name] < 1:
                raise OdnbenchError(f"prune.{name}={params[name]}: must be at least 1")
        if params["round_to"] is not None and params["round_to"] < 1:
            raise OdnbenchError(f"prune.round_to={params['round_to']}: must be at least 1 (or none)")
        if params["finetune_epochs"] is not None and params["finetune_epochs"] < 1:
            raise OdnbenchError(f"prune.finetune_epochs={params['finetune_epochs']}: must be at least 1 "
                                "(a pruned model is always fine-tuned; none takes the recipe's epochs)")
        reqs = [Requirement("full")]
        if spec.source is not None and spec.source != "full":
            reqs.append(Requirement(spec.source))
        return reqs

    def run(self, ctx):
        from odnbench_plugins.prune import core

        return core.run(ctx, parse_target(ctx.params))


@hookimpl
def register_methods(register):
    register(Prune())

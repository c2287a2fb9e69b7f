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
from odnbench_plugins.prune.spec import CRITERIA, parse_target


class Prune(Method):
    name = "prune"
    description = "torch-pruning structured channel pruning of the trained full-depth model, then fine-tuning"
    params = (
        Param("criterion", str, "l2", choices=CRITERIA,
              help="Channel importance: group L1/L2 magnitude, first-order Taylor, LAMP, BN scale, FPGM, or random."),
        Param("scope", str, "local", choices=("local", "global"),
              help="Rank channels within each layer group (local) or across the whole network (global)."),
        Param("ratio", float, 0.5, help="Channel share to remove when no match is set (params fall ~1-(1-r)^2).",
              gt=0, lt=1),
        Param("match", str, None, nullable=True,
              help="Prune to another method's model on one axis: METHOD:AXIS (odn:size, odn:macs, odn:params), "
                   "or AXIS (size, macs, params) with prune.target."),
        Param("target", float, None, nullable=True,
              help="Explicit target for match=AXIS: MB for size (saved state_dict / 1e6), MACs, or parameters.",
              gt=0),
        Param("tolerance", float, 0.05, help="Matching lands within this fraction below the target.", gt=0, lt=1),
        Param("steps", int, 5, help="Iterative pruning steps for a ratio (channels re-ranked before each).", ge=1),
        Param("max_step", float, 0.1, help="Largest share of the remaining channels removed per matching step.",
              gt=0, lt=1),
        Param("round_to", int, None, nullable=True, help="Keep channel counts multiples of this (none: any).", ge=1),
        Param("grad_batches", int, 4, help="Training batches whose gradients feed the Taylor criterion.", ge=1),
        Param("finetune_epochs", int, None, nullable=True, ge=1,
              help="Fine-tuning epochs (none: the recipe's epochs); a pruned model is always fine-tuned."),
        Param("finetune_lr", float, None, nullable=True, gt=0, help="Fine-tuning learning rate (none: the recipe's)."),
    )

    def requires(self, params):
        # Ranges are declared on the Params; a bad combination fails when the grid is planned, not mid-run.
        spec = parse_target(params)
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

"""The ``prune`` method: structured channel pruning of the trained full-depth model with
torch-pruning, then fine-tuning under the recipe.

How far to prune is either a channel ``ratio`` or a target on one axis:

- ``--set prune.match=odn:size`` / ``odn:macs`` / ``odn:params``: the saved size (MB), MACs or
  parameter count of another method's model on the same dataset/backbone/seed/preset (that
  result is then required and run first). Size-matching and MACs-matching give very different
  models against a depth cut, which keeps the expensive full-resolution early blocks.
- ``--set prune.match=size --set prune.target=0.5``: an explicit target (MB, MACs or params).

``pruner`` picks torch-pruning's pruner: ``base`` (one-shot ranking by ``criterion``, the default) or
a sparse-training pruner (``group-norm``, ``bn-scale``, ``growing-reg``) that first trains the full
model with its regulariser. ``finetune_between`` makes pruning iterative, with fine-tuning between
``steps`` steps. Both are left out of the cell key at their defaults, so the one-shot cells stored
before they existed keep their keys.

The implementation (torch, torch-pruning) lives in :mod:`odnbench_plugins.prune.core` and the
target specification in :mod:`odnbench_plugins.prune.spec`; this module only declares the
method, so registering it stays cheap.
"""

from __future__ import annotations

from odnbench import Method, Param, Requirement, hookimpl
from odnbench_plugins import match_rule
from odnbench_plugins.prune.spec import CRITERIA, PRUNERS, check_pruner, parse_target


class Prune(Method):
    name = "prune"
    description = "torch-pruning structured channel pruning of the trained full-depth model, then fine-tuning"
    env_packages = ("torch-pruning",)  # its results depend on torch-pruning's version: stored in env
    params = (
        Param("criterion", str, "l2", choices=CRITERIA,
              help="Channel importance: group L1/L2 magnitude, first-order Taylor, LAMP, BN scale, FPGM, or random."),
        Param("scope", str, "local", choices=("local", "global"),
              help="Rank channels within each layer group (local) or across the whole network (global)."),
        Param("ratio", float, 0.5, help="Channel share to remove when no match is set (params fall ~1-(1-r)^2).",
              gt=0, lt=1, sweep=True),
        *match_rule.match_params("prune", "Prune to"),
        Param("tolerance", float, 0.05, help="Matching lands within this fraction below the target.", gt=0, lt=1),
        Param("steps", int, 5, ge=1, le=1_000,
              help="Iterative pruning steps for a ratio (channels re-ranked before each); with finetune_between, "
                   "also the number of stages on the way to a match target."),
        Param("max_step", float, 0.1, help="Largest share of the remaining channels removed per matching step.",
              gt=0, lt=1),
        Param("round_to", int, None, nullable=True, help="Keep channel counts multiples of this (none: any).", ge=1, le=1_024),
        Param("grad_batches", int, 4, help="Training batches whose gradients feed the Taylor criterion.", ge=1, le=10_000),
        Param("finetune_epochs", int, None, nullable=True, ge=1,
              help="Fine-tuning epochs (none: the recipe's epochs); a pruned model is always fine-tuned."),
        Param("finetune_lr", float, None, nullable=True, gt=0, le=10, help="Fine-tuning learning rate (none: the recipe's)."),
        # Added after results were stored: left out of the cell key at their defaults (omit_default).
        Param("pruner", str, "base", choices=PRUNERS, omit_default=True,
              help="base: rank channels by criterion and prune (one-shot); group-norm: DepGraph's group-norm sparse "
                   "learning (GroupNormPruner); bn-scale: network slimming, L1 on BatchNorm scales (BNScalePruner); "
                   "growing-reg: growing regularisation (GrowingRegPruner). The last three first train the full model "
                   "with their regulariser (weight decay 0) for sparse_epochs, then prune by that importance."),
        Param("sparse_epochs", int, None, nullable=True, omit_default=True, ge=1,
              help="Sparse-training epochs before pruning (none: the recipe's epochs; best validation epoch kept)."),
        Param("reg", float, None, nullable=True, omit_default=True, ge=0,
              help="Regularisation coefficient of the sparse-training pruner (none: torch-pruning's default: "
                   "1e-4 group-norm, 1e-5 bn-scale, 1e-5 growing-reg starting value)."),
        Param("delta_reg", float, None, nullable=True, omit_default=True, ge=0,
              help="growing-reg: increment of each group's coefficient after every epoch, largest for the least "
                   "important channels (none: torch-pruning's 1e-5)."),
        Param("finetune_between", int, 0, omit_default=True, ge=0,
              help="Iterative pruning: fine-tune this many epochs after each of prune.steps pruning steps but the last "
                   "(with a match, the way to the target is split into steps stages). 0: prune at once."),
    )

    def requires(self, params):
        # Ranges are declared on the Params; a bad combination fails when the grid is planned, not mid-run.
        spec = parse_target(params)
        check_pruner(params)
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

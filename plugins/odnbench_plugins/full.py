"""The ``full`` method: train the whole backbone with the shared trainer. The reference every
other method is measured against (Δ vs full depth, speed-ups) and the starting point of
pruning and truncation.

``survival`` < 1 trains it with stochastic depth (Huang et al., ECCV 2016, arXiv 1603.09382), the
"trained to survive losing blocks" model that ``truncate`` and ``blockdrop`` can start from
(``full_survival``): for every mini-batch, block l of L is kept with probability 1 - l/L x (1 -
survival) (a linear decay to ``survival`` at the last block) and a dropped block is not run at all,
so its compute is neither spent nor counted (timm's ``drop_path`` drops per sample and saves
nothing). Only blocks whose output has their input's shape are ever dropped (ResNet-18: 5 of 8);
evaluation, and the exported model, use every block."""

from __future__ import annotations

from typing import Any

from odnbench import Method, MethodOutput, Param, hookimpl

#: The quick preset's reference trains longer than the other methods' 12-epoch cap, so that patience,
#: not the cap, ends it: with the cap at 12 every MNIST seed and 2 of 3 mnist5k seeds stopped on the cap,
#: and every Δ vs full leaned on an undertrained reference. Patience 8, not the recipe's 4: under the
#: 30-epoch cosine schedule 4 stopped one mnist5k seed on noise after 7 epochs (docs/boards.md).
QUICK = {"epochs": 30, "patience": 8}


class FullDepth(Method):
    name = "full"
    description = "Full-depth baseline: the whole backbone trained with the recipe (model chosen on validation)"
    role = "baseline"  # boards compare every other row with this one (stored in each result)
    # Left out of the cell key at their defaults (the recipe's), so smoke and paper cells keep their keys.
    params = (
        Param("epochs", int, None, nullable=True, ge=1, omit_default=True, replaces_recipe="epochs",
              help="Epoch cap of the reference's training (none: recipe.epochs)."),
        Param("patience", int, None, nullable=True, ge=1, omit_default=True, replaces_recipe="patience",
              help="Early-stopping patience of the reference's training (none: recipe.patience)."),
        Param("survival", float, 1.0, gt=0, le=1, omit_default=True, sweep=True,
              help="Stochastic depth: survival probability of the last block, decaying linearly from 1 (Huang et "
                   "al. 2016; 0.5 in the paper); a dropped block is skipped for the whole mini-batch, its compute "
                   "not spent. 1.0: off."),
    )

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        return dict(QUICK) if preset == "quick" else {}

    def run(self, ctx):
        p = ctx.params
        model = ctx.build_backbone().to(ctx.device)
        patience = -1 if p.get("patience") is None else p["patience"]  # -1: the recipe's
        if p.get("survival", 1.0) >= 1.0:
            fit = ctx.trainer.fit(model, label="full", epochs=p.get("epochs"), patience=patience)
            return MethodOutput(model, fit.summary())
        from odnbench_plugins.stochastic_depth import StochasticDepth

        drops = StochasticDepth.for_model(model, p["survival"], ctx.input_shape, ctx.seed)
        fit = ctx.trainer.fit(model, label="full", epochs=p.get("epochs"), patience=patience, loss_fn=drops.loss)
        # The trainer counted every block of every step; give back what the dropped blocks did not spend.
        ctx.cost.add("full", train_macs=-drops.unspent_train_macs)
        return MethodOutput(model, {**fit.summary(), "stochastic_depth": drops.record()})


@hookimpl
def register_methods(register):
    register(FullDepth())

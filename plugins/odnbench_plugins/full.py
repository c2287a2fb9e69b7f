"""The ``full`` method: train the whole backbone with the shared trainer. The reference every
other method is measured against (Δ vs full depth, speed-ups) and the starting point of
pruning and truncation."""

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
        Param("epochs", int, None, nullable=True, ge=1, omit_default=True,
              help="Epoch cap of the reference's training (none: recipe.epochs)."),
        Param("patience", int, None, nullable=True, ge=1, omit_default=True,
              help="Early-stopping patience of the reference's training (none: recipe.patience)."),
    )

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        return dict(QUICK) if preset == "quick" else {}

    def run(self, ctx):
        p = ctx.params
        model = ctx.build_backbone().to(ctx.device)
        patience = -1 if p.get("patience") is None else p["patience"]  # -1: the recipe's
        fit = ctx.trainer.fit(model, label="full", epochs=p.get("epochs"), patience=patience)
        return MethodOutput(model, fit.summary())


@hookimpl
def register_methods(register):
    register(FullDepth())

"""The ``full`` method: train the whole backbone with the shared trainer. The reference every
other method is measured against (Δ vs full depth, speed-ups) and the starting point of
pruning and truncation."""

from __future__ import annotations

from odnbench import Method, MethodOutput, hookimpl


class FullDepth(Method):
    name = "full"
    description = "Full-depth baseline: the whole backbone trained with the recipe (model chosen on validation)"
    params = ()
    role = "baseline"  # boards compare every other row with this one (stored in each result)

    def run(self, ctx):
        model = ctx.build_backbone().to(ctx.device)
        fit = ctx.trainer.fit(model, label="full")
        return MethodOutput(model, fit.summary())


@hookimpl
def register_methods(register):
    register(FullDepth())

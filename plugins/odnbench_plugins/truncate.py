"""The ``truncate`` control: the trained full-depth model cut after block k (same k rule as
``scratch``), with a new linear head, then fine-tuned. Its cost includes the full-depth training
it started from (and the ODN search that chose k). ``full_survival`` starts it from the full model
trained with stochastic depth (``full.survival``), which was trained to lose blocks."""

from __future__ import annotations

from odnbench import Method, MethodOutput, Param, hookimpl
from odnbench_plugins.depth_rule import (
    DEPTH_PARAM,
    FULL_SURVIVAL_PARAM,
    chosen_depth,
    depth_requirements,
    full_requirement,
)


class Truncate(Method):
    name = "truncate"
    description = "Trained full-depth model cut after ODN's depth k, new head, fine-tuned"
    params = (
        DEPTH_PARAM,
        Param("finetune_epochs", int, None, nullable=True, ge=1,
              help="Fine-tuning epochs after the cut (none: the recipe's epochs)."),
        Param("finetune_lr", float, None, nullable=True, gt=0, help="Fine-tuning learning rate (none: the recipe's)."),
        FULL_SURVIVAL_PARAM,
    )

    def requires(self, params):
        return [full_requirement(params), *depth_requirements(params)]

    def run(self, ctx):
        full = ctx.start_from("full")
        k, source = chosen_depth(ctx, full.depth)
        val_full = ctx.trainer.evaluate(full, "val")
        model = full.truncated(k)  # trained stem + blocks 1..k, fresh head
        del full
        val_cut = ctx.trainer.evaluate(model, "val")
        p = ctx.params
        fit = ctx.trainer.fit(model, label="fine-tune", epochs=p["finetune_epochs"], lr=p["finetune_lr"])
        return MethodOutput(model, {
            "depth_source": source,
            "full_depth_val": val_full,
            "val_after_cut": val_cut,
            "val_after_finetune": fit.best_val,
            "finetune_epochs": fit.epochs,
            "finetune_best_epoch": fit.best_epoch,
            "stopped": fit.stopped,
            "history": fit.history,
            **({"full_survival": p["full_survival"]} if p.get("full_survival") is not None else {}),
        }, depth=k)


@hookimpl
def register_methods(register):
    register(Truncate())

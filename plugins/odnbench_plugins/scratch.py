"""The ``scratch`` control: the shallow network ODN chose (stem + blocks 1..k + a new head),
trained from random initialisation under the same recipe. It separates what ODN's depth choice
buys from what its progressive training buys."""

from __future__ import annotations

from odnbench import Method, MethodOutput, hookimpl
from odnbench_plugins.depth_rule import DEPTH_PARAM, chosen_depth, depth_requirements


class Scratch(Method):
    name = "scratch"
    description = "ODN's chosen depth (stem + k blocks + head) trained from scratch with the recipe"
    params = (DEPTH_PARAM,)

    def requires(self, params):
        return depth_requirements(params)

    def run(self, ctx):
        full = ctx.build_backbone()
        k, source = chosen_depth(ctx, full.depth)
        # A fresh backbone cut at k: the same stem, blocks and init as the full model would get.
        model = full.truncated(k).to(ctx.device)
        del full
        fit = ctx.trainer.fit(model, label="scratch")
        return MethodOutput(model, {"depth_source": source, **fit.summary()}, depth=k)


@hookimpl
def register_methods(register):
    register(Scratch())

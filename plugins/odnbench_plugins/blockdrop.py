"""The ``blockdrop`` control: does ODN cut the right blocks? Residual blocks whose input and output
shapes agree can be removed from anywhere in a trained residual network, not only from its end.

Starting from the trained full-depth model, every removable block is scored:

- ``drop``: the validation top-1 lost when that block alone is removed (no retraining);
- ``probe``: a linear probe (as in "Shallowing Deep Networks", Chen & Zhao 2018) is trained on the
  pooled features before and after every block; a block's score is the probe accuracy it adds;
- ``both``: the mean of the two rankings.

Blocks are removed, least useful first, until the model keeps ``keep`` blocks (default: as many as
ODN's model) or, with ``match``, until its size / MACs / parameters are at most the target. The
rest (stem, kept blocks, the trained head: removable blocks keep the width) is fine-tuned. With
``full_survival`` it starts from the full model trained with stochastic depth (``full.survival``). Blocks
go whole, so a match rarely lands within 5 %; the result says how far off it is and why
(``why_not``). When ODN's depth or a match target is below what removing every removable block
gives, the smallest such model is kept and the result says so; a ``keep`` set by hand below it is
an error.
"""

from __future__ import annotations

from odnbench import Method, MethodOutput, Param, hookimpl
from odnbench.errors import OdnbenchError
from odnbench_plugins import match_rule
from odnbench_plugins.depth_rule import FULL_SURVIVAL_PARAM, chosen_depth, depth_requirements, full_requirement

SCORES = ("drop", "probe", "both")


def removable_blocks(net, example) -> list[int]:
    """0-based indices of the blocks whose output has the shape of their input (found on a forward pass)."""
    import torch

    shapes = []
    was = net.training
    net.eval()
    with torch.no_grad():
        x = net.stem(example)
        for block in net.blocks:
            y = block(x)
            shapes.append(tuple(x.shape) == tuple(y.shape))
            x = y
    net.train(was)
    return [i for i, same in enumerate(shapes) if same]


def without(net, drop):
    """A DepthNet sharing ``net``'s modules with the blocks in ``drop`` (0-based) left out; its trained
    head still fits, since a removable block keeps the width."""
    from odnbench.depthnet import DepthNet

    drop = set(drop)
    kept = [i for i in range(net.depth) if i not in drop]
    stage_of = [s for s, n in enumerate(net.stages) for _ in range(n)]
    stages = [n for n in (sum(1 for i in kept if stage_of[i] == s) for s in range(len(net.stages))) if n]
    meta = {**net.meta, "blocks_kept": [i + 1 for i in kept]}
    return DepthNet(net.stem, [net.blocks[i] for i in kept], [net.widths[i] for i in kept], net.head, meta,
                    stages=stages, num_classes=net.num_classes, pool=net.pool)


def drop_scores(ctx, net, removable, val_full) -> dict[int, float]:
    """Validation top-1 lost when each block alone is removed (smaller = safer to remove)."""
    return {i: round(val_full - ctx.trainer.evaluate(without(net, [i]), "val"), 4) for i in removable}


def probe_scores(ctx, net, removable, epochs: int) -> tuple[dict[int, float], list[float]]:
    """Linear-probe validation top-1 after the stem and after every block (frozen features, pooled), and
    each removable block's gain (probe after it - probe before it). Counted: one forward pass over the
    training split (as forward-only passes) and the probes' training time."""
    import time

    import torch
    import torch.nn.functional as F

    started = time.perf_counter()

    @torch.no_grad()
    def features(x_all):
        net.eval()
        points = [[] for _ in range(net.depth + 1)]
        for s in range(0, len(x_all), ctx.recipe.eval_batch_size):
            x = net.stem(x_all[s:s + ctx.recipe.eval_batch_size])
            points[0].append(torch.flatten(net.pool(x), 1))
            for i, block in enumerate(net.blocks):
                x = block(x)
                points[i + 1].append(torch.flatten(net.pool(x), 1))
        return [torch.cat(p) for p in points]

    train, val = ctx.splits.train, ctx.splits.val
    f_train, f_val = features(train.x), features(val.x)
    generator = torch.Generator().manual_seed(ctx.seed)
    accuracy = []
    for ft, fv in zip(f_train, f_val):
        mean, std = ft.mean(0), ft.std(0) + 1e-6  # standardised: one probe LR suits every depth
        ft, fv = (ft - mean) / std, (fv - mean) / std
        probe = torch.nn.Linear(ft.shape[1], net.num_classes).to(ft.device)
        torch.nn.init.zeros_(probe.weight)
        torch.nn.init.zeros_(probe.bias)
        opt = torch.optim.Adam(probe.parameters(), lr=0.01)
        for _ in range(epochs):
            order = torch.randperm(len(ft), generator=generator).to(ft.device)
            for s in range(0, len(ft), ctx.recipe.batch_size):
                idx = order[s:s + ctx.recipe.batch_size]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(probe(ft[idx]), train.y[idx]).backward()
                opt.step()
        with torch.no_grad():
            accuracy.append(round(100.0 * (probe(fv).argmax(1) == val.y).float().mean().item(), 4))
    ctx.cost.add_forward("block scoring", len(train), train_seconds=time.perf_counter() - started,
                         macs=ctx.trainer.forward_macs(net))
    return {i: round(accuracy[i + 1] - accuracy[i], 4) for i in removable}, accuracy


def removal_order(scores: dict[str, dict[int, float]]) -> list[int]:
    """Removable blocks, least useful first: lowest drop loss / probe gain (mean rank for ``both``);
    ties go to the deeper block."""
    blocks = sorted(next(iter(scores.values())))
    rank = {i: 0.0 for i in blocks}
    for by in scores.values():
        for r, i in enumerate(sorted(blocks, key=lambda b: (by[b], -b))):
            rank[i] += r / len(scores)
    return sorted(blocks, key=lambda b: (rank[b], -b))


class BlockDrop(Method):
    name = "blockdrop"
    description = "Trained full model with the least useful shape-keeping blocks removed (from anywhere), fine-tuned"
    params = (
        Param("keep", int, None, nullable=True, ge=1, sweep=True,
              help="Residual blocks to keep, the shape-changing ones included. none: as many as ODN's model "
                   "(at least the shape-changing ones), unless match is set."),
        *match_rule.match_params("blockdrop", "Remove blocks until the model is at most"),
        Param("score", str, "drop", choices=SCORES,
              help="drop: validation top-1 lost when the block alone is removed; probe: linear-probe accuracy the "
                   "block adds (Shallowing Deep Networks); both: mean of the two rankings."),
        Param("probe_epochs", int, 5, ge=1,
              help="Epochs of each linear probe on the frozen pooled features (score=probe|both)."),
        Param("finetune_epochs", int, None, nullable=True, ge=1,
              help="Fine-tuning epochs after the removal (none: the recipe's epochs)."),
        Param("finetune_lr", float, None, nullable=True, gt=0, help="Fine-tuning learning rate (none: the recipe's)."),
        FULL_SURVIVAL_PARAM,
    )

    def requires(self, params):
        spec = match_rule.parse_match(params, "blockdrop")
        if spec is not None and params["keep"] is not None:  # ranges are declared on the Params
            raise OdnbenchError("blockdrop.keep and blockdrop.match both say how many blocks go; set one of them")
        if spec is not None:
            return [full_requirement(params), *match_rule.match_requirements(spec, ("full",))]
        return [full_requirement(params), *depth_requirements(params, "keep")]

    def run(self, ctx):
        import torch

        p = ctx.params
        spec = match_rule.parse_match(p, "blockdrop")
        full = ctx.start_from("full")
        example = torch.zeros((1, *ctx.input_shape), device=ctx.device)
        val_full = ctx.trainer.evaluate(full, "val")
        removable = removable_blocks(full, example)
        if not removable:
            raise OdnbenchError(f"blockdrop: no block of {ctx.config.get('backbone', '?')} keeps its input shape, "
                                "so none can be removed")
        info: dict = {"full_depth": full.depth, "removable": [i + 1 for i in removable], "score": p["score"],
                      "val_full_depth": val_full}
        if p.get("full_survival") is not None:
            info["full_survival"] = p["full_survival"]
        scores: dict[str, dict[int, float]] = {}
        if p["score"] in ("drop", "both"):
            scores["drop"] = drop_scores(ctx, full, removable, val_full)
        if p["score"] in ("probe", "both"):
            scores["probe"], info["probe_accuracy"] = probe_scores(ctx, full, removable, p["probe_epochs"])
        info["scores"] = {by: {str(i + 1): v for i, v in s.items()} for by, s in scores.items()}
        order = removal_order(scores)
        info["removal_order"] = [i + 1 for i in order]

        if spec is None:
            keep, info["keep_source"] = chosen_depth(ctx, full.depth, "keep")
            fewest = full.depth - len(removable)
            if keep < fewest:
                why = (f"{keep} of {full.depth} blocks cannot be kept: just {len(removable)} keep their input shape "
                       f"(blocks {', '.join(str(i + 1) for i in removable)}), so at least {fewest} stay")
                if info["keep_source"] == "set":
                    raise OdnbenchError(f"blockdrop.keep={keep}: {why}")
                # ODN's depth is below what block removal can reach: keep the fewest blocks, and say so.
                info["why_not"] = f"ODN keeps {why}; blockdrop keeps {fewest}"
                ctx.progress.line(f"blockdrop: {info['why_not']}")
                keep = fewest
            info["keep"] = keep
            drop = order[:full.depth - keep]
        else:
            drop, match = self._match(ctx, full, order, spec)
            info.update(match)
        model = without(full, drop)
        info["blocks_removed"] = sorted(i + 1 for i in drop)
        info["blocks_kept"] = model.meta["blocks_kept"]
        info["val_after_removal"] = ctx.trainer.evaluate(model, "val")
        fit = ctx.trainer.fit(model, label="fine-tune", epochs=p["finetune_epochs"], lr=p["finetune_lr"])
        info.update(val_after_finetune=fit.best_val, finetune_epochs=fit.epochs, finetune_best_epoch=fit.best_epoch,
                    finetune_stopped=fit.stopped, history=fit.history)
        # With a match the target chose how many blocks go: keep (none) did not shape the model.
        return MethodOutput(model, info, unused_params=None if spec is None else ["keep"])

    @staticmethod
    def _match(ctx, full, order, spec):
        """Remove blocks in ``order`` until the axis is at most the target; how close it landed, and why
        not closer."""
        target = match_rule.target_value(ctx, spec)
        measure = match_rule.measure_fn(spec.axis, ctx.input_shape)
        unit = match_rule.AXIS_UNITS[spec.axis]
        value = measure(full)
        if value <= target:
            raise OdnbenchError(f"blockdrop: the full model already measures {value:,.6g} {unit}, not above the "
                                f"target {target:,.6g}: there is nothing to remove")
        drop, path = [], [{"removed": None, "value": value}]
        for i in order:
            if value <= target:
                break
            drop.append(i)
            value = measure(without(full, drop))
            path.append({"removed": i + 1, "value": value})
        info = {**match_rule.match_info(spec, target, value), "removal_path": path}
        if value > target:
            info["why_not"] = (f"cannot reach: with every removable block gone the model still measures {value:,.6g} "
                               f"{unit}, above the target {target:,.6g}; the shape-changing blocks stay")
        elif not info["within_tolerance"]:
            info["why_not"] = (f"blocks go whole: removing block {drop[-1] + 1} took the model from {path[-2]['value']:,.6g}"
                               f" (above the target) to {value:,.6g} {unit}, {-info['relative_error']:.1%} below it")
        if "why_not" in info:
            ctx.progress.line(f"blockdrop: {info['why_not']}")
        return drop, info


@hookimpl
def register_methods(register):
    register(BlockDrop())

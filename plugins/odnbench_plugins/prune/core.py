"""Structured channel pruning of a trained DepthNet with torch-pruning (``tp.pruner.BasePruner``).

Two ways to say how far to prune:

- :func:`prune_by_ratio`: torch-pruning's own channel ``pruning_ratio`` in ``steps`` iterative steps
  (parameters then fall by about 1 - (1 - ratio)^2).
- :func:`prune_to_target`: prune in small steps until the model's saved size, MACs or parameter
  count comes down to a target (e.g. another method's model), landing within a tolerance below it.

Both refuse to return a model that did not shrink (torch-pruning silently skips, e.g., frozen
parameters) and never touch the classifier's outputs (``model.head`` is an ignored layer).

:func:`prune_in_stages` reaches a target through intermediate ones, with fine-tuning between them
(iterative pruning); :func:`sparse_train` first trains the model with one of torch-pruning's
sparsity regularisers (GroupNormPruner, BNScalePruner, GrowingRegPruner).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from odnbench.errors import OdnbenchError
from odnbench.metrics import footprint
from odnbench.trainer import FORWARDS_PER_STEP
from odnbench_plugins.match_rule import AXIS_UNITS, MatchSpec, measure_fn, target_value
from odnbench_plugins.prune.spec import CRITERIA, PRUNER_CRITERION  # declared once, with no torch

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
GradFn = Callable[[nn.Module], int]  # fills .grad for gradient-based criteria; returns samples used


def make_importance(criterion: str):
    """The torch-pruning importance for a criterion name (see CRITERIA)."""
    imp = tp.importance
    table = {
        "l1": lambda: imp.GroupMagnitudeImportance(p=1),  # group L1 norm
        "l2": lambda: imp.GroupMagnitudeImportance(p=2),  # group L2 norm (torch-pruning's default)
        "taylor": lambda: imp.GroupTaylorImportance(),  # first-order Taylor, needs gradients
        "lamp": lambda: imp.LAMPImportance(p=2),
        "bn-scale": lambda: imp.BNScaleImportance(),  # |gamma| of the BatchNorms (network slimming)
        "fpgm": lambda: imp.FPGMImportance(p=2),  # filters closest to the geometric median
        "random": lambda: imp.RandomImportance(),  # the sanity baseline every criterion must beat
    }
    if criterion not in table:
        raise OdnbenchError(f"unknown pruning criterion {criterion!r}; choose one of: {', '.join(CRITERIA)}")
    return table[criterion]()


def needs_gradients(criterion: str) -> bool:
    return criterion == "taylor"


def _classifier(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    get_classifier = getattr(model, "get_classifier", None)  # timm's models
    if head is None and get_classifier is not None:
        head = get_classifier()
    if not isinstance(head, nn.Module):
        raise OdnbenchError(f"cannot find the classifier of {type(model).__name__} (expected .head) to protect it")
    return head


def make_pruner(model: nn.Module, example_inputs: torch.Tensor, importance, *, ratio: float, steps: int = 1,
                scope: str = "local", round_to: int | None = None, cls=tp.pruner.BasePruner,
                **extra) -> tp.pruner.BasePruner:
    """A torch-pruning pruner (``cls``, BasePruner by default; ``extra``: its own arguments, e.g. ``reg``)."""
    if scope not in ("local", "global"):
        raise OdnbenchError(f"unknown pruning scope {scope!r}; choose local or global")
    # The dependency graph is traced with autograd on: under no_grad torch-pruning sees no graph.
    with torch.enable_grad():
        return cls(
            model, example_inputs, importance,
            global_pruning=scope == "global",
            pruning_ratio=ratio,
            iterative_steps=steps,
            ignored_layers=[_classifier(model)],  # never prune the classifier's outputs
            round_to=round_to,
            **extra,
        )


def _degenerate(model: nn.Module) -> str | None:
    """A layer pruned to zero channels (torch-pruning can do that with round_to or global ranking)."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and (m.out_channels == 0 or m.in_channels == 0):
            return name
        if isinstance(m, BATCH_NORMS) and m.num_features == 0:
            return name
        if isinstance(m, nn.Linear) and m.in_features == 0:
            return name
    return None


def check_shrunk(before: dict, after: dict, what: str) -> None:
    """Fail loudly when torch-pruning removed nothing (frozen parameters, everything ignored...)."""
    if not (after["params"] < before["params"] and after["macs"] < before["macs"]):
        raise OdnbenchError(
            f"pruning removed nothing ({what}): params {before['params']:,} -> {after['params']:,}, "
            f"MACs {before['macs']:,} -> {after['macs']:,}. torch-pruning skips frozen parameters "
            "(requires_grad=False) and ignored layers; check the model and the settings."
        )


def refresh_widths(model: nn.Module, example_inputs: torch.Tensor) -> list[int]:
    """Set a DepthNet's ``widths`` to its block output widths after pruning (read off a forward pass)."""
    if hasattr(model, "block_outputs") and hasattr(model, "widths"):
        net: Any = model  # a DepthNet, or any model with its two attributes
        was = net.training
        net.eval()
        with torch.no_grad():
            net.widths = [int(o.shape[1]) for o in net.block_outputs(example_inputs)]
        net.train(was)
        return list(net.widths)
    return []


def _step(pruner: tp.pruner.BasePruner, model: nn.Module, grad_fn: GradFn | None,
          stop: Callable[[nn.Module], bool] | None = None) -> tuple[int, int]:
    """One pruning step; with ``stop``, prune group by group and stop as soon as it holds.
    Returns (groups pruned, gradient samples used)."""
    samples = grad_fn(model) if grad_fn else 0
    groups = pruner.step(interactive=True)
    n = 0
    if groups is not None:
        for group in groups:
            group.prune()
            n += 1
            if stop is not None and stop(model):
                break
        groups.close()
    model.zero_grad(set_to_none=True)  # stale gradients of pruned tensors must not reach the next step
    return n, samples


@dataclass
class PruneReport:
    model: nn.Module
    before: dict
    after: dict
    steps: int = 0
    grad_samples: int = 0
    history: list[dict] = field(default_factory=list)


def prune_by_ratio(model: nn.Module, example_inputs: torch.Tensor, criterion: str, *, ratio: float,
                   steps: int = 1, scope: str = "local", round_to: int | None = None,
                   grad_fn: GradFn | None = None,
                   between: Callable[[nn.Module, int], None] | None = None) -> PruneReport:
    """Prune ``ratio`` of the channels (torch-pruning's pruning_ratio) in ``steps`` iterative steps,
    re-ranking channels (and recomputing gradients for Taylor) before each step. In place.
    ``between(model, step)`` runs after every step but the last (fine-tuning, for iterative pruning)."""
    if not 0.0 < ratio < 1.0:
        raise OdnbenchError(f"prune.ratio={ratio}: must be strictly between 0 and 1 (a channel share)")
    if steps < 1:
        raise OdnbenchError(f"prune.steps={steps}: must be at least 1")
    shape = tuple(example_inputs.shape[1:])
    before = footprint(model, shape)
    pruner = make_pruner(model, example_inputs, make_importance(criterion), ratio=ratio, steps=steps,
                         scope=scope, round_to=round_to)
    report = PruneReport(model, before, before)
    for i in range(steps):
        _, samples = _step(pruner, model, grad_fn)
        report.grad_samples += samples
        bad = _degenerate(model)
        if bad:
            raise OdnbenchError(f"pruning left layer {bad!r} with no channels (ratio {ratio}, scope {scope}, "
                                f"round_to {round_to}); use a smaller ratio, scope=local or a smaller round_to")
        report.history.append({"step": i + 1, **footprint(model, shape)})
        if between is not None and i + 1 < steps:
            between(model, i + 1)
    report.steps = steps
    report.after = footprint(model, shape)
    check_shrunk(before, report.after, f"ratio {ratio}, criterion {criterion}")
    return report


def prune_to_target(model: nn.Module, example_inputs: torch.Tensor, criterion: str, *, axis: str, target: float,
                    tolerance: float = 0.05, max_step: float = 0.1, scope: str = "local",
                    round_to: int | None = None, grad_fn: GradFn | None = None,
                    max_iterations: int = 500) -> PruneReport:
    """Prune in small steps until ``axis`` (size MB, MACs or params, measured as the harness does)
    is at most ``target`` and at least ``target * (1 - tolerance)``.

    Each step removes a share of the remaining channels: at most ``max_step``, less when the target
    is near (size, MACs and params all scale about with width squared). A step that would overshoot
    below the window is undone and redone one torch-pruning group at a time, stopping as soon as the
    target is reached; if a single group still overshoots, the step share is halved. Returns a report
    whose ``model`` is the pruned model (a different object when a step was undone).
    """
    if not 0.0 < tolerance < 1.0:
        raise OdnbenchError(f"prune.tolerance={tolerance}: must be strictly between 0 and 1")
    if not 0.0 < max_step < 1.0:
        raise OdnbenchError(f"prune.max_step={max_step}: must be strictly between 0 and 1")
    if not target > 0:
        raise OdnbenchError(f"pruning target {target} {AXIS_UNITS.get(axis, axis)} must be positive")
    shape = tuple(example_inputs.shape[1:])
    measure = measure_fn(axis, shape)
    before = footprint(model, shape)
    value = measure(model)
    if value <= target:
        raise OdnbenchError(
            f"the unpruned model is already at {value:,.6g} {AXIS_UNITS[axis]}, not above the target "
            f"{target:,.6g}: there is nothing to prune"
        )
    low = target * (1.0 - tolerance)
    share_cap, min_share = max_step, 1e-4
    report = PruneReport(model, before, before)

    def one_step(m: nn.Module, share: float, stop=None) -> float:
        pruner = make_pruner(m, example_inputs, make_importance(criterion), ratio=share, steps=1,
                             scope=scope, round_to=round_to)
        _, samples = _step(pruner, m, grad_fn, stop)
        report.grad_samples += samples
        return measure(m)

    for _ in range(max_iterations):
        if value <= target:
            break
        # Share of channels to drop if the axis scaled exactly with width squared.
        needed = 1.0 - math.sqrt(target / value)
        share = min(share_cap, max(needed, min_share))
        snapshot = copy.deepcopy(model)
        new = one_step(model, share)
        if new < low or _degenerate(model):
            # Overshot: redo the step on the snapshot, one group at a time, until the target holds.
            model = copy.deepcopy(snapshot)
            new = one_step(model, share, stop=lambda m: measure(m) <= target)
            if new < low or _degenerate(model):
                model = snapshot
                share_cap = share / 2
                if share_cap < min_share:
                    raise OdnbenchError(
                        f"cannot prune to {target:,.6g} {AXIS_UNITS[axis]} within {tolerance:.0%}: the smallest "
                        f"step torch-pruning can take ({scope} scope, round_to {round_to}) jumps from "
                        f"{value:,.6g} to below {low:,.6g}; try scope=global, no round_to or a wider model"
                    )
                continue
        if new >= value:
            floor = (" (a saved state_dict also carries a fixed overhead per tensor that removing channels "
                     "cannot shrink)") if axis == "size" else ""
            widths = [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
            # say what is true of this model: a global ranking can stall with channels left
            left = ("every layer is down to its last channels" if max(widths, default=1) <= max(1, round_to or 1)
                    else f"its convolutions keep {min(widths)}-{max(widths)} channels")
            raise OdnbenchError(
                f"pruning stalled at {value:,.6g} {AXIS_UNITS[axis]} above the target {target:,.6g}: "
                f"torch-pruning found nothing more to remove ({scope} scope, criterion {criterion}); "
                f"{left}{floor}"
            )
        value = new
        report.steps += 1
        report.history.append({"step": report.steps, "share": round(share, 6), axis: value})
    else:
        raise OdnbenchError(f"pruning did not reach {target:,.6g} {AXIS_UNITS[axis]} in {max_iterations} steps")
    report.model = model
    report.after = footprint(model, shape)
    check_shrunk(before, report.after, f"target {target:,.6g} {AXIS_UNITS[axis]}")
    return report


def gradient_fn(splits, batch_size: int, n_batches: int, seed: int) -> GradFn:
    """Accumulate cross-entropy gradients over ``n_batches`` seeded training batches (for Taylor).

    The model is put in eval mode for this pass, so BatchNorm running statistics are not changed by
    the importance estimate (gradients flow all the same)."""
    from odnbench.data import batches

    def fill(model: nn.Module) -> int:
        generator = torch.Generator().manual_seed(seed)
        was = model.training
        model.eval()
        model.zero_grad(set_to_none=True)
        seen = 0
        with torch.enable_grad():
            for i, (x, y) in enumerate(batches(splits.train, batch_size, shuffle=True, generator=generator)):
                if i >= n_batches:
                    break
                F.cross_entropy(model(x), y).backward()
                seen += len(y)
        model.train(was)
        return seen

    return fill


SPARSE_PRUNERS = {"group-norm": "GroupNormPruner", "bn-scale": "BNScalePruner", "growing-reg": "GrowingRegPruner"}


def mean_bn_scale(model: nn.Module) -> float:
    """Mean |gamma| over the BatchNorm layers: what network slimming drives towards zero."""
    scales = [m.weight.detach().abs().flatten() for m in model.modules()
              if isinstance(m, BATCH_NORMS) and m.affine]
    return float(torch.cat(scales).mean()) if scales else 0.0


def sparse_train(trainer, model: nn.Module, example_inputs: torch.Tensor, pruner: str, *, scope: str = "local",
                 round_to: int | None = None, reg: float | None = None, delta_reg: float | None = None,
                 epochs: int | None = None) -> dict:
    """Train ``model`` in place with a torch-pruning sparsity regulariser, as torch-pruning's benchmarks
    do before pruning: ``pruner.regularize(model)`` adds the penalty's gradient after every backward
    pass, weight decay is off (the regulariser is the only penalty), and ``growing-reg`` raises its
    per-group coefficients after every epoch (``update_reg``). The best validation epoch is kept.
    Counted under "sparse training". ``reg``/``delta_reg`` None: torch-pruning's defaults."""
    if pruner not in SPARSE_PRUNERS:
        raise OdnbenchError(f"unknown sparse-training pruner {pruner!r}; choose one of: {', '.join(SPARSE_PRUNERS)}")
    extra: dict[str, Any] = {k: v for k, v in (("reg", reg), ("delta_reg", delta_reg)) if v is not None}
    regulariser = make_pruner(model, example_inputs, make_importance(PRUNER_CRITERION[pruner]), ratio=0.5,
                              scope=scope, round_to=round_to, cls=getattr(tp.pruner, SPARSE_PRUNERS[pruner]), **extra)
    before = mean_bn_scale(model)
    optimizer = trainer.make_optimizer(model.parameters(), weight_decay=0.0)
    # Between backward and step: the hook sees the loss's gradients and adds the penalty's.
    handle = optimizer.register_step_pre_hook(lambda *_: regulariser.regularize(model))

    def evaluate(m: nn.Module) -> float:
        if pruner == "growing-reg":
            regulariser.update_reg()  # fit calls eval_fn once after every epoch
        return trainer.evaluate(m, "val")

    try:
        fit = trainer.fit(model, label="sparse training", epochs=epochs, optimizer=optimizer, eval_fn=evaluate,
                          cost_part="sparse training")
    finally:
        handle.remove()
    coefficient = getattr(regulariser, "reg", None)
    return {"regulariser": SPARSE_PRUNERS[pruner],
            "reg": coefficient if coefficient is not None else getattr(regulariser, "base_reg", None),
            "delta_reg": getattr(regulariser, "delta_reg", None),
            "sparse_epochs": fit.epochs, "sparse_best_epoch": fit.best_epoch, "sparse_stopped": fit.stopped,
            "val_after_sparse_training": fit.best_val, "mean_bn_scale_before": round(before, 6),
            "mean_bn_scale_after": round(mean_bn_scale(model), 6), "sparse_history": fit.history}


def prune_in_stages(model: nn.Module, example_inputs: torch.Tensor, criterion: str, *, axis: str, target: float,
                    stages: int, between: Callable[[nn.Module, int], None], **kwargs) -> PruneReport:
    """Iterative pruning to a target: the way from the model's value to ``target`` is split into
    ``stages`` geometric stages, each reached with :func:`prune_to_target` (same tolerance), with
    ``between(model, stage)`` (fine-tuning) after every stage but the last."""
    shape = tuple(example_inputs.shape[1:])
    measure = measure_fn(axis, shape)
    start = measure(model)
    total = PruneReport(model, footprint(model, shape), footprint(model, shape))
    for stage in range(1, stages + 1):
        stage_target = target if stage == stages else start * (target / start) ** (stage / stages)
        if stage < stages and measure(model) <= stage_target:
            continue  # an earlier stage landed low enough for this one too
        report = prune_to_target(model, example_inputs, criterion, axis=axis, target=stage_target, **kwargs)
        model = report.model
        total.steps += report.steps
        total.grad_samples += report.grad_samples
        total.history += [{"stage": stage, "stage_target": stage_target, **h} for h in report.history]
        if stage < stages:
            between(model, stage)
    total.model = model
    total.after = footprint(model, shape)
    return total


def run(ctx, spec):
    """The ``prune`` method: trained full-depth model -> [sparse training] -> torch-pruning
    [-> fine-tune -> prune ...] -> fine-tune -> export."""
    import importlib.metadata
    import time

    from odnbench import MethodOutput

    p = ctx.params
    model = ctx.start_from("full")  # its training is already counted in ctx.cost
    example = torch.zeros((1, *ctx.input_shape), device=ctx.device)
    val_full = ctx.trainer.evaluate(model, "val")
    extra_info = {}
    criterion = p["criterion"]
    if p["pruner"] != "base":
        criterion = PRUNER_CRITERION[p["pruner"]]
        extra_info.update(pruner=p["pruner"], **sparse_train(
            ctx.trainer, model, example, p["pruner"], scope=p["scope"], round_to=p["round_to"], reg=p["reg"],
            delta_reg=p["delta_reg"], epochs=p["sparse_epochs"]))
    grad_fn = (gradient_fn(ctx.splits, ctx.recipe.batch_size, p["grad_batches"], ctx.seed)
               if needs_gradients(criterion) else None)
    torch.manual_seed(ctx.seed)  # random importance and tie-breaking reproduce with the seed

    between_fits: list[dict] = []

    def between(m: nn.Module, step: int) -> None:
        fit = ctx.trainer.fit(m, label=f"fine-tune after pruning step {step}", epochs=p["finetune_between"],
                              lr=p["finetune_lr"], cost_part="fine-tune between steps")
        between_fits.append({"step": step, "val": fit.best_val, "epochs": fit.epochs, "seconds": fit.seconds})

    hook = between if p["finetune_between"] else None
    started = time.perf_counter()
    if spec.mode == "ratio":
        report = prune_by_ratio(model, example, criterion, ratio=spec.ratio, steps=p["steps"],
                                scope=p["scope"], round_to=p["round_to"], grad_fn=grad_fn, between=hook)
        target_info = {"ratio": spec.ratio, "steps": p["steps"]}
    else:
        target = target_value(ctx, MatchSpec(spec.axis, spec.target, spec.source))
        kwargs = dict(tolerance=p["tolerance"], max_step=p["max_step"], scope=p["scope"], round_to=p["round_to"],
                      grad_fn=grad_fn)
        if hook is None:
            report = prune_to_target(model, example, criterion, axis=spec.axis, target=target, **kwargs)
        else:
            report = prune_in_stages(model, example, criterion, axis=spec.axis, target=target, stages=p["steps"],
                                     between=hook, **kwargs)
        achieved = {"size": report.after["size_mb"], "macs": report.after["macs"],
                    "params": report.after["params"]}[spec.axis]
        target_info = {"match": p["match"] if spec.source else spec.axis, "axis": spec.axis,
                       "source": spec.source, "target": target, "achieved": achieved,
                       "relative_error": round((achieved - target) / target, 6),
                       "tolerance": p["tolerance"], "steps": report.steps}
    model = report.model
    # Fine-tuning between steps is counted by the trainer already; the rest is pruning.
    seconds = time.perf_counter() - started - sum(f["seconds"] for f in between_fits)
    # Gradient passes for the importance (Taylor): counted at the unpruned network's MACs, an upper bound.
    ctx.cost.add("pruning", sample_steps=report.grad_samples, train_seconds=max(0.0, seconds),
                 train_macs=report.grad_samples * FORWARDS_PER_STEP * report.before["macs"])
    if hook is not None:
        extra_info.update(finetune_between=p["finetune_between"],
                          between_steps=[{k: v for k, v in f.items() if k != "seconds"} for f in between_fits])

    widths = refresh_widths(model, example)
    model.meta["pruned"] = {"criterion": criterion, "scope": p["scope"], **target_info,
                            **({"pruner": p["pruner"]} if p["pruner"] != "base" else {})}
    val_pruned = ctx.trainer.evaluate(model, "val")
    # fit() builds a new optimizer over the pruned parameters (the old tensors no longer exist).
    fit = ctx.trainer.fit(model, label="fine-tune", epochs=p["finetune_epochs"], lr=p["finetune_lr"])
    out = {
        "criterion": criterion,
        "importance": type(make_importance(criterion)).__name__,
        "scope": p["scope"],
        "round_to": p["round_to"],
        **target_info,
        "before": report.before,
        "achieved": report.after,
        "params_kept": round(report.after["params"] / report.before["params"], 6),
        "macs_kept": round(report.after["macs"] / report.before["macs"], 6),
        "widths": widths,
        "val_full_depth": val_full,
        "val_after_pruning": val_pruned,
        "val_after_finetune": fit.best_val,
        "finetune_epochs": fit.epochs,
        "finetune_best_epoch": fit.best_epoch,
        "finetune_stopped": fit.stopped,
        "history": fit.history,
        "pruning_history": report.history,
        "library": f"torch-pruning {importlib.metadata.version('torch-pruning')}",
        **extra_info,
    }
    # Matching chose how far to prune: ratio did not shape the model, nor steps unless fine-tuning
    # between steps split the way to the target into stages (board labels leave them out).
    unused = None if spec.mode == "ratio" else ["ratio"] + ([] if p["finetune_between"] else ["steps"])
    return MethodOutput(model, out, unused_params=unused)

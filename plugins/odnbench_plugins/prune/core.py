"""Structured channel pruning of a trained DepthNet with torch-pruning (``tp.pruner.BasePruner``).

Two ways to say how far to prune:

- :func:`prune_by_ratio`: torch-pruning's own channel ``pruning_ratio`` in ``steps`` iterative steps
  (parameters then fall by about 1 - (1 - ratio)^2).
- :func:`prune_to_target`: prune in small steps until the model's saved size, MACs or parameter
  count comes down to a target (e.g. another method's model), landing within a tolerance below it.

Both refuse to return a model that did not shrink (torch-pruning silently skips, e.g., frozen
parameters) and never touch the classifier's outputs (``model.head`` is an ignored layer).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from odnbench import metrics
from odnbench.metrics import footprint
from odnbench.errors import OdnbenchError
from odnbench_plugins.prune.spec import AXES, CRITERIA  # declared once, with no torch

AXIS_UNITS = {"size": "MB (saved state_dict / 1e6)", "macs": "MACs", "params": "parameters"}

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


def measure_fn(axis: str, input_shape: tuple[int, ...]) -> Callable[[nn.Module], float]:
    """How a target axis is measured: exactly as the harness measures the exported model."""
    if axis == "size":
        return metrics.saved_size_mb
    if axis == "macs":
        return lambda m: metrics.count_macs(m, input_shape)
    if axis == "params":
        return metrics.count_params
    raise OdnbenchError(f"unknown match axis {axis!r}; choose one of: {', '.join(AXES)}")


def _classifier(model: nn.Module) -> nn.Module:
    head = getattr(model, "head", None)
    if head is None and hasattr(model, "get_classifier"):
        head = model.get_classifier()
    if not isinstance(head, nn.Module):
        raise OdnbenchError(f"cannot find the classifier of {type(model).__name__} (expected .head) to protect it")
    return head


def make_pruner(model: nn.Module, example_inputs: torch.Tensor, importance, *, ratio: float, steps: int = 1,
                scope: str = "local", round_to: int | None = None) -> tp.pruner.BasePruner:
    if scope not in ("local", "global"):
        raise OdnbenchError(f"unknown pruning scope {scope!r}; choose local or global")
    # The dependency graph is traced with autograd on: under no_grad torch-pruning sees no graph.
    with torch.enable_grad():
        return tp.pruner.BasePruner(
            model, example_inputs, importance,
            global_pruning=scope == "global",
            pruning_ratio=ratio,
            iterative_steps=steps,
            ignored_layers=[_classifier(model)],  # never prune the classifier's outputs
            round_to=round_to,
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
        was = model.training
        model.eval()
        with torch.no_grad():
            model.widths = [int(o.shape[1]) for o in model.block_outputs(example_inputs)]
        model.train(was)
        return list(model.widths)
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
                   grad_fn: GradFn | None = None) -> PruneReport:
    """Prune ``ratio`` of the channels (torch-pruning's pruning_ratio) in ``steps`` iterative steps,
    re-ranking channels (and recomputing gradients for Taylor) before each step. In place."""
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
            raise OdnbenchError(
                f"pruning stalled at {value:,.6g} {AXIS_UNITS[axis]} above the target {target:,.6g}: "
                f"torch-pruning found nothing more to remove ({scope} scope, criterion {criterion}), every "
                f"layer is down to its last channels{floor}"
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


def run(ctx, spec):
    """The ``prune`` method: trained full-depth model -> torch-pruning -> fine-tune -> export."""
    import importlib.metadata
    import time

    from odnbench import MethodOutput

    p = ctx.params
    model = ctx.start_from("full")  # its training is already counted in ctx.cost
    example = torch.zeros((1, *ctx.input_shape), device=ctx.device)
    val_full = ctx.trainer.evaluate(model, "val")
    grad_fn = (gradient_fn(ctx.splits, ctx.recipe.batch_size, p["grad_batches"], ctx.seed)
               if needs_gradients(p["criterion"]) else None)
    torch.manual_seed(ctx.seed)  # random importance and tie-breaking reproduce with the seed

    started = time.perf_counter()
    if spec.mode == "ratio":
        report = prune_by_ratio(model, example, p["criterion"], ratio=spec.ratio, steps=p["steps"],
                                scope=p["scope"], round_to=p["round_to"], grad_fn=grad_fn)
        target_info = {"ratio": spec.ratio, "steps": p["steps"]}
    else:
        target = spec.target
        if spec.source is not None:
            key = {"size": "size_mb", "macs": "macs", "params": "params"}[spec.axis]
            target = ctx.dependency(spec.source).metrics.get(key)
            if not isinstance(target, (int, float)):
                raise OdnbenchError(f"prune.match={p['match']}: the {spec.source} result has no metrics.{key}")
        report = prune_to_target(model, example, p["criterion"], axis=spec.axis, target=float(target),
                                 tolerance=p["tolerance"], max_step=p["max_step"], scope=p["scope"],
                                 round_to=p["round_to"], grad_fn=grad_fn)
        achieved = {"size": report.after["size_mb"], "macs": report.after["macs"],
                    "params": report.after["params"]}[spec.axis]
        target_info = {"match": p["match"] if spec.source else spec.axis, "axis": spec.axis,
                       "source": spec.source, "target": target, "achieved": achieved,
                       "relative_error": round((achieved - target) / target, 6),
                       "tolerance": p["tolerance"], "steps": report.steps}
    model = report.model
    ctx.cost.add("pruning", sample_steps=report.grad_samples, train_seconds=time.perf_counter() - started)

    widths = refresh_widths(model, example)
    model.meta["pruned"] = {"criterion": p["criterion"], "scope": p["scope"], **target_info}
    val_pruned = ctx.trainer.evaluate(model, "val")
    # fit() builds a new optimizer over the pruned parameters (the old tensors no longer exist).
    fit = ctx.trainer.fit(model, label="fine-tune", epochs=p["finetune_epochs"], lr=p["finetune_lr"])
    out = {
        "criterion": p["criterion"],
        "importance": type(make_importance(p["criterion"])).__name__,
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
    }
    return MethodOutput(model, out)

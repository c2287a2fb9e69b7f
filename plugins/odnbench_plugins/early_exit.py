"""The ``early-exit`` method: a multi-exit network used as an anytime classifier (docs/early-exit.md).

A classifier (global average pool + linear) after every block, and each image leaves at the first
exit whose softmax confidence (its largest class probability) reaches a threshold τ (Shallow-Deep
Networks, Kaya et al. 2019; BranchyNet, Teerapittayanon et al. 2016). Two sources of the network:

- ``source=joint``: every exit trained together from scratch for the recipe's epochs, on the sum of
  the exits' cross-entropies (``loss_weights=equal``, as ODN's warm-up) or weighted by position
  (``linear``: exit k of N weighs k/N, like SDN's weights that grow with depth);
- ``source=odn``: ODN's warm-up network, which already has a head after every block (the ``odn``
  cell saves it as its ``warmup-exits`` artifact). Its cost counts that whole ODN cell.

Every τ of ``thresholds`` is a curve point that the harness measures like any model (test and
validation top-1, the mean MACs per image each spent, where images left, batch-1 latency on test
images, the stored size of the whole network: every exit has to be shipped). ``static`` adds each
exit alone (stem + blocks 1..k + exit k for every image: ODN's cut without its search) as a point
per depth. The exported model is the τ chosen on validation: the one whose validation images spent
the fewest MACs among those within ``tolerance`` points of the best validation top-1 over the sweep.

This module registers the method without importing torch; the work happens in :meth:`EarlyExit.run`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from odnbench import Method, OdnbenchError, Param, Requirement, hookimpl

#: 0 sends every image out at exit 1; a τ above 1 is never reached, so every image leaves at the last
#: exit having paid every exit on the way (the most an image can cost).
DEFAULT_THRESHOLDS = "0,0.5,0.7,0.8,0.9,0.95,0.98,0.99,0.995,0.999,1.01"
MAX_THRESHOLDS = 50
#: The artifact of an ``odn`` result holding its warmed-up network with every head.
ODN_ARTIFACT = "warmup-exits"


def parse_thresholds(text: Any) -> list[float]:
    """The thresholds of ``early-exit.thresholds`` (comma-separated), ascending; one-line errors."""
    where = "early-exit.thresholds"
    allowed = ("give confidences >= 0, comma-separated, e.g. 0,0.5,0.9,0.99,1.01 (0: every image leaves at the "
               "first exit; above 1: every image at the last)")
    if not isinstance(text, str) or not text.strip():
        raise OdnbenchError(f"{where}={text!r} names no threshold; {allowed}")
    values = []
    for part in text.split(","):
        try:
            value = float(part)
        except ValueError:
            raise OdnbenchError(f"{where}={text!r}: {part.strip()!r} is not a number; {allowed}") from None
        if not math.isfinite(value) or value < 0:
            raise OdnbenchError(f"{where}={text!r}: {part.strip()!r} is not a finite number >= 0; {allowed}")
        values.append(value)
    if len(set(values)) != len(values):
        twice = sorted({v for v in values if values.count(v) > 1})
        raise OdnbenchError(f"{where}={text!r} names {', '.join(f'{v:g}' for v in twice)} more than once; {allowed}")
    if len(values) > MAX_THRESHOLDS:
        raise OdnbenchError(f"{where} names {len(values)} thresholds; at most {MAX_THRESHOLDS} (each is measured)")
    return sorted(values)


def check_params(params: Mapping[str, Any]) -> list[float]:
    """What the declared ranges cannot say (one-line errors at plan time); returns the thresholds."""
    if params.get("source") == "odn" and params.get("loss_weights", "equal") != "equal":
        raise OdnbenchError("early-exit.loss_weights applies to source=joint (it trains the exits); "
                            "source=odn reads ODN's warm-up network as it was trained")
    return parse_thresholds(params.get("thresholds"))


def choose(sweep: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """The threshold to export, read on validation only: among those whose validation top-1 is within
    ``tolerance`` points of the best one of the sweep, the one whose images spent the fewest MACs
    (then the more accurate, then the lower threshold)."""
    best = max(s["val_top1"] for s in sweep)
    near = [s for s in sweep if s["val_top1"] >= best - tolerance - 1e-9]
    return min(near, key=lambda s: (s["val_mean_macs"], -s["val_top1"], s["threshold"]))


class EarlyExit(Method):
    name = "early-exit"
    description = ("A head after every block, each image leaving at the first confident one (softmax >= τ), "
                   "τ swept; the heads trained jointly from scratch or ODN's warm-up heads")
    params = (
        Param("source", str, "joint", "joint: train every exit together from scratch for the recipe's epochs; "
              "odn: ODN's warm-up network (runs or reuses the odn cell)", choices=("joint", "odn")),
        Param("thresholds", str, DEFAULT_THRESHOLDS, "Softmax confidences τ to sweep, comma-separated (each a curve "
              "point; 0: every image at exit 1, above 1: every image at the last exit)"),
        Param("tolerance", float, 0.5, "The exported τ: the cheapest on validation among those within this many "
              "points of the sweep's best validation top-1", ge=0, le=100),
        Param("static", bool, True, "Also measure each exit alone (stem + blocks 1..k + exit k for every image, "
              "ODN's cut without its search) as a curve point per depth"),
        Param("loss_weights", str, "equal", "source=joint: each exit's cross-entropy weighs 1 (equal, as ODN's "
              "warm-up) or k/N for exit k of N (linear, later exits weigh more, as in SDN)",
              choices=("equal", "linear")),
    )

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        check_params(params)  # at plan time, so a bad value fails before anything trains
        return [Requirement("odn")] if params["source"] == "odn" else []

    def run(self, ctx):
        thresholds = check_params(ctx.params)
        net, source_info = from_odn(ctx) if ctx.params["source"] == "odn" else train_jointly(ctx)
        return export(ctx, net.to(ctx.device).eval(), thresholds, source_info)


# ----------------------------------------------------------------------------------- the work


def from_odn(ctx):
    """ODN's warm-up network, as its ``odn`` dependency stored it."""
    from odnbench.depthnet import EarlyExitNet
    from odnbench.errors import MissingDependencyError

    dep = ctx.dependency("odn")
    try:
        net = dep.load_artifact(ODN_ARTIFACT, ctx.device)
    except MissingDependencyError:
        raise OdnbenchError(
            f"early-exit source=odn reads ODN's warm-up network (artifact {ODN_ARTIFACT!r}), which the odn result "
            f"{dep.key} does not have: it ran without a warm-up (odn.warmup_epochs=0), with "
            f"odn.save_warmup_exits=false, or before odnbench saved it. Delete that odn cell's folder to run it "
            f"again, or use early-exit.source=joint") from None
    if not isinstance(net, EarlyExitNet):
        raise OdnbenchError(f"the odn result {dep.key} stored {ODN_ARTIFACT!r} as a {type(net).__name__}, "
                            "not an odnbench EarlyExitNet")
    warm = (dep.result.method_info or {}).get("warmup") or {}
    return net, {"odn_key": dep.key, "warmup_epochs": warm.get("epochs"), "warmup_val_per_exit": warm.get("val_per_depth")}


def train_jointly(ctx):
    """A fresh backbone with a linear exit after every block, all trained together under the recipe
    (epochs, LR, schedule, patience); the weights kept are those of the epoch with the best mean
    validation top-1 over the exits."""
    import torch.nn.functional as F
    from torch import nn

    from odnbench.depthnet import EarlyExitNet

    backbone = ctx.build_backbone()
    net = EarlyExitNet.from_depthnet(backbone, [nn.Linear(w, backbone.num_classes) for w in backbone.widths],
                                     threshold=2.0)  # while training: every block and every exit runs
    net.meta["method"] = "early-exit"
    net = net.to(ctx.device)
    n = net.depth
    weights = [1.0] * n if ctx.params["loss_weights"] == "equal" else [(k + 1) / n for k in range(n)]

    def loss_fn(model, x, y):
        return sum(w * F.cross_entropy(out, y) for w, out in zip(weights, model.exit_logits(x)))

    per_exit: list[float] = []

    def eval_fn(model):
        per_exit[:] = exit_accuracies(ctx, model, "val")
        return sum(per_exit) / len(per_exit)

    fit = ctx.trainer.fit(net, label="early-exit joint (all exits)", loss_fn=loss_fn, eval_fn=eval_fn)
    return net, {**fit.summary(), "loss_weights": [round(w, 6) for w in weights]}


def all_exit_logits(ctx, net, split: str):
    """Every exit's logits on a split, one pass per batch (as the harness evaluates: eval mode, the
    cell's precision and memory format), and the labels."""
    import contextlib

    import torch

    s = getattr(ctx.splits, split)
    ex = ctx.trainer.execution
    batch = ctx.recipe.eval_batch_size
    was_training = net.training
    net.eval()
    outs: list[list[torch.Tensor]] = [[] for _ in range(net.depth)]
    with torch.inference_mode(), (ex.autocast() if ex is not None else contextlib.nullcontext()):
        for start in range(0, len(s.y), batch):
            xb = s.x[start:start + batch]
            for k, logits in enumerate(net.exit_logits(ex.input(xb) if ex is not None else xb)):
                outs[k].append(logits.float())
    net.train(was_training)
    return [torch.cat(o) for o in outs], s.y


def exit_accuracies(ctx, net, split: str) -> list[float]:
    logits, y = all_exit_logits(ctx, net, split)
    return [100.0 * float((out.argmax(1) == y).float().mean()) for out in logits]


def sweep_validation(ctx, net, thresholds: list[float]) -> tuple[list[dict[str, Any]], list[float]]:
    """For each τ, on validation only: top-1, the mean MACs per image spent and where images left
    (the rule of ``EarlyExitNet.run_exits``, from one pass: ``first_exits``); and each exit's top-1."""
    import torch

    from odnbench.depthnet import first_exits
    from odnbench.metrics import exit_flops

    logits, y = all_exit_logits(ctx, net, "val")
    per_exit_macs = torch.tensor([f // 2 for f in exit_flops(net, ctx.input_shape)], dtype=torch.float64)
    stacked = torch.stack(logits, dim=1)  # images x exits x classes
    rows = torch.arange(len(y), device=y.device)
    sweep = []
    for t in thresholds:
        where = first_exits(logits, t)
        correct = stacked[rows, where].argmax(1) == y
        shares = torch.bincount(where.cpu(), minlength=net.depth).double() / max(1, len(y))
        sweep.append({"threshold": t, "val_top1": round(100.0 * float(correct.double().mean()), 4),
                      "val_mean_macs": round(float((shares * per_exit_macs).sum()), 3),
                      "val_shares": [round(float(v), 6) for v in shares]})
    return sweep, [round(100.0 * float((out.argmax(1) == y).double().mean()), 4) for out in logits]


def export(ctx, net, thresholds: list[float], source_info: dict[str, Any]):
    from odnbench import CurvePoint, MethodOutput

    sweep, per_exit_val = sweep_validation(ctx, net, thresholds)
    chosen = choose(sweep, ctx.params["tolerance"])
    say = ctx.progress.line
    for s in sweep:
        say(f"early-exit τ={s['threshold']:g}: val top-1 {s['val_top1']:.2f}, {s['val_mean_macs']:,.0f} MACs per image"
            f"{'  <- exported' if s is chosen else ''}")
    curve = [CurvePoint(net.with_threshold(s["threshold"]), label=f"τ={s['threshold']:g}", info={
        **s, "chosen": s is chosen}) for s in sweep]
    if ctx.params["static"]:
        curve += [CurvePoint(net.cut(k), depth=k, label=f"exit {k} alone (static)", info={"exit": k, "val_top1": v})
                  for k, v in enumerate(per_exit_val, start=1)]
    info = {"source": ctx.params["source"], **source_info, "exits": net.depth, "threshold": chosen["threshold"],
            "tolerance": ctx.params["tolerance"], "sweep": sweep, "val_top1_per_exit": per_exit_val}
    return MethodOutput(net.with_threshold(chosen["threshold"]), info, depth=net.depth, curve=curve)


@hookimpl
def register_methods(register):
    register(EarlyExit())

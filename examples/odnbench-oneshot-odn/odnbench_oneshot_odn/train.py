"""Joint multi-exit training and the one-shot depth choice (imported inside ``run``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odnbench import MethodOutput
from odnbench.data import Split, batches
from odnbench.depthnet import DepthNet


class MultiExit(nn.Module):
    """A DepthNet with a private linear head after every block (the last one is its own head)."""

    def __init__(self, net: DepthNet):
        super().__init__()
        self.net = net
        self.heads = nn.ModuleList([nn.Linear(w, net.num_classes) for w in net.widths[:-1]] + [net.head])

    def exit_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [head(f) for head, f in zip(self.heads, self.net.block_outputs(x))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.exit_logits(x)[-1]


def summed_loss(model: MultiExit, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """ODN's warm-up loss: the unweighted sum of every head's cross-entropy."""
    return sum(F.cross_entropy(logits, y) for logits in model.exit_logits(x))


@torch.inference_mode()
def exit_accuracies(model: MultiExit, split: Split, batch_size: int) -> list[float]:
    """Top-1 % of every head on ``split``, in one pass per batch."""
    was_training = model.training
    model.eval()
    correct = [0] * len(model.heads)
    for x, y in batches(split, batch_size):
        for i, logits in enumerate(model.exit_logits(x)):
            correct[i] += int((logits.argmax(1) == y).sum())
    model.train(was_training)
    return [100.0 * c / max(1, len(split)) for c in correct]


def resolve_threshold(ctx) -> dict:
    p = ctx.params
    if p["target"] is not None:
        return {"target_mode": "fixed", "target": p["target"], "tolerance": p["tolerance"],
                "threshold": round(p["target"] - p["tolerance"], 6), "full_val_top1": None}
    # The relative target could not be set without the full-depth model; odnbench counts what it
    # cost in this method's cost to obtain, as for every dependency.
    full_val = float(ctx.dependency("full").metrics["val_top1"])
    return {"target_mode": "relative", "target": full_val, "tolerance": p["relative_tolerance"],
            "threshold": round(full_val - p["relative_tolerance"], 6), "full_val_top1": full_val}


def choose_depth(val: list[float], threshold: float) -> tuple[int, bool]:
    """(k, reached): the shallowest depth at or above the threshold; else the most accurate one
    (the shallowest among equals), since nothing deeper helped."""
    for k, acc in enumerate(val, 1):
        if acc >= threshold:
            return k, True
    best = max(val)
    return val.index(best) + 1, False


def run_oneshot(ctx) -> MethodOutput:
    target = resolve_threshold(ctx)
    net = ctx.build_backbone()
    model = MultiExit(net).to(ctx.device)
    batch = ctx.recipe.eval_batch_size
    per_epoch: list[list[float]] = []

    def mean_exit_accuracy(m: MultiExit) -> float:
        # The checkpoint kept is the one best on average over all depths (validation only).
        accs = exit_accuracies(m, ctx.splits.val, batch)
        per_epoch.append([round(a, 2) for a in accs])
        return sum(accs) / len(accs)

    fit = ctx.trainer.fit(model, label="one-shot", epochs=ctx.params["epochs"], loss_fn=summed_loss,
                          eval_fn=mean_exit_accuracy, cost_part="joint training")
    val = exit_accuracies(model, ctx.splits.val, batch)  # the restored best checkpoint
    k, reached = choose_depth(val, target["threshold"])
    exported = net.truncated(k, head=model.heads[k - 1]).eval()
    ctx.progress.line(f"one-shot: validation top-1 per depth {[round(v, 2) for v in val]}; depth {k} of "
                      f"{net.depth} ({'meets' if reached else 'misses'} threshold {target['threshold']:.2f})")
    return MethodOutput(exported, {
        "optimal_depth": k,
        "blocks": net.depth,
        **target,
        "reached_target": reached,
        "exit_val": [round(v, 4) for v in val],
        "best_epoch": fit.best_epoch,
        "epochs": fit.epochs,
        "stopped": fit.stopped,
        "exit_val_per_epoch": per_epoch,
        "history": fit.history,
    }, depth=k, reached_target=reached, threshold=target["threshold"])

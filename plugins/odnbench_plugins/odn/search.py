"""The ODN procedure (../shared/odn-method.md sections 1-6), in three parts:

- :class:`MultiExitNet`: a :class:`DepthNet` plus a private head (pool + linear) after every block;
- :class:`OdnSchedule`: the expansion / stop / fine-tune decisions, fed one validation value per
  epoch and holding the LR. Pure: no model, no data, so it is tested on scripted curves;
- :func:`run_odn`: the real loop. Every epoch is one ``ctx.trainer.train_epoch`` and one
  ``ctx.trainer.evaluate`` (the shared loop's parts, with its cost accounting); the schedule
  decides what happens between epochs.

Choices where the notebooks leave room: the weights kept for a depth are those of its own best
epoch (also under the carry reading, where that epoch may not count as an improvement); fine-tuning
continues from the weights the search ended with (as "keep training" says), and the exported model
is the best checkpoint at the chosen depth, from the search or the fine-tune, at 0.01 % precision.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from odnbench import DepthNet, Improvement, OdnbenchError, PlateauLR, cosine_lr, set_lr
from odnbench.depthnet import EarlyExitNet
from odnbench_plugins.odn.params import resolve_target_mode

#: The artifact holding the warmed-up network with every head (``save_warmup_exits``).
WARMUP_EXITS = "warmup-exits"

# ---------------------------------------------------------------------------------------------
# The network with one exit per block


class MultiExitNet(nn.Module):
    """``backbone`` (a DepthNet) with ``heads[i] = Linear(widths[i], classes)`` after block i+1.

    ``forward`` runs depth ``active`` only (stem, blocks 1..active, head ``active``), so the
    shared trainer's plain cross-entropy and top-1 train and evaluate exactly that depth.
    The backbone's own full-depth head is not used (head N is private like the others).
    """

    def __init__(self, backbone: DepthNet):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Linear(w, backbone.num_classes) for w in backbone.widths)
        self.active = backbone.depth

    @property
    def depth(self) -> int:
        return self.backbone.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[self.active - 1](self.backbone.features(x, self.active))

    def exit_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every head, from one pass through all blocks."""
        return [head(f) for head, f in zip(self.heads, self.backbone.block_outputs(x))]

    def trainable_parameters(self) -> list[nn.Parameter]:
        # Everything but the unused full-depth head. Blocks beyond the active depth get no gradient,
        # and SGD skips parameters without one (no momentum, no weight decay): nothing is frozen.
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.head.")]

    def early_exit_net(self) -> EarlyExitNet:
        """Every block and every head as an anytime classifier (its modules shared, not copied)."""
        net = EarlyExitNet.from_depthnet(self.backbone, list(self.heads))
        net.meta["method"] = "odn"
        return net

    def cut(self, depth: int) -> DepthNet:
        """Standalone stem + blocks 1..depth + head ``depth`` (copies; no dead blocks, no other heads)."""
        net = self.backbone.truncated(depth, head=self.heads[depth - 1])
        net.meta["method"] = "odn"
        return net


def load_shallower(net: MultiExitNet, cut: DepthNet) -> None:
    """Copy the stem and blocks 1..k of ``cut`` (a depth-k model cut from ``net``) into ``net``."""
    net.backbone.stem.load_state_dict(cut.stem.state_dict())
    for mine, theirs in zip(net.backbone.blocks, cut.blocks):
        mine.load_state_dict(theirs.state_dict())


def summed_exit_loss(model: MultiExitNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The warm-up loss: unweighted sum of every head's cross-entropy."""
    return cast(torch.Tensor, sum(F.cross_entropy(logits, y) for logits in model.exit_logits(x)))


@torch.inference_mode()
def exit_accuracies(model: MultiExitNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512,
                    execution=None) -> list[float]:
    """Top-1 % of every head, one pass per batch; counted on the device and read once. ``execution``
    (the trainer's) sets precision and memory format as for every other evaluation."""
    was_training = model.training
    model.eval()
    correct = torch.zeros(model.depth, dtype=torch.int64, device=y.device)
    with execution.autocast() if execution is not None else contextlib.nullcontext():
        for start in range(0, len(y), batch_size):
            target = y[start:start + batch_size]
            xb = x[start:start + batch_size]
            logits = model.exit_logits(execution.input(xb) if execution is not None else xb)
            correct += torch.stack([(out.argmax(1) == target).sum() for out in logits])
    model.train(was_training)
    return [100.0 * c / max(1, len(y)) for c in correct.tolist()]


def warm_up(net: MultiExitNet, trainer, epochs: int, lr: float) -> dict:
    """Train all depths together (summed CE, SGD, cosine LR over ``epochs``); keep the last weights."""
    if epochs <= 0:
        return {"epochs": 0, "lr": lr, "val_per_depth": None, "sample_steps": 0, "seconds": 0.0}
    val = trainer.splits.val
    per_depth: list[float] = []

    def eval_fn(model):
        per_depth[:] = exit_accuracies(model, val.x, val.y, trainer.recipe.eval_batch_size,
                                       execution=trainer.execution)
        return sum(per_depth) / len(per_depth)  # mean over heads, for the progress line

    net.active = net.depth
    fit = trainer.fit(net, label="odn warm-up (all depths)", epochs=epochs, patience=None,
                      optimizer=trainer.make_optimizer(net.trainable_parameters(), lr), schedule="cosine",
                      loss_fn=summed_exit_loss, eval_fn=eval_fn, restore_best=False, cost_part="warm-up")
    return {"epochs": fit.epochs, "lr": lr, "val_per_depth": [round(v, 4) for v in per_depth],
            "sample_steps": fit.sample_steps, "seconds": round(fit.seconds, 3),
            "loss": [h["loss"] for h in fit.history]}


# ---------------------------------------------------------------------------------------------
# The decisions, as a pure state machine


@dataclass
class Step:
    """What one validation value led to."""

    phase: str  # "search" or "fine-tune" (the phase the value belonged to)
    depth: int
    epoch: int  # epoch within this depth (search) or within fine-tuning
    val: float
    improved: bool  # counts as an improvement for patience and LR decay
    checkpoint: bool  # best so far at this depth (search) or of fine-tuning: keep these weights
    decayed: bool  # the LR was decayed after this epoch
    finished: str | None  # None; "depth" (converged, go deeper); "search" (optimal depth found); "fine-tune"


class OdnSchedule:
    """Expansion, stop and fine-tune decisions of ODN, fed one validation % per epoch.

    Search at depth k: a value rounded to ``search_digits`` that is strictly higher than the best
    so far is an improvement; the LR is x``decay_factor`` after every ``decay_patience`` epochs
    without one; the depth has converged after ``patience`` epochs without one (or after
    ``max_epochs_per_depth``). With ``best_reading="carry"`` the best so far starts at the best of
    all shallower depths (a deeper depth must beat them to improve); with ``"reset"`` it starts
    afresh. The stop check compares the depth's *own* best (rounded) with ``threshold``: stop at
    the first depth that reaches it, or at ``last_depth``. When: ``stop_rule="first"`` (the authors'
    code) checks every epoch and ends the depth in the epoch its reading first reaches the threshold
    (``stopped="threshold"``; no LR decay after that epoch, so fine-tuning starts at the LR that
    epoch trained with); ``"patience"`` checks only once the depth has converged, so the chosen depth
    runs a further patience window (and its LR decays) first. Each new depth starts at
    ``base_lr * next_depth_lr_factor`` (the first at ``base_lr``); the caller reloads the warm-up
    weights and makes a fresh optimiser whenever :attr:`fresh` is true.

    Fine-tune (when ``finetune``): same LR (already decayed), values rounded to
    ``finetune_digits``, best so far starting at the chosen depth's best, same patience rule.
    ``finetune_schedule="plateau"`` keeps the plateau decay (the paper); ``"cosine"`` anneals the LR
    to 0 over ``finetune_max_epochs`` instead (for short, capped fine-tunes that would otherwise end
    at a high LR).
    """

    def __init__(self, *, first_depth: int, last_depth: int, threshold: float, base_lr: float,
                 next_depth_lr_factor: float = 0.5, patience: int = 23, decay_factor: float = 0.6,
                 decay_patience: int = 5, max_epochs_per_depth: int | None = None, best_reading: str = "carry",
                 stop_rule: str = "first",
                 finetune: bool = True, finetune_patience: int | None = None,
                 finetune_max_epochs: int | None = None, finetune_schedule: str = "plateau",
                 search_digits: int = 1, finetune_digits: int = 2):
        if best_reading not in ("carry", "reset"):
            raise ValueError(f"best_reading must be carry or reset, got {best_reading!r}")
        if stop_rule not in ("first", "patience"):
            raise ValueError(f"stop_rule must be first or patience, got {stop_rule!r}")
        if finetune_schedule not in ("plateau", "cosine"):
            raise ValueError(f"finetune_schedule must be plateau or cosine, got {finetune_schedule!r}")
        if finetune and finetune_schedule == "cosine" and finetune_max_epochs is None:
            raise ValueError("a cosine fine-tune needs finetune_max_epochs (the length of the cosine)")
        if not 1 <= first_depth <= last_depth:
            raise ValueError(f"need 1 <= first_depth <= last_depth, got {first_depth}, {last_depth}")
        self.first_depth, self.last_depth, self.threshold = first_depth, last_depth, threshold
        self.base_lr, self.next_depth_lr_factor = base_lr, next_depth_lr_factor
        self.patience, self.decay_factor, self.decay_patience = patience, decay_factor, decay_patience
        self.max_epochs_per_depth, self.best_reading, self.stop_rule = max_epochs_per_depth, best_reading, stop_rule
        self.finetune = finetune and (finetune_max_epochs is None or finetune_max_epochs > 0)
        self.finetune_patience = patience if finetune_patience is None else finetune_patience
        self.finetune_max_epochs, self.finetune_schedule = finetune_max_epochs, finetune_schedule
        self.search_digits, self.finetune_digits = search_digits, finetune_digits
        self.carried = -math.inf  # best (rounded) over finished depths, for the carry reading
        self.depths: list[dict] = []  # one record per finished depth
        self.finetune_record: dict | None = None
        self.optimal_depth: int | None = None
        self.reached_target: bool | None = None
        self.phase = "search"
        self._start_depth(first_depth)

    # -- state -------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def fresh(self) -> bool:
        """True before the first epoch of a depth: reload the warm-up weights, new optimiser."""
        return self.phase == "search" and self.epoch == 0

    @property
    def lr(self) -> float:
        return self._plateau.lr

    def depth_lr(self, depth: int) -> float:
        return self.base_lr if depth == self.first_depth else self.base_lr * self.next_depth_lr_factor

    def _start_depth(self, depth: int) -> None:
        self.depth, self.epoch, self.decays = depth, 0, 0
        self._plateau = PlateauLR(self.depth_lr(depth), self.decay_factor, self.decay_patience)
        self._lr_start = self._plateau.lr
        start = self.carried if self.best_reading == "carry" else -math.inf
        self._tracker = Improvement(start, self.search_digits)
        self._carried_start = start
        self._own_raw: float | None  # the unrounded best of this depth's search, None before its first epoch
        self._own, self._own_raw, self._own_epoch = -math.inf, None, 0

    def _start_finetune(self) -> None:
        self.phase, self.epoch, self.decays = "fine-tune", 0, 0
        self._lr_start = self._plateau.lr  # continues with the decayed LR
        self._plateau = PlateauLR(self._lr_start, self.decay_factor, self.decay_patience)
        start = round(cast(float, self._own_raw), self.finetune_digits)  # fine-tuning follows a searched epoch
        self._tracker = Improvement(start, self.finetune_digits)
        self._ft_start, self._ft_best, self._ft_epoch = start, start, 0

    # -- one epoch ---------------------------------------------------------------------------
    def observe(self, val: float) -> Step:
        if self.done:
            raise RuntimeError("the ODN schedule is finished")
        self.epoch += 1
        phase, depth, epoch = self.phase, self.depth, self.epoch
        improved = self._tracker.update(val)
        if phase == "search":
            rounded = round(val, self.search_digits)
            checkpoint = rounded > self._own
            if checkpoint:
                self._own, self._own_raw, self._own_epoch = rounded, val, self.epoch
            patience, cap = self.patience, self.max_epochs_per_depth
        else:
            checkpoint = improved
            if improved:
                self._ft_best, self._ft_epoch = self._tracker.best, self.epoch
            patience, cap = self.finetune_patience, self.finetune_max_epochs
        # The authors' rule: the depth ends in this epoch, at the LR this epoch trained with (no decay after it).
        reached_now = phase == "search" and self.stop_rule == "first" and self._own >= self.threshold
        if reached_now:
            decayed = False
        elif phase == "fine-tune" and self.finetune_schedule == "cosine":
            # anneal from the search's (decayed) LR towards 0 over finetune_max_epochs, as the trainer's cosine
            self._plateau.lr = cosine_lr(self._lr_start, epoch, self.finetune_max_epochs)
            decayed = False
        else:
            decayed = self._plateau.step(improved)
            self.decays += decayed
        finished = None
        if reached_now:
            finished = self._finish("threshold")
        elif self._tracker.stale >= patience:
            finished = self._finish("patience")
        elif cap is not None and self.epoch >= cap:
            finished = self._finish("max_epochs")
        return Step(phase, depth, epoch, val, improved, checkpoint, decayed, finished)

    def _finish(self, stopped: str) -> str:
        if self.phase == "fine-tune":
            self.finetune_record = {
                "epochs": self.epoch, "start_val": self._ft_start, "best_val": self._ft_best,
                "best_epoch": self._ft_epoch, "improved": self._ft_best > self._ft_start, "stopped": stopped,
                "lr_start": self._lr_start, "lr_end": self.lr, "lr_decays": self.decays,
                "schedule": self.finetune_schedule,
            }
            self.phase = "done"
            return "fine-tune"
        reached = self._own >= self.threshold
        self.depths.append({
            "depth": self.depth, "best_val": self._own, "best_val_raw": self._own_raw,
            "best_epoch": self._own_epoch, "epochs": self.epoch, "stopped": stopped,
            "reached_threshold": reached, "lr_start": self._lr_start, "lr_end": self.lr,
            "lr_decays": self.decays, "carried_best": None if self._carried_start == -math.inf else self._carried_start,
        })
        if self.best_reading == "carry":
            self.carried = max(self.carried, self._tracker.best)
        if reached or self.depth >= self.last_depth:
            self.optimal_depth, self.reached_target = self.depth, reached
            if self.finetune:
                self._start_finetune()
            else:
                self.phase = "done"
            return "search"
        self._start_depth(self.depth + 1)
        return "depth"


#: ODN's parameters that set how one depth of the search trains (with ``lr``, its base LR): the
#: budget the oracle's ``schedule=odn`` trains every depth with, so that the two differ only in what
#: defines ODN (the warm start and the per-block heads).
DEPTH_BUDGET = ("lr", "max_epochs_per_depth", "lr_decay_factor", "lr_decay_patience", "patience", "stop_rule")


def depth_schedule(p: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`OdnSchedule`'s per-depth settings from ODN's parameters (the cap, plateau decay,
    convergence patience, stop rule and reading of a depth), shared by ODN's search and the oracle."""
    return {"max_epochs_per_depth": p["max_epochs_per_depth"], "decay_factor": p["lr_decay_factor"],
            "decay_patience": p["lr_decay_patience"], "patience": p["patience"], "stop_rule": p["stop_rule"],
            "search_digits": p["search_digits"]}


def train_depth_alone(trainer, model: nn.Module, p: Mapping[str, Any], *, depth: int, threshold: float,
                      base_lr: float, label: str) -> dict:
    """Train ``model`` (one depth, from the weights it has) as ODN's search trains a depth: the
    schedule of :func:`depth_schedule` from ``base_lr``, with the recipe's optimiser over all its
    parameters; no warm-up weights, no heads of other depths, no fine-tune. Loads the depth's best
    checkpoint (the schedule's reading) into ``model`` and returns the schedule's record of the
    depth (``best_val_raw``, ``epochs``, ``stopped``, ``lr_start``/``lr_end``, ...) with its history."""
    sched = OdnSchedule(first_depth=depth, last_depth=depth, threshold=threshold, base_lr=base_lr, finetune=False,
                        **depth_schedule(p))
    opt = trainer.make_optimizer(model.parameters(), sched.lr)
    best_state, history = None, []
    cap = p["max_epochs_per_depth"]
    while not sched.done:
        lr_now = sched.lr
        set_lr(opt, lr_now)
        stats = trainer.train_epoch(model, opt, label=f"{label} epoch {sched.epoch + 1}/{cap}", cost_part=label,
                                    position=(sched.epoch + 1, cap))
        step = sched.observe(trainer.evaluate(model, "val"))
        if step.checkpoint:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        history.append({"epoch": step.epoch, "loss": round(stats.loss, 5), "val": round(step.val, 4), "lr": lr_now,
                        "improved": step.improved, "decayed": step.decayed})
        trainer.progress.line(f"{label} epoch {step.epoch}/{cap} loss {stats.loss:.4f} val {step.val:.2f} "
                              f"lr {lr_now:.4g}{' -> LR decay' if step.decayed else ''} {stats.seconds:.1f}s")
    if best_state is not None:
        model.load_state_dict(best_state)
    return {**sched.depths[-1], "history": history}


# ---------------------------------------------------------------------------------------------
# The real loop


def epochs_left(sched: OdnSchedule, p: dict) -> int:
    """The most epochs the search and fine-tune may still train after the one about to run: the rest
    of this depth's cap, every deeper depth at its cap, then the fine-tune's cap (an upper bound: a
    depth ends sooner at the threshold or on patience). The grid's ETA multiplies it by the measured
    epoch time."""
    finetune = p["finetune_max_epochs"] if sched.finetune else 0
    if sched.phase == "fine-tune":
        return max(0, finetune - sched.epoch - 1)
    cap = p["max_epochs_per_depth"]
    return max(0, cap - sched.epoch - 1) + (sched.last_depth - sched.depth) * cap + finetune


def resolve_threshold(ctx, p: dict) -> dict:
    """threshold, target, tolerance and the resolved mode (see the plugin's docstring)."""
    mode = resolve_target_mode(p)
    if mode == "fixed":
        return {"target_mode": "fixed", "target": p["target"], "tolerance": p["tolerance"],
                "threshold": round(p["target"] - p["tolerance"], 6), "full_val_top1": None}
    # The full-depth model's training is part of ODN's cost here: the harness counted it already.
    full_val = float(ctx.dependency("full").metrics["val_top1"])
    return {"target_mode": "relative", "target": full_val, "tolerance": p["relative_tolerance"],
            "threshold": round(full_val - p["relative_tolerance"], 6), "full_val_top1": full_val}


def run_odn(ctx):
    from odnbench import MethodOutput
    from odnbench.metrics import count_params, saved_size_mb

    p = ctx.params
    target = resolve_threshold(ctx, p)
    net = MultiExitNet(ctx.build_backbone()).to(ctx.device)
    last = net.depth if p["max_depth"] is None else p["max_depth"]
    if not 1 <= p["start_depth"] <= last <= net.depth:
        raise OdnbenchError(f"odn.start_depth={p['start_depth']} / odn.max_depth={p['max_depth']}: this backbone "
                            f"has depths 1..{net.depth}")
    base_lr = ctx.recipe.lr if p["lr"] is None else p["lr"]
    say = ctx.progress.line

    say(f"ODN: threshold {target['threshold']:.2f}% ({target['target_mode']}: {target['target']:.2f} - "
        f"{target['tolerance']}), depths {p['start_depth']}..{last} of {net.depth}, best reading {p['best_reading']}, "
        f"stop rule {p['stop_rule']}, "
        f"deeper depths start from {'the warm-up' if p['start_from'] == 'warmup' else 'the previous depth'}")
    warm = warm_up(net, ctx.trainer, p["warmup_epochs"], p["warmup_lr"])
    if warm["epochs"] and p["save_warmup_exits"]:  # the multi-exit network early-exit (source=odn) reads
        ctx.save_model(WARMUP_EXITS, net.early_exit_net())
    warm_state = copy.deepcopy(net.state_dict())  # every depth restarts from these (start_from=previous: in part)

    sched = OdnSchedule(
        first_depth=p["start_depth"], last_depth=last, threshold=target["threshold"], base_lr=base_lr,
        next_depth_lr_factor=p["next_depth_lr_factor"], best_reading=p["best_reading"],
        finetune=p["finetune"], finetune_patience=p["finetune_patience"], finetune_max_epochs=p["finetune_max_epochs"],
        finetune_schedule=p["finetune_schedule"], finetune_digits=p["finetune_digits"],
        **depth_schedule(p),
    )
    trainer = ctx.trainer
    history, curve, spent = [], [], {}
    searched: list[tuple[int, DepthNet]] = []  # each depth's best search checkpoint, for the harness to measure
    best_cut, opt = None, None
    loop_epochs = 0  # search and fine-tune epochs so far (the grid's ETA: this, of at most this + epochs_left)
    while not sched.done:
        phase, depth = sched.phase, sched.depth
        if sched.fresh:
            net.load_state_dict(warm_state)
            if p["start_from"] == "previous" and best_cut is not None:
                load_shallower(net, best_cut)  # the previous depth's best stem and blocks; head k as warmed up
            net.active = depth
            opt = trainer.make_optimizer(net.trainable_parameters(), sched.lr)
            best_cut = None
        set_lr(opt, sched.lr)
        lr_now = sched.lr
        loop_epochs += 1
        stats = trainer.train_epoch(net, opt, label=f"odn {'depth' if phase == 'search' else 'fine-tune depth'} "
                                    f"{depth} epoch {sched.epoch + 1}", cost_part=phase,
                                    position=(loop_epochs, loop_epochs + epochs_left(sched, p)))
        step = sched.observe(trainer.evaluate(net, "val"))
        cost = spent.setdefault((phase, depth), {"sample_steps": 0, "seconds": 0.0})
        cost["sample_steps"] += stats.samples
        cost["seconds"] += stats.seconds
        if step.checkpoint:
            best_cut = net.cut(depth)
        loss = round(stats.loss, 5)
        history.append({"phase": phase, "depth": depth, "epoch": step.epoch, "loss": loss, "val": round(step.val, 4),
                        "lr": lr_now, "improved": step.improved, "checkpoint": step.checkpoint,
                        "decayed": step.decayed})
        say(f"{'depth' if phase == 'search' else 'fine-tune depth'} {depth} epoch {step.epoch}: loss {loss:.4f} "
            f"val {step.val:.2f} lr {lr_now:.4g}{' *' if step.improved else ''}{' -> LR decay' if step.decayed else ''}"
            f" {stats.seconds:.1f}s")
        if step.finished in ("depth", "search"):
            rec = dict(sched.depths[-1])
            rec.update(sample_steps=cost["sample_steps"], seconds=round(cost["seconds"], 3),
                       params=count_params(best_cut), size_mb=round(saved_size_mb(best_cut), 6), model_file=None)
            if p["save_depth_models"]:  # recorded in the result's artifacts as depth-K
                rec["model_file"] = ctx.save_model(f"depth-{depth}", best_cut).name
            curve.append(rec)
            searched.append((depth, best_cut))
            verdict = ">=" if rec["reached_threshold"] else "<"
            nxt = (f"depth {sched.depth}" if step.finished == "depth"
                   else f"optimal depth {depth}" + (", fine-tuning" if sched.phase == "fine-tune" else ""))
            how = {"threshold": "reached the threshold", "patience": "converged"}.get(rec["stopped"],
                                                                                 "hit max_epochs_per_depth")
            say(f"depth {depth} {how} after "
                f"{rec['epochs']} epochs: best val {rec['best_val']} {verdict} threshold {target['threshold']:.2f}"
                f" -> {nxt}")
        elif step.finished == "fine-tune":
            ft = sched.finetune_record
            say(f"fine-tune done after {ft['epochs']} epochs: best val {ft['best_val']} (from {ft['start_val']})")

    k = sched.optimal_depth
    model = best_cut  # the best checkpoint at depth k (search or fine-tune)
    parts = ctx.cost.parts
    capped = [r["depth"] for r in curve if r["stopped"] == "max_epochs"]
    ft_capped = bool(sched.finetune_record and sched.finetune_record["stopped"] == "max_epochs")
    cut_short = None
    if capped or ft_capped:
        cut_short = "; ".join(filter(None, [
            f"depth(s) {', '.join(map(str, capped))} hit max_epochs_per_depth before patience" if capped else "",
            "fine-tuning hit finetune_max_epochs before patience" if ft_capped else ""]))
    info = {
        "optimal_depth": k,
        "max_depth": last,
        "blocks": net.depth,
        "start_depth": p["start_depth"],
        **target,
        "best_reading": p["best_reading"],
        "stop_rule": p["stop_rule"],
        "start_from": p["start_from"],
        "reached_target": sched.reached_target,
        "base_lr": base_lr,
        "depth_curve": curve,
        "depth_models": [r["model_file"] for r in curve if r["model_file"]],
        "warmup": warm,
        "warmup_epochs": warm["epochs"],
        "search_epochs": sum(r["epochs"] for r in curve),
        "finetune": sched.finetune_record,
        "finetune_epochs": sched.finetune_record["epochs"] if sched.finetune_record else 0,
        "final_val": (sched.finetune_record or {}).get("best_val", curve[-1]["best_val_raw"]),
        "search_cost": {
            **{part: dict(parts[part]) for part in ("warm-up", "search", "fine-tune") if part in parts},
            "total": {"epochs": ctx.cost.epochs, "sample_steps": ctx.cost.sample_steps,
                      "train_seconds": round(ctx.cost.train_seconds, 3)},
        },
        "cut_short": cut_short,
        "history": history,
    }
    say(f"ODN: optimal depth {k} of {net.depth} ({'reached' if sched.reached_target else 'did not reach'} "
        f"threshold {target['threshold']:.2f}), {ctx.cost.epochs} epochs in all")
    return MethodOutput(model, info, depth=k, reached_target=sched.reached_target, threshold=target["threshold"],
                        tolerance=target["tolerance"],
                        converged=cut_short is None, cut_short=cut_short,
                        depth_curve=[{"depth": r["depth"], "val": r["best_val"]} for r in curve],
                        curve=depth_points(searched, curve, k))


def depth_points(searched: list, curve: list[dict], chosen: int) -> list:
    """Every depth the search tried, as a model for the harness to measure (test top-1, size, MACs):
    the depth's best search checkpoint, before any fine-tune. Depths below the chosen one are the
    search's intermediate models, not models ODN would export."""
    from odnbench import CurvePoint

    records = {r["depth"]: r for r in curve}
    points = []
    for depth, model in searched:
        r = records[depth]
        role = "chosen depth (before fine-tune)" if depth == chosen else (
            "intermediate depth of the search" if depth < chosen else "deeper than chosen")
        points.append(CurvePoint(model, depth=depth, label=f"odn search, depth {depth}: {role}", info={
            "best_val": r["best_val"], "best_val_raw": r["best_val_raw"], "epochs": r["epochs"],
            "sample_steps": r["sample_steps"], "seconds": r["seconds"], "stopped": r["stopped"],
            "reached_threshold": r["reached_threshold"], "chosen": depth == chosen,
            "intermediate": depth < chosen}))
    return points

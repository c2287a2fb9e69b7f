"""The shared training loop that methods reuse, with cost accounting built in.

One :class:`Trainer` per cell. ``fit`` trains a model on the cell's training split with the
recipe's optimiser and schedule, evaluates on validation after every epoch, checkpoints the
best epoch in memory, stops early on patience, and adds epochs, sample-steps and wall time to
the cell's :class:`CostMeter`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from odnbench.data import Splits, batches
from odnbench.metrics import top1
from odnbench.progress import Progress


@dataclass
class CostMeter:
    """Cost to obtain a model: epochs and sample-steps trained and training wall seconds.

    ``parts`` breaks the total down (e.g. "warm-up", "search", "fine-tune", or the full-depth
    training a pruned model started from); totals include every part.
    """

    epochs: int = 0
    sample_steps: int = 0
    train_seconds: float = 0.0
    parts: dict[str, dict] = field(default_factory=dict)

    def add(self, part: str, epochs: int = 0, sample_steps: int = 0, train_seconds: float = 0.0) -> None:
        self.epochs += epochs
        self.sample_steps += sample_steps
        self.train_seconds += train_seconds
        entry = self.parts.setdefault(part, {"epochs": 0, "sample_steps": 0, "train_seconds": 0.0})
        entry["epochs"] += epochs
        entry["sample_steps"] += sample_steps
        entry["train_seconds"] += train_seconds

    def add_result_cost(self, part: str, cost: dict) -> None:
        """Count another result's whole cost (e.g. the full-depth model a method started from)."""
        self.add(part, cost.get("epochs", 0), cost.get("sample_steps", 0), cost.get("train_seconds", 0.0))

    def as_dict(self, device: str) -> dict:
        rounded = {k: {**v, "train_seconds": round(v["train_seconds"], 3)} for k, v in self.parts.items()}
        return {"epochs": self.epochs, "sample_steps": self.sample_steps,
                "train_seconds": round(self.train_seconds, 3), "device": device, "parts": rounded}


class Improvement:
    """Tracks the best validation accuracy, optionally rounded (ODN rounds to 0.1 % while searching).

    A strictly higher (rounded) value is an improvement; ``stale`` counts epochs since the last one.
    """

    def __init__(self, best: float = -math.inf, digits: int | None = None):
        self.best = best
        self.digits = digits
        self.stale = 0

    def update(self, value: float) -> bool:
        v = round(value, self.digits) if self.digits is not None else value
        if v > self.best:
            self.best = v
            self.stale = 0
            return True
        self.stale += 1
        return False


class PlateauLR:
    """Multiply the LR by ``factor`` after every ``patience`` consecutive epochs without improvement."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int):
        self.optimizer, self.factor, self.patience = optimizer, factor, patience
        self.flat = 0

    def step(self, improved: bool) -> bool:
        self.flat = 0 if improved else self.flat + 1
        if self.flat >= self.patience:
            for group in self.optimizer.param_groups:
                group["lr"] *= self.factor
            self.flat = 0
            return True
        return False


@dataclass
class FitResult:
    best_val: float
    best_epoch: int
    epochs: int
    stopped: str  # "patience" or "max_epochs"
    history: list[dict]
    optimizer: torch.optim.Optimizer
    sample_steps: int
    seconds: float


    def summary(self) -> dict:
        """What a method usually reports about one training run (its method_info)."""
        return {"best_val": self.best_val, "best_epoch": self.best_epoch, "epochs": self.epochs,
                "stopped": self.stopped, "history": self.history}


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
EvalFn = Callable[[nn.Module], float]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


class Trainer:
    def __init__(self, splits: Splits, recipe, device: torch.device, progress: Progress,
                 cost: CostMeter, seed: int):
        self.splits, self.recipe, self.device = splits, recipe, device
        self.progress, self.cost = progress, cost
        self.generator = torch.Generator().manual_seed(seed)

    def make_optimizer(self, parameters, lr: float | None = None) -> torch.optim.Optimizer:
        r = self.recipe
        lr = r.lr if lr is None else lr
        if r.optimizer == "adamw":
            return torch.optim.AdamW(parameters, lr=lr, weight_decay=r.weight_decay)
        return torch.optim.SGD(parameters, lr=lr, momentum=r.momentum, weight_decay=r.weight_decay)

    def evaluate(self, model: nn.Module, split: str = "val") -> float:
        s = getattr(self.splits, split)
        return top1(model, s.x, s.y, self.recipe.eval_batch_size)

    def fit(
        self,
        model: nn.Module,
        *,
        label: str = "train",
        epochs: int | None = None,
        patience: int | None = -1,
        lr: float | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        schedule: str | None = None,
        loss_fn: LossFn = cross_entropy,
        eval_fn: EvalFn | None = None,
        round_digits: int | None = None,
        best: float = -math.inf,
        restore_best: bool = True,
        cost_part: str | None = None,
    ) -> FitResult:
        """Train ``model`` and return what happened.

        ``patience=-1`` takes the recipe's, ``None`` disables early stopping. ``optimizer``
        continues an earlier run with its (possibly decayed) LR. ``best`` is the value to beat
        (ODN carries it across depths). ``eval_fn`` defaults to top-1 on validation.
        """
        r = self.recipe
        epochs = r.epochs if epochs is None else epochs
        patience = r.patience if patience == -1 else patience
        schedule = r.schedule if schedule is None else schedule
        eval_fn = eval_fn or (lambda m: self.evaluate(m, "val"))
        model.to(self.device)
        opt = optimizer or self.make_optimizer(model.parameters(), lr)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)) if schedule == "cosine" else None
        plateau = PlateauLR(opt, r.plateau_factor, r.plateau_patience) if schedule == "plateau" else None
        tracker = Improvement(best, round_digits)
        best_state = copy.deepcopy(model.state_dict()) if restore_best else None
        best_epoch, history, steps, stopped = 0, [], 0, "max_epochs"
        train = self.splits.train
        n_batches = math.ceil(len(train) / r.batch_size)
        started = time.perf_counter()
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            model.train()
            total_loss, seen = 0.0, 0
            with self.progress.bar(n_batches, f"{label} epoch {epoch}/{epochs}") as advance:
                for x, y in batches(train, r.batch_size, shuffle=True, generator=self.generator,
                                    augment=self.splits.info.augment):
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(model, x, y)
                    loss.backward()
                    opt.step()
                    total_loss += loss.item() * len(y)
                    seen += len(y)
                    advance()
            steps += seen
            lr_now = opt.param_groups[0]["lr"]
            val = eval_fn(model)
            improved = tracker.update(val)
            if improved:
                best_epoch = epoch
                if restore_best:
                    best_state = copy.deepcopy(model.state_dict())
            if cosine:
                cosine.step()
            decayed = plateau.step(improved) if plateau else False
            history.append({"epoch": epoch, "loss": round(total_loss / max(1, seen), 5), "val": round(val, 4),
                            "lr": lr_now, "improved": improved})
            self.progress.line(
                f"{label} epoch {epoch}/{epochs} loss {total_loss / max(1, seen):.4f} val {val:.2f} "
                f"(best {tracker.best:.2f}) lr {lr_now:.4g}{' -> decay' if decayed else ''} "
                f"{time.perf_counter() - t0:.1f}s"
            )
            if patience is not None and tracker.stale >= patience:
                stopped = "patience"
                break
        seconds = time.perf_counter() - started
        if restore_best and best_state is not None and best_epoch > 0:
            model.load_state_dict(best_state)
        self.cost.add(cost_part or label, epochs=len(history), sample_steps=steps, train_seconds=seconds)
        return FitResult(tracker.best, best_epoch, len(history), stopped, history, opt, steps, seconds)

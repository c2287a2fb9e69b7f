"""The shared training loop that methods reuse, with cost accounting built in.

One :class:`Trainer` per cell. ``fit`` trains a model on the cell's training split with the
recipe's optimiser and schedule, evaluates on validation after every epoch, checkpoints the
best epoch in memory, stops early on patience, and adds epochs, sample-steps and wall time to
the cell's :class:`CostMeter`. Methods that decide between epochs themselves use its parts,
:meth:`Trainer.train_epoch` and :meth:`Trainer.evaluate`, with the public schedules
(:class:`Improvement`, :class:`PlateauLR`, :func:`cosine_lr`, :func:`set_lr`).
"""

from __future__ import annotations

import math
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from odnbench.data import Splits, batches
from odnbench.errors import DivergedError, OdnbenchDeprecationWarning
from odnbench.execution import Execution
from odnbench.metrics import count_macs, top1
from odnbench.progress import Progress

#: Forward-only passes that cost as much as one training sample-step (forward 1 + backward ~2).
FORWARDS_PER_STEP = 3


@dataclass
class CostMeter:
    """Cost to obtain a model: epochs and sample-steps trained, training compute and wall seconds.

    ``parts`` breaks the total down: the method's own parts (e.g. "warm-up", "search",
    "fine-tune") and one part per dependency it used (e.g. the full-depth training a pruned model
    started from). The harness adds every dependency's cost before the method runs, each stored
    result once (by its key), so that two dependencies sharing a third count it once. Totals
    include every part; ``own`` is the method's own share.

    ``train_macs`` is the training compute: for every training step, the forward MACs of the network
    being trained (as it stood at that step: ODN's network at its active depth, a pruned network
    at its current width) × samples × :data:`FORWARDS_PER_STEP` (forward + backward), plus
    ``samples × macs`` for forward-only passes that declare their MACs (:meth:`add_forward`). A
    dependency stored before it was recorded (odnbench 0.1) has none: the total is then None
    (unknown) and ``train_macs_unknown`` names those dependencies; ``own`` is still exact.
    """

    epochs: int = 0
    sample_steps: int = 0
    train_seconds: float = 0.0
    train_macs: int = 0
    parts: dict[str, dict] = field(default_factory=dict)
    dependencies: dict[str, dict] = field(default_factory=dict)  # result key -> {method, epochs, ...}
    own: dict = field(default_factory=lambda: {"epochs": 0, "sample_steps": 0, "train_seconds": 0.0,
                                               "train_macs": 0})
    train_macs_unknown: list[str] = field(default_factory=list)  # dependency keys without a train_macs

    def add(self, part: str, epochs: int = 0, sample_steps: int = 0, train_seconds: float = 0.0,
            train_macs: int = 0) -> None:
        """Count work the method itself did (``train_macs``: its compute, see the class doc)."""
        self._count(part, epochs, sample_steps, train_seconds, train_macs)
        self.own["epochs"] += epochs
        self.own["sample_steps"] += sample_steps
        self.own["train_seconds"] += train_seconds
        self.own["train_macs"] += int(train_macs)

    def _count(self, part: str, epochs: int, sample_steps: int, train_seconds: float, train_macs: int | None) -> None:
        self.epochs += epochs
        self.sample_steps += sample_steps
        self.train_seconds += train_seconds
        entry = self.parts.setdefault(part, {"epochs": 0, "sample_steps": 0, "train_seconds": 0.0,
                                             "train_macs": 0})
        entry["epochs"] += epochs
        entry["sample_steps"] += sample_steps
        entry["train_seconds"] += train_seconds
        if train_macs is None or entry["train_macs"] is None:
            entry["train_macs"] = None
        else:
            self.train_macs += int(train_macs)
            entry["train_macs"] += int(train_macs)

    def add_result_cost(self, part: str, cost: dict) -> None:
        """Deprecated (odnbench 0.1's way to count a dependency's cost): the harness counts every
        dependency's cost, once, before ``run`` starts, so this only warns (counting it again would
        count it twice). Removed in odnbench 0.3.0."""
        warnings.warn("ctx.cost.add_result_cost(...): the harness already counts each dependency's cost (once); "
                      "remove the call (it does nothing). It is removed in odnbench 0.3.0.",
                      OdnbenchDeprecationWarning, stacklevel=2)

    def add_forward(self, part: str, samples: int, train_seconds: float = 0.0, macs: int | None = None) -> None:
        """Count forward-only passes over ``samples`` images (a teacher's logits, features for a probe).

        One training sample-step is a forward and a backward pass, and the backward costs about twice
        the forward, so :data:`FORWARDS_PER_STEP` (3) forward-only passes count as one sample-step
        (rounded up); no epochs. ``macs``: forward MACs per image of the network run, when known
        (adds ``samples × macs`` to ``train_macs``). ``train_seconds``: its wall time when not already
        inside a timed epoch. Validation passes (model selection) are not counted, for any method."""
        self.add(part, sample_steps=-(-int(samples) // FORWARDS_PER_STEP), train_seconds=train_seconds,
                 train_macs=int(samples) * int(macs or 0))

    def add_dependency(self, key: str, method: str, cost: dict) -> None:
        """Count a stored result this cell needed, and everything it needed, each key once."""
        cost = cost or {}
        nested = cost.get("dependencies") or {}
        own = cost.get("own") or (cost if not nested else {})  # a 0.1 result carries totals only
        entries = {key: {"method": method, **_cost_numbers(own)}}
        for dep_key, entry in nested.items():
            entries.setdefault(dep_key, {"method": entry.get("method", "?"), **_cost_numbers(entry)})
        for dep_key, entry in entries.items():
            if dep_key in self.dependencies:
                continue
            self.dependencies[dep_key] = entry
            if entry["train_macs"] is None:
                self.train_macs_unknown.append(dep_key)
            self._count(f"{entry['method']} (dependency)", entry["epochs"], entry["sample_steps"],
                        entry["train_seconds"], entry["train_macs"])

    def as_dict(self, device: str) -> dict:
        rounded = {k: {**v, "train_seconds": round(v["train_seconds"], 3)} for k, v in self.parts.items()}
        return {"epochs": self.epochs, "sample_steps": self.sample_steps,
                "train_seconds": round(self.train_seconds, 3),
                "train_macs": None if self.train_macs_unknown else self.train_macs,
                "device": device, "parts": rounded,
                "own": {**self.own, "train_seconds": round(self.own["train_seconds"], 3)},
                "dependencies": {k: {**v, "train_seconds": round(v["train_seconds"], 3)}
                                 for k, v in self.dependencies.items()}}


def _cost_numbers(cost: dict) -> dict:
    macs = cost.get("train_macs")
    return {"epochs": cost.get("epochs", 0), "sample_steps": cost.get("sample_steps", 0),
            "train_seconds": float(cost.get("train_seconds", 0.0)),
            "train_macs": macs if isinstance(macs, int) and not isinstance(macs, bool) else None}


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
    """An LR multiplied by ``factor`` after every ``patience`` consecutive epochs without improvement.

    It holds the LR value itself (``.lr``); apply it to an optimiser with :func:`set_lr`."""

    def __init__(self, lr: float, factor: float, patience: int):
        self.lr, self.factor, self.patience = lr, factor, patience
        self.flat = 0

    def step(self, improved: bool) -> bool:
        """Feed one epoch's verdict; True when the LR was decayed."""
        self.flat = 0 if improved else self.flat + 1
        if self.flat >= self.patience:
            self.lr *= self.factor
            self.flat = 0
            return True
        return False


def cosine_lr(base: float, epoch: int, total: int) -> float:
    """The LR after ``epoch`` of ``total`` epochs of cosine annealing from ``base`` to 0."""
    return base * (0.5 * (1 + math.cos(math.pi * epoch / max(1, total))))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class EpochStats:
    """One pass over the training split."""

    loss: float  # mean training loss
    samples: int
    seconds: float
    train_macs: int = 0  # its training compute, as counted in the CostMeter (see CostMeter)


@dataclass
class FitResult:
    best_val: float
    best_epoch: int
    epochs: int
    stopped: str  # "patience"; "max_epochs" (the cap came first); "fixed" (no early stopping asked)
    history: list[dict]
    optimizer: torch.optim.Optimizer
    sample_steps: int
    seconds: float
    #: This fit's training compute (MACs), counted as the CostMeter counts it (``CostMeter.train_macs``):
    #: what a method reports for one part of its work, e.g. ``info["finetune_macs"] = fit.train_macs``.
    train_macs: int = 0

    @property
    def converged(self) -> bool:
        return self.stopped != "max_epochs"

    def summary(self) -> dict:
        """What a method usually reports about one training run (its method_info)."""
        return {"best_val": self.best_val, "best_epoch": self.best_epoch, "epochs": self.epochs,
                "stopped": self.stopped, "history": self.history}


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
EvalFn = Callable[[nn.Module], float]


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the weights and buffers (on their device), cheaper than deepcopy of the state_dict."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


class Trainer:
    """The training loop every method shares, one per cell, with cost accounting built in.

    :meth:`fit` is the whole loop (epochs, validation, early stopping, best checkpoint);
    :meth:`train_epoch` and :meth:`evaluate` are its parts, for methods that decide between
    epochs themselves (ODN). Every epoch trained is added to the cell's :class:`CostMeter`.
    """

    def __init__(self, splits: Splits, recipe, device: torch.device, progress: Progress,
                 cost: CostMeter, seed: int, execution: Execution | None = None):
        self.splits, self.recipe, self.device = splits, recipe, device
        self.progress, self.cost = progress, cost
        # precision, memory format, compile: the harness passes the cell's; else the recipe's for this device
        self.execution = execution or Execution.for_recipe(recipe, device)
        self.generator = torch.Generator().manual_seed(seed)
        self.unconverged: list[str] = []  # labels of fits that the epoch cap ended before patience
        self.converged: list[str] = []  # labels of fits that patience ended
        self._compiled: dict[tuple, tuple] = {}  # (model id, loss id, plain attributes) -> compiled step
        self.epochs_trained = 0  # every epoch of this cell, for "diverged at epoch N"
        self._macs: dict[tuple, int] = {}  # (model id, plain attributes, parameter shapes) -> forward MACs

    def make_optimizer(self, parameters, lr: float | None = None,
                       weight_decay: float | None = None) -> torch.optim.Optimizer:
        """The recipe's optimiser; ``lr`` / ``weight_decay`` override the recipe's (e.g. 0 while a
        sparsity regulariser is the only penalty)."""
        r = self.recipe
        lr = r.lr if lr is None else lr
        wd = r.weight_decay if weight_decay is None else weight_decay
        if r.optimizer == "adamw":
            return torch.optim.AdamW(parameters, lr=lr, weight_decay=wd)
        return torch.optim.SGD(parameters, lr=lr, momentum=r.momentum, weight_decay=wd)

    def evaluate(self, model: nn.Module, split: str = "val") -> float:
        """Top-1 % of ``model`` on a split (``val`` for every decision a method makes)."""
        s = getattr(self.splits, split)
        return top1(model, s.x, s.y, self.recipe.eval_batch_size, execution=self.execution)

    def _compiled_loss(self, model: nn.Module, loss_fn: LossFn):
        """``loss_fn(model, x, y)`` through torch.compile (static shapes), one per model, loss and the
        model's plain attributes (ODN's active depth). Each gets a code object of its own: dynamo keeps
        at most 8 compiled variants per code object and runs eagerly past that, which one shared step
        function would reach after 8 ODN depths or cells."""
        plain = tuple(sorted((k, v) for k, v in vars(model).items()
                             if not k.startswith("_") and isinstance(v, (bool, int, float, str))))
        key = (id(model), id(loss_fn), plain)
        if key not in self._compiled:

            def step(x, y):
                return loss_fn(model, x, y)

            code = step.__code__.replace(co_name=f"odnbench_train_step_{len(self._compiled)}")
            step = types.FunctionType(code, step.__globals__, code.co_name, None, step.__closure__)
            compiled = torch.compile(step, dynamic=False, backend=self.execution.compile_backend)
            self._compiled[key] = (model, loss_fn, compiled)  # holding model and loss_fn keeps their ids unique
        return self._compiled[key][2]

    def forward_macs(self, model: nn.Module) -> int:
        """Forward MACs per image of ``model`` as it is now (metrics.count_macs), counted once per
        model, plain attributes (ODN's active depth: stem + blocks 1..k + head k) and parameter
        shapes (a pruned network is counted again)."""
        plain = tuple(sorted((k, v) for k, v in vars(model).items()
                             if not k.startswith("_") and isinstance(v, (bool, int, float, str))))
        key = (id(model), plain, tuple(tuple(p.shape) for p in model.parameters()))
        if key not in self._macs:
            info = self.splits.info
            self._macs[key] = count_macs(model, (info.channels, info.image_size, info.image_size))
        return self._macs[key]

    def train_epoch(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, loss_fn: LossFn | None = None,
                    label: str = "train", cost_part: str | None = None,
                    position: tuple[int, int] | None = None) -> EpochStats:
        """One shuffled pass over the training split with ``optimizer``; counted as one epoch of cost
        under ``cost_part`` (default ``label``). ``position``: (this epoch, the most epochs of the loop
        it is in), when known, for the grid's ETA (``fit`` passes it)."""
        r = self.recipe
        ex = self.execution
        loss_fn = loss_fn or cross_entropy
        compiled = self._compiled_loss(model, loss_fn) if ex.compile else None
        train = self.splits.train
        ex.model(model).train()
        started = time.perf_counter()
        # No host synchronisation inside the loop: the loss is summed on the device and read once.
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        seen = 0
        with self.progress.bar(math.ceil(len(train) / r.batch_size), label) as advance:
            for x, y in batches(train, r.batch_size, shuffle=True, generator=self.generator,
                                augment=self.splits.info.augment):
                x = ex.input(x)
                optimizer.zero_grad(set_to_none=True)
                with ex.autocast():
                    if compiled is not None and len(y) == r.batch_size:
                        loss = compiled(x, y)
                    else:  # eager: the default, and the short last batch (no second compilation)
                        loss = loss_fn(model, x, y)
                loss.backward()
                optimizer.step()
                total.add_(loss.detach(), alpha=len(y))  # in float64, as loss.double() * len(y) would be
                seen += len(y)
                advance()
        seconds = time.perf_counter() - started
        macs = seen * FORWARDS_PER_STEP * self.forward_macs(model)
        self.cost.add(cost_part or label, epochs=1, sample_steps=seen, train_seconds=seconds, train_macs=macs)
        self.epochs_trained += 1
        self.progress.epoch(*(position or (0, 0)), seconds)
        mean = float(total) / max(1, seen)
        if not math.isfinite(mean):  # one NaN/inf step poisons the sum, so one check per epoch sees it
            raise DivergedError(f"training diverged at epoch {self.epochs_trained} ({label}): the loss is {mean}; "
                                f"lower the learning rate (recipe.lr={r.lr:g}) or check the data")
        return EpochStats(mean, seen, seconds, macs)

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
        loss_fn: LossFn | None = None,
        eval_fn: EvalFn | None = None,
        round_digits: int | None = None,
        best: float = -math.inf,
        restore_best: bool = True,
        cost_part: str | None = None,
    ) -> FitResult:
        """Train ``model`` and return what happened.

        ``patience=-1`` takes the recipe's, ``None`` disables early stopping. ``optimizer``
        continues an earlier run with its (possibly decayed) LR. ``best`` is the value to beat.
        ``eval_fn`` defaults to top-1 on validation.
        """
        r = self.recipe
        epochs = r.epochs if epochs is None else epochs
        patience = r.patience if patience == -1 else patience
        schedule = r.schedule if schedule is None else schedule
        eval_fn = eval_fn or (lambda m: self.evaluate(m, "val"))
        self.execution.model(model)
        opt = optimizer or self.make_optimizer(model.parameters(), lr)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs)) if schedule == "cosine" else None
        plateau = (PlateauLR(opt.param_groups[0]["lr"], r.plateau_factor, r.plateau_patience)
                   if schedule == "plateau" else None)
        tracker = Improvement(best, round_digits)
        best_state = None  # set at the first improvement; without one there is nothing to restore
        best_epoch, history, steps, seconds, macs = 0, [], 0, 0.0, 0
        stopped = "fixed" if patience is None else "max_epochs"
        for epoch in range(1, epochs + 1):
            lr_now = opt.param_groups[0]["lr"]
            stats = self.train_epoch(model, opt, loss_fn=loss_fn, label=f"{label} epoch {epoch}/{epochs}",
                                     cost_part=cost_part or label, position=(epoch, epochs))
            steps += stats.samples
            seconds += stats.seconds
            macs += stats.train_macs
            val = eval_fn(model)
            improved = tracker.update(val)
            if improved:
                best_epoch = epoch
                if restore_best:
                    best_state = _snapshot(model)
            decayed = False
            if cosine:
                cosine.step()
            elif plateau:
                decayed = plateau.step(improved)
                set_lr(opt, plateau.lr)
            history.append({"epoch": epoch, "loss": round(stats.loss, 5), "val": round(val, 4),
                            "lr": lr_now, "improved": improved})
            self.progress.line(
                f"{label} epoch {epoch}/{epochs} loss {stats.loss:.4f} val {val:.2f} "
                f"(best {tracker.best:.2f}) lr {lr_now:.4g}{' -> decay' if decayed else ''} {stats.seconds:.1f}s"
            )
            if patience is not None and tracker.stale >= patience:
                stopped = "patience"
                break
        if restore_best and best_state is not None and best_epoch > 0:
            model.load_state_dict(best_state)
        if stopped == "max_epochs":
            self.unconverged.append(label)
        elif stopped == "patience":
            self.converged.append(label)
        return FitResult(tracker.best, best_epoch, len(history), stopped, history, opt, steps, seconds, macs)

"""The ``autogrow`` method: AutoGrow (Wen, Yan, Chen, Li; KDD 2020, arXiv 1906.02909), periodic growth
(p-AutoGrow), the closest prior work to ODN (../shared/depth-baselines.md).

The network starts with one residual block per stage (the first block of each stage of the cell's
backbone: it changes the width, so a stage cannot have fewer). Every ``interval`` (K) epochs a block is
added at the end of the stages that are still growing, and the training goes on from the weights it has,
with the optimiser's state carried over for every parameter that was there before. Two ways to stop:

- ``stop=saturation`` (AutoGrow's own): a growth that did not raise the best validation top-1 by at
  least ``threshold`` (τ, points) stops the stages it grew for good (the official code's moving-maximum
  reading, over the interval after the growth);
- ``stop=target`` (ODN's rule): growth goes on, whatever the gain, until the rounded validation top-1
  first reaches ODN's threshold (``target`` - ``tolerance``, or the full model's validation top-1 -
  ``relative_tolerance``; the same presets as ``odn``) in some epoch.

A stage also stops at ``max_blocks`` (default: as many blocks as that stage of the backbone has, so the
grown network is never deeper than the backbone ODN searches). ``growth=all`` gives every growing stage a
block at each step (the paper's p-AutoGrow as described); ``growth=stage`` grows one stage per step, round
robin, and stops only the stage whose growth did not pay (the official code's default ``group`` mode).

A new block starts from fresh weights (the backbone's own block at that position when it has one, made
under ``recipe.init``) with the last BatchNorm of its residual branch set by ``init``: ``zero`` (weight and
bias 0: the block starts as an identity, ZeroInit), ``gauss`` (weight and bias drawn from N(0,
``init_std``²), GauInit, the paper's better one; 1.0 is the official code's default), or ``copy`` (every
tensor of the stage's current last block whose name and shape match is copied in, a Net2Net-style copy).

After growth stops the grown network trains on under the recipe (``final_epochs``, its schedule and
patience; the model is chosen on validation). Every epoch of the growth and of the final training is
counted in the cell's compute, each at the network as it stood. Each growth step's network is handed to
the harness as a curve point (measured like the main model).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from odnbench import Method, MethodOutput, OdnbenchError, Param, Requirement, hookimpl

SOURCE = "Wen, Yan, Chen, Li, AutoGrow, KDD 2020 (arXiv 1906.02909): Basic4ResNet, p-AutoGrow, K=3"
#: The paper's test top-1 (%) of the network p-AutoGrow grew (Basic4ResNet, K=3), by odnbench dataset name.
#: AutoGrow grows its own network, so the numbers stand beside every backbone's `paper` board.
PUBLISHED: dict[str, float] = {"mnist": 99.66, "fashion-mnist": 94.62, "svhn": 97.32, "cifar10": 95.49}

#: ODN's target parameters, reused as declared there: ``stop=target`` stops where ODN would.
TARGET_PARAMS = ("target", "tolerance", "target_mode", "relative_tolerance")


def _odn_target_params() -> tuple[Param, ...]:
    from odnbench_plugins.odn.params import PARAMS

    by_name = {p.name: p for p in PARAMS}
    return tuple(by_name[name] for name in TARGET_PARAMS)


PARAMS = (
    Param("interval", int, 3, "Epochs between growth steps (K; the paper's main tables: 3)", ge=1, sweep=True),
    Param("threshold", float, 0.05, "stop=saturation: a growth that raises the best validation top-1 by less than "
          "this many points stops the stages it grew (τ)", ge=0, sweep=True),
    Param("growth", str, "all", "all: a block to every growing stage at each step; stage: one stage per step, round "
          "robin, and only that stage stops when its growth did not pay (the official code's group mode)",
          choices=("all", "stage")),
    Param("stop", str, "saturation", "saturation: AutoGrow's own stop (gain below threshold); target: grow until "
          "the validation top-1 reaches ODN's threshold (target/tolerance, or the full model's top-1 - "
          "relative_tolerance, as odn)", choices=("saturation", "target")),
    Param("init", str, "gauss", "The new block's last BatchNorm of its residual branch: zero (identity start, "
          "ZeroInit), gauss (N(0, init_std^2), GauInit), copy (the stage's last block copied where shapes match, "
          "Net2Net-style)", choices=("zero", "gauss", "copy")),
    Param("init_std", float, 1.0, "init=gauss: standard deviation of the new BatchNorm weight and bias (the "
          "official code's default 1.0)", gt=0),
    Param("max_blocks", int, None, "Most blocks per stage (none: the backbone's own count in each stage, never "
          "deeper than the backbone ODN searches); more than the backbone has repeats its stage's last block",
          nullable=True, ge=1),
    Param("max_growth_epochs", int, 60, "Cap on the epochs of the growth phase (reached = growth stops anyway)",
          ge=1),
    Param("lr", float, None, "LR while growing (constant; none = the recipe's lr)", nullable=True, gt=0),
    Param("final_epochs", int, None, "Epochs of training after growth stops, with the recipe's schedule and patience "
          "(none = recipe.epochs; 0 = none)", nullable=True, ge=0),
    Param("search_digits", int, 1, "stop=target: the validation % is rounded to this many decimals before the "
          "threshold check (ODN: 0.1 %)", ge=0, le=6),
    *_odn_target_params(),
)


def target_mode(params: Mapping[str, Any]) -> str | None:
    """``fixed``/``relative`` for stop=target (one-line error when inconsistent), None for saturation."""
    if params["stop"] != "target":
        return None
    mode = params["target_mode"]
    if mode == "auto":
        return "fixed" if params["target"] is not None else "relative"
    if mode == "fixed" and params["target"] is None:
        raise OdnbenchError("autogrow.target_mode=fixed needs autogrow.target (a validation top-1 %, e.g. "
                            "autogrow.target=99.5); or use autogrow.target_mode=relative")
    return mode


# ---------------------------------------------------------------------------------------------
# The decisions, as a pure state machine (no torch): tested on scripted curves


@dataclass
class GrowthStep:
    """What one epoch's validation top-1 led to."""

    epoch: int
    val: float
    grow: list[int] = field(default_factory=list)  # stages (0-based) that get a block now
    stopped: list[int] = field(default_factory=list)  # stages that stop growing now
    gain: float | None = None  # the last growth's gain, when it was judged in this epoch
    done: str | None = None  # why growth is over: target, saturated, max_blocks, max_epochs


class GrowthSchedule:
    """p-AutoGrow's decisions, fed one validation top-1 per epoch.

    ``blocks``: the starting blocks per stage; ``max_blocks``: the cap per stage. Every ``interval``
    epochs: first the last growth is judged (``stop="saturation"``: its gain, the best reading since it
    minus the best before it, below ``threshold`` stops the stages it grew), then the stages still growing
    and below their cap grow (all of them, or the next one round robin with ``growth="stage"``). With
    ``stop="target"`` the gain is not judged and growth ends in the first epoch whose reading, rounded to
    ``digits``, reaches ``target``. Growth also ends when no stage can grow, or after ``max_epochs`` (in that
epoch, before any growth).
    """

    def __init__(self, blocks: Sequence[int], max_blocks: Sequence[int], *, interval: int, threshold: float = 0.05,
                 growth: str = "all", stop: str = "saturation", target: float | None = None, digits: int = 1,
                 max_epochs: int | None = None):
        if growth not in ("all", "stage"):
            raise ValueError(f"growth must be all or stage, got {growth!r}")
        if stop not in ("saturation", "target"):
            raise ValueError(f"stop must be saturation or target, got {stop!r}")
        if stop == "target" and target is None:
            raise ValueError("stop=target needs a target")
        if len(blocks) != len(max_blocks) or any(b > m for b, m in zip(blocks, max_blocks)):
            raise ValueError(f"starting blocks {list(blocks)} exceed the caps {list(max_blocks)}")
        self.blocks, self.max_blocks = list(blocks), list(max_blocks)
        self.interval, self.threshold, self.growth, self.stop = interval, threshold, growth, stop
        self.target, self.digits, self.max_epochs = target, digits, max_epochs
        self.growing = [s for s in range(len(self.blocks)) if self.blocks[s] < self.max_blocks[s]]
        self.epoch = 0
        self.best = -math.inf  # best reading so far
        self.best_before: float | None = None  # best reading before the last growth (None: no growth yet)
        self.last_grown: list[int] = []
        self.next_stage = 0  # round robin (growth="stage")
        self.since = 0  # epochs since the last growth step
        self.done: str | None = None
        self.reached_target: bool | None = None if stop == "saturation" else False
        self.steps: list[dict] = []  # one record per growth step

    def observe(self, val: float) -> GrowthStep:
        if self.done:
            raise RuntimeError("the AutoGrow schedule is finished")
        self.epoch += 1
        self.since += 1
        self.best = max(self.best, val)
        step = GrowthStep(self.epoch, val)
        if self.target is not None and self.stop == "target" and round(val, self.digits) >= self.target:
            self.reached_target = True
            step.done = self.done = "target"
            return step
        if self.max_epochs is not None and self.epoch >= self.max_epochs:  # no growth that would go untrained
            step.done = self.done = "max_epochs"
            return step
        if self.since >= self.interval:
            self.since = 0
            if self.best_before is not None:
                step.gain = round(self.best - self.best_before, 6)
                if self.stop == "saturation" and step.gain < self.threshold:
                    step.stopped = [s for s in self.last_grown if s in self.growing]
                    self.growing = [s for s in self.growing if s not in step.stopped]
            self.growing = [s for s in self.growing if self.blocks[s] < self.max_blocks[s]]
            if not self.growing:
                step.done = self.done = "saturated" if self.stop == "saturation" and any(
                    self.blocks[s] < self.max_blocks[s] for s in range(len(self.blocks))) else "max_blocks"
                return step
            step.grow = self._pick()
            for s in step.grow:
                self.blocks[s] += 1
            self.best_before, self.last_grown = self.best, list(step.grow)
            self.steps.append({"epoch": self.epoch, "grew": [s + 1 for s in step.grow], "blocks": list(self.blocks),
                               "gain_of_previous": step.gain, "stopped": [s + 1 for s in step.stopped]})
        return step

    def _pick(self) -> list[int]:
        if self.growth == "all":
            return list(self.growing)
        n = len(self.blocks)
        for i in range(n):
            s = (self.next_stage + i) % n
            if s in self.growing:
                self.next_stage = (s + 1) % n
                return [s]
        return []  # pragma: no cover - growing is not empty here


# ---------------------------------------------------------------------------------------------
# The method


class AutoGrow(Method):
    name = "autogrow"
    description = ("AutoGrow (Wen et al. 2020): start at one block per stage, add a block every K epochs while it "
                   "pays (or until ODN's target), then train the grown network on")
    params = PARAMS
    follows_board_tolerance = "relative_tolerance"  # as ODN's, so that stop=target stops where ODN does

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        from odnbench_plugins.odn import ODN

        # ODN's targets for the preset, so that stop=target stops where ODN does.
        odn = {k: v for k, v in ODN().preset_defaults(preset, dataset).items() if k in TARGET_PARAMS}
        if preset == "smoke":
            return {**odn, "interval": 1, "max_growth_epochs": 3, "final_epochs": 1}
        if preset == "tiny":
            return {**odn, "interval": 1, "max_growth_epochs": 6}
        return odn

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        return [Requirement("full")] if target_mode(params) == "relative" else []  # checks at plan time too

    def reference_results(self, dataset: str, backbone: str) -> dict[str, Any] | None:
        top1 = PUBLISHED.get(dataset)
        # Compared on `paper`-preset boards only, as every paper's numbers.
        return {"top1": top1, "source": SOURCE, "preset": "paper"} if top1 is not None else None

    def run(self, ctx):
        return run_autogrow(ctx)


# ---------------------------------------------------------------------------------------------
# Growing a DepthNet


def last_branch_norm(block):
    """The last BatchNorm of a block's residual branch (outside its downsample shortcut), or None."""
    from torch import nn

    NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
    found = None
    for name, module in block.named_modules():
        if isinstance(module, NORMS) and not name.startswith("downsample"):
            found = module
    return found


def init_new_block(block, mode: str, previous=None, *, std: float = 1.0, generator=None) -> dict:
    """Set a fresh block up as ``mode`` says (see the module doc); returns what was done, for the record."""
    import torch

    if mode == "copy":
        if previous is None:
            raise ValueError("init=copy needs the previous block")
        theirs = previous.state_dict()
        mine = block.state_dict()
        copied = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
        block.load_state_dict(copied, strict=False)
        return {"copied_tensors": len(copied), "of": len(mine)}
    norm = last_branch_norm(block)
    if norm is None or norm.weight is None:
        raise OdnbenchError(f"autogrow.init={mode}: the new block ({type(block).__name__}) has no affine BatchNorm in "
                            "its residual branch; use autogrow.init=copy")
    with torch.no_grad():
        if mode == "zero":
            norm.weight.zero_()
            norm.bias.zero_()
        elif mode == "gauss":
            norm.weight.copy_(torch.randn(norm.weight.shape, generator=generator) * std)
            norm.bias.copy_(torch.randn(norm.bias.shape, generator=generator) * std)
        else:
            raise ValueError(f"unknown init {mode!r}")
    return {}


def assemble(stem, stages: Sequence[Sequence[Any]], stage_widths: Sequence[int], head, pool, meta: dict,
             num_classes: int):
    """A DepthNet of ``stem`` + the stages' blocks + ``head``, sharing their modules (and parameters)."""
    from odnbench import DepthNet

    blocks = [b for stage in stages for b in stage]
    widths = [w for stage, w in zip(stages, stage_widths) for _ in stage]
    return DepthNet(stem, blocks, widths, head, {**meta, "stages": [len(s) for s in stages]},
                    stages=[len(s) for s in stages], num_classes=num_classes, pool=pool)


def carry_optimizer(trainer, old, model, lr: float):
    """A fresh optimiser over ``model``'s parameters that keeps ``old``'s state (momentum) for every
    parameter ``old`` had: the grown network shares the tensors of the old one, so a parameter keeps its
    state under its new name. Returns (optimiser, how many parameters kept their state)."""
    new = trainer.make_optimizer(model.parameters(), lr)
    kept = 0
    for p in model.parameters():
        if p in old.state:
            new.state[p] = old.state[p]
            kept += 1
    return new, kept


def keeps_shape(block, example) -> bool:
    import torch

    was = block.training
    block.eval()
    with torch.no_grad():
        same = tuple(block(example).shape) == tuple(example.shape)
    block.train(was)
    return same


def run_autogrow(ctx):
    import copy

    import torch

    from odnbench import CurvePoint, set_lr

    p = ctx.params
    mode = target_mode(p)  # checked here with autogrow's names; then ODN's own rule gives the number
    threshold = None
    if mode is not None:
        from odnbench_plugins.odn.search import resolve_threshold

        threshold = resolve_threshold(ctx, p)["threshold"]

    backbone = ctx.build_backbone().to(ctx.device)
    bounds = [sum(backbone.stages[:i]) for i in range(len(backbone.stages) + 1)]
    own_blocks = [list(backbone.blocks[bounds[i]:bounds[i + 1]]) for i in range(len(backbone.stages))]
    stage_widths = backbone.stage_widths
    caps = list(backbone.stages) if p["max_blocks"] is None else [p["max_blocks"]] * len(backbone.stages)
    stages = [[blocks[0]] for blocks in own_blocks]  # the first block of a stage changes its width: it stays
    meta = {**backbone.meta, "method": "autogrow"}

    def network():
        return assemble(backbone.stem, stages, stage_widths, backbone.head, backbone.pool, meta,
                        backbone.num_classes)

    def new_block(s: int):
        """Stage s's next block: the backbone's own at that position, else a fresh copy of its last one."""
        j = len(stages[s])
        if j < len(own_blocks[s]):
            return own_blocks[s][j]
        fresh = ctx.build_backbone().to(ctx.device)  # fresh weights under recipe.init
        return fresh.blocks[bounds[s + 1] - 1]

    def stage_input(s: int):
        """An example of what stage s's blocks after the first take (one image; in eval mode, so that no
        BatchNorm statistic moves)."""
        was = net.training
        net.eval()
        with torch.no_grad():
            x = backbone.stem(torch.zeros((1, *ctx.input_shape), device=ctx.device))
            for t in range(s + 1):
                for b in stages[t]:
                    x = b(x)
        net.train(was)
        return x

    sched = GrowthSchedule([1] * len(stages), caps, interval=p["interval"], threshold=p["threshold"],
                           growth=p["growth"], stop=p["stop"], target=threshold, digits=p["search_digits"],
                           max_epochs=p["max_growth_epochs"])
    lr = ctx.recipe.lr if p["lr"] is None else p["lr"]
    generator = torch.Generator().manual_seed(ctx.seed)
    trainer, say = ctx.trainer, ctx.progress.line
    net = network()
    opt = trainer.make_optimizer(net.parameters(), lr)
    say(f"AutoGrow: start at {'-'.join(map(str, sched.blocks))} blocks, caps {'-'.join(map(str, caps))}, a growth "
        f"every {p['interval']} epochs ({p['growth']}), init {p['init']}, stop "
        + (f"at threshold {threshold:.2f}% ({mode})" if threshold is not None else f"below a gain of {p['threshold']}"))
    history, points, carried, inits = [], [], [], []
    best_at: dict[str, float] = {}  # architecture -> best validation reading while it trained

    def point(label: str, info: dict):
        arch = "-".join(str(len(s)) for s in stages)
        points.append(CurvePoint(copy.deepcopy(net), depth=net.depth, label=f"autogrow {arch}: {label}",
                                 info={"blocks": [len(s) for s in stages], "best_val": best_at.get(arch), **info}))

    while not sched.done:
        stats = trainer.train_epoch(net, opt, label=f"autogrow {'-'.join(str(len(s)) for s in stages)} epoch "
                                    f"{sched.epoch + 1}", cost_part="growth")
        val = trainer.evaluate(net, "val")
        arch = "-".join(str(len(s)) for s in stages)
        best_at[arch] = max(best_at.get(arch, -math.inf), val)
        step = sched.observe(val)
        history.append({"epoch": step.epoch, "blocks": [len(s) for s in stages], "loss": round(stats.loss, 5),
                        "val": round(val, 4), "lr": lr, "gain": step.gain, "grew": [s + 1 for s in step.grow],
                        "stopped": [s + 1 for s in step.stopped]})
        say(f"autogrow {arch} epoch {step.epoch}: loss {stats.loss:.4f} val {val:.2f}"
            + (f", gain of the last growth {step.gain:+.2f}" if step.gain is not None else "")
            + (f", stage(s) {', '.join(str(s + 1) for s in step.stopped)} stop" if step.stopped else ""))
        if step.grow:
            point("before growth step " + str(len(sched.steps)), {"epoch": step.epoch})
            for s in step.grow:
                block = new_block(s)
                if not keeps_shape(block, stage_input(s)):
                    raise OdnbenchError(f"autogrow: stage {s + 1} of {ctx.config.get('backbone', '?')} has no block "
                                        "that keeps its shape, so it cannot grow past its first block; lower "
                                        "autogrow.max_blocks")
                did = init_new_block(block, p["init"], stages[s][-1], std=p["init_std"], generator=generator)
                inits.append({"stage": s + 1, "position": len(stages[s]) + 1, **did})
                stages[s].append(block)
            net = network()
            opt, kept = carry_optimizer(trainer, opt, net, lr)
            carried.append(kept)
            say(f"autogrow: grew to {'-'.join(str(len(s)) for s in stages)} ({net.depth} blocks)")
    grown = "-".join(str(len(s)) for s in stages)
    growth_epochs = sched.epoch
    point("grown network, before the final training", {"epoch": growth_epochs, "stopped": sched.done})
    say(f"AutoGrow: growth over after {growth_epochs} epochs ({sched.done}): {grown} = {net.depth} blocks")
    fit = None
    if p["final_epochs"] != 0:
        # trains on with the carried optimiser (as the official code), back at the recipe's LR and schedule
        set_lr(opt, ctx.recipe.lr)
        fit = trainer.fit(net, label="autogrow final training", epochs=p["final_epochs"], optimizer=opt,
                          cost_part="final training")
    capped = sched.done == "max_epochs"
    info = {
        "blocks_per_stage": [len(s) for s in stages],
        "max_blocks": caps,
        "depth": net.depth,
        "growth_stopped": sched.done,
        "growth_epochs": growth_epochs,
        "growth_steps": sched.steps,
        "stop": p["stop"],
        "threshold": threshold,
        "target_mode": mode,
        "reached_target": sched.reached_target,
        "new_blocks": inits,
        "optimizer_state_carried": carried,
        "final": fit.summary() if fit is not None else None,
        "history": history,
    }
    cut_short = "growth hit autogrow.max_growth_epochs before it stopped by itself" if capped else None
    return MethodOutput(net, info, depth=net.depth, threshold=threshold, reached_target=sched.reached_target,
                        converged=False if capped else None, cut_short=cut_short,
                        depth_curve=[{"depth": pt.depth, "val": pt.info["best_val"]} for pt in points],
                        curve=points)


@hookimpl
def register_methods(register):
    register(AutoGrow())

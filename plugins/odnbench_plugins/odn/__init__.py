"""The ``odn`` method: Optimally Deep Networks (Tareen & Tareen, arXiv 2510.10764), as the authors'
notebooks run it (../shared/odn-method.md).

A private head (global average pool + linear) after every residual block; a joint warm-up of all
heads; then depth 1, 2, ... trained one at a time from the warm-up weights until validation stops
improving; stop at the first depth whose best validation accuracy reaches the threshold, fine-tune
there, and export stem + blocks 1..k + head k as a standalone network.

This module is the light registration part (no torch at import); the parameters and their checks
live in :mod:`odnbench_plugins.odn.params`, the search in :mod:`odnbench_plugins.odn.search`
(imported inside :meth:`ODN.run`).

Targets. ``target_mode=fixed``: threshold = ``target`` - ``tolerance`` (the paper: a hand-set
target per dataset, tolerance 0.5). ``target_mode=relative``: threshold = validation top-1 of the
``full`` result for the same dataset/backbone/seed/preset - ``relative_tolerance`` (default 1.75,
the "within 1.75 %" of the popular summary); the harness runs that ``full`` cell first.
``target_mode=auto`` (default) is fixed when ``target`` is set and relative otherwise. The
``paper`` preset sets the paper's target for mnist, emnist, fashion-mnist, svhn and cifar10, so
those are fixed; any other dataset, and the ``quick`` and ``smoke`` presets (scaled-down recipes
cannot be held to the paper's absolute targets), are relative unless you ``--set odn.target=``.

Networks. ODN as the authors ran it needs their networks: PyTorch's default layer init with every
BatchNorm weight 1 (``recipe.init=torch``, every preset's default; see odnbench/initialization.py).
timm's own init zeroes the last BatchNorm of every block, and from it the joint warm-up hardly
trains any head (real MNIST, paper recipe: heads 1-8 at 22-48 % after warm-up, against 41-99 %),
which pushed our ODN deeper than the paper's depth 2 (issue 10). On mnist5k, quick preset, 3 seeds:
full top-1 97.53 vs 96.60 %, ODN top-1 97.50 vs 96.70 % at depths 4/5/6 vs 4/5/5 and the same
search cost (torch vs timm init).

When the search stops. ``stop_rule=first`` (every preset): in the epoch in which the depth's
rounded validation reading first reaches the threshold, as the authors' code does; fine-tuning
then starts at the LR in force in that epoch. ``stop_rule=patience`` (the declared default, which a
config stored before the parameter existed is read as): only after the depth has converged, a
patience window later and at a decayed LR (replaying the authors' logged MNIST run: at least 170 epochs
instead of their 162, fine-tuning at an LR near 5e-5 instead of 1.8e-3).

Where deeper depths start. ``start_from=warmup`` (default): every depth reloads the warm-up weights
(the authors' released code). ``start_from=previous``: depth k starts from depth k-1's best stem and
blocks, with block k and head k as warmed up. mnist5k, quick, 3 seeds: previous stopped shallower
(depths 4/4/5 vs 4/5/6) after fewer epochs (mean 49.7 vs 56.7) but with lower test top-1 (96.93 vs
97.50 %), so the default stays the authors' choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odnbench import Method, OdnbenchError, Requirement, hookimpl
from odnbench_plugins.odn import paper
from odnbench_plugins.odn.params import PARAMS, check_params, resolve_target_mode


class ODN(Method):
    """Optimally Deep Networks: grow depth block by block until the threshold, cut the rest.

    ``paper`` preset: the authors' recipe with their fixed per-dataset targets (mnist 99.5,
    emnist 95.0, fashion-mnist 94.5, svhn 96.0, cifar10 94.5; tolerance 0.5); other datasets
    relative. ``quick``/``tiny``/``smoke``: the same procedure scaled down, with a relative target (full-depth
    validation top-1 - relative_tolerance) since a scaled-down recipe cannot meet the paper's targets;
    ``quick`` uses relative_tolerance 0.75 (a best-of-several reading on its small validation split
    overstates accuracy by about a point), the reset reading and a cosine fine-tune (see
    preset_defaults for why).
    """

    name = "odn"
    role = "depth-search"  # the board compares its depth with the brute-force oracle's
    description = ("Optimally Deep Networks: train depth 1, 2, ... (a head per residual block) until the "
                   "target accuracy, then cut the unused blocks")
    params = PARAMS
    # relative_tolerance's default in each preset is the board's (odnbench.target_tolerance): 0.75 in quick
    # (its best-of-several reading on a 500-image validation split overstates accuracy by about a point),
    # 3 in tiny (256 images), 1.75 otherwise.
    follows_board_tolerance = "relative_tolerance"
    # ODN runs its own schedule (search, then fine-tune) instead of the recipe's single training run.
    unused_recipe_fields = {
        "epochs": "its epochs come from odn.max_epochs_per_depth and odn.finetune_max_epochs",
        "patience": "its patience is odn.patience (and odn.finetune_patience)",
        "schedule": "its LR schedule is odn.lr_decay_factor/odn.lr_decay_patience and odn.finetune_schedule",
        "plateau_factor": "its LR decay is odn.lr_decay_factor",
        "plateau_patience": "its LR decay waits odn.lr_decay_patience epochs",
    }

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        # Every preset stops the authors' way (stop_rule=first). The declared default stays patience only so
        # that a config stored before the parameter existed (which left it out) reads as what it ran.
        return {"stop_rule": "first", **self._preset_values(preset, dataset)}

    def _preset_values(self, preset: str, dataset: str) -> dict[str, Any]:
        if preset == "paper":
            warmup_epochs, warmup_lr = paper.WARMUP.get(dataset, (3, 0.001))
            return {
                "target": paper.TARGETS.get(dataset),  # None -> relative (auto)
                "tolerance": paper.TOLERANCE,
                "lr": paper.BASE_LR.get(dataset, 0.01),
                "next_depth_lr_factor": paper.NEXT_DEPTH_LR_FACTOR.get(dataset, 0.5),
                "warmup_epochs": warmup_epochs,
                "warmup_lr": warmup_lr,
            }
        if preset == "quick":
            # The same procedure on a CPU budget (3,500 images = 55 steps an epoch), measured on mnist5k
            # (tuned under timm's init, protocol 1; rechecked under the authors' init, 3 seeds: each reached
            # its threshold, at depths 4-6):
            # - a warm-up strong enough to matter in 2 epochs; depth 1 at 0.1, deeper depths at 0.05;
            # - reset reading: with a 4-epoch patience the carry reading ended every depth deeper than the
            #   first one to reach ~95 % after 4 epochs, before it could climb back from the warm-up
            #   weights (so the search ran to the last block); the paper's 23 epochs leave room for that;
            # - the paper's fine-tune runs 23+ epochs while plateau decays bring its LR down; capped at 6
            #   epochs it would end at a high, noisy LR, so the quick fine-tune anneals it (cosine);
            # - the validation split is 500 images (one reading +-0.9 points) and a depth's best is the
            #   maximum of up to 10 readings, which overstates it by about a point: the threshold sits
            #   0.75 (not 1.75) below full depth so that test accuracy lands within 1.75 points of it.
            return {"lr": 0.1, "warmup_epochs": 2, "warmup_lr": 0.05, "patience": 4, "lr_decay_patience": 2,
                    "max_epochs_per_depth": 10, "best_reading": "reset", "finetune_max_epochs": 6,
                    "finetune_schedule": "cosine"}
        if preset == "tiny":
            # Seconds on a CPU but a search that learns: a few epochs per depth, a short fine-tune.
            # 256 validation images (one reading +-2 points): the threshold sits 3 points below full depth.
            return {"lr": 0.1, "warmup_epochs": 2, "warmup_lr": 0.05, "patience": 2, "lr_decay_patience": 1,
                    "max_epochs_per_depth": 4, "best_reading": "reset", "finetune_max_epochs": 2,
                    "finetune_schedule": "cosine"}
        if preset == "smoke":
            return {"patience": 1, "lr_decay_patience": 1, "max_epochs_per_depth": 1, "warmup_epochs": 1,
                    "warmup_lr": 0.01, "finetune_max_epochs": 1}
        return {}

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        check_params(params)  # at plan time, so a bad value fails before any training
        return [Requirement("full")] if resolve_target_mode(params) == "relative" else []

    def check_backbone(self, params: Mapping[str, Any], backbone) -> None:
        # At plan time: a depth bound beyond the backbone fails before its dependencies train.
        for name in ("start_depth", "max_depth"):
            if params[name] is not None and params[name] > backbone.depth:
                raise OdnbenchError(f"odn.{name}={params[name]}: backbone {backbone.name!r} has {backbone.depth} "
                                    f"blocks (stages {list(backbone.stages)}); allowed: 1..{backbone.depth}")

    def reference_results(self, dataset: str, backbone: str) -> dict[str, Any] | None:
        found = paper.PUBLISHED.get((dataset, backbone))
        # Compared on `paper`-preset boards only: that preset follows the authors' recipe.
        return {**found, "source": paper.SOURCE, "preset": "paper"} if found else None

    def run(self, ctx):
        from odnbench_plugins.odn.search import run_odn

        check_params(ctx.params)
        return run_odn(ctx)


@hookimpl
def register_methods(register):
    register(ODN())


@hookimpl
def register_commands(cli):
    from odnbench_plugins.odn.cli import odn_curve

    cli.add_command(odn_curve)

"""The ``oracle`` method: brute-force depth. Train every depth ``min_depth..max_depth`` from scratch
(stem + blocks 1..k + a new head, as ``scratch`` builds it) with the same recipe, and return the
shallowest whose validation top-1 reaches the threshold, by ODN's own rule and defaults: the
threshold is full depth's validation top-1 minus ``relative_tolerance`` (``target - tolerance`` when
a target is set; the same per-preset defaults as ``odn``), and a depth's validation top-1 is read
to ``search_digits`` decimals before the comparison. So the two answer the same question, and the
board can say whether ODN's search found the oracle's depth and what each spent.
``train_all=false`` stops after the first depth that reaches the threshold: the same depth, for
the cost of a sequential search from scratch (the curve then ends at that depth).

``schedule`` says how each depth trains. ``recipe`` (the default, and what every stored oracle cell
ran): the recipe's one training run (its epochs, cosine or plateau LR, patience). ``odn``: the budget
ODN's search gives a depth, so that the two differ only in what defines ODN (its warm start from the
joint warm-up and its per-block heads): the same cap (``max_epochs_per_depth``), base LR (``lr``),
plateau decay (``lr_decay_factor`` / ``lr_decay_patience``), convergence ``patience``, ``stop_rule``
and ``search_digits`` reading, run by ODN's own schedule (``odn.search.train_depth_alone``); the
LR of deeper depths is not halved (``odn.next_depth_lr_factor`` is for a warm-started depth). Those
parameters are left unset (none: ODN's value in the cell's preset, e.g. quick: 10 epochs, LR 0.1,
decay after 2 flat epochs, patience 4) and only apply with ``schedule=odn``; the values that ran are
stored in the result's ``method_info["budget"]``.

Every depth's model goes to the harness as a curve point (test top-1, size, MACs measured there),
with its validation top-1, epochs and cost in the point's info; the total cost is the cell's cost.
No torch at import (only in :meth:`Oracle.run`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from odnbench import Method, OdnbenchError, Param, Requirement, hookimpl
from odnbench_plugins.odn.params import PARAMS as ODN_PARAMS
from odnbench_plugins.odn.params import resolve_target_mode

#: ODN's parameters the oracle shares, so that both stop on the same threshold.
SHARED = ("target", "tolerance", "target_mode", "relative_tolerance", "search_digits")
#: ODN's per-depth budget (odn.search.DEPTH_BUDGET, named here so that import stays torch-free), for
#: ``schedule=odn``: unset (none) means ODN's value in the cell's preset.
BUDGET = ("lr", "max_epochs_per_depth", "lr_decay_factor", "lr_decay_patience", "patience", "stop_rule")
SCHEDULES = ("recipe", "odn")


def pick_depth(vals: list[tuple[int, float]], threshold: float, digits: int = 1) -> tuple[int, bool]:
    """(depth, reached): the shallowest depth whose validation top-1, rounded to ``digits`` decimals
    as ODN reads it, is at least ``threshold``. When none is, the deepest one tried, not reached
    (ODN too stops at its last depth then)."""
    if not vals:
        raise ValueError("pick_depth needs at least one (depth, val) pair")
    for depth, val in sorted(vals):
        if round(val, digits) >= threshold:
            return depth, True
    return max(d for d, _ in vals), False


def _odn_param(name: str) -> Param:
    found = {p.name: p for p in ODN_PARAMS}[name]
    return found


def _budget_param(name: str) -> Param:
    # Unset by default and left out of the key while unset: every stored oracle cell keeps its key.
    found = _odn_param(name)
    text = ("Base LR of every depth (each starts from scratch)" if name == "lr" else found.help)
    return dataclasses.replace(found, default=None, nullable=True, omit_default=True, sweep=False,
                               help=f"schedule=odn only: {text} (none: odn's value for the preset"
                                    f"{', else the recipe lr' if name == 'lr' else ''})")


def odn_budget(params: Mapping[str, Any], preset: str, dataset: str) -> dict[str, Any]:
    """The per-depth budget ``schedule=odn`` trains with: each of :data:`BUDGET` as set on the oracle,
    else ODN's value for ``preset``/``dataset`` (its preset_defaults, then its declared default);
    ``search_digits`` is the oracle's own (shared with ODN)."""
    from odnbench_plugins.odn import ODN

    odn_values = {p.name: p.default for p in ODN_PARAMS} | ODN().preset_defaults(preset, dataset)
    budget = {name: odn_values[name] if params.get(name) is None else params[name] for name in BUDGET}
    return {**budget, "search_digits": params["search_digits"]}


def _mode(params: Mapping[str, Any]) -> str:
    try:
        return resolve_target_mode(params)
    except OdnbenchError as exc:  # its text names odn.*: say oracle.*
        raise OdnbenchError(str(exc).replace("odn.", "oracle.")) from None


class Oracle(Method):
    name = "oracle"
    role = "depth-oracle"  # the brute-force side of the board's depth comparison
    description = ("Brute-force depth: every depth trained from scratch (the recipe, or ODN's per-depth budget); the shallowest within "
                   "ODN's threshold of full depth")
    params = (
        Param("min_depth", int, 1, ge=1, sweep=True, help="First depth to train."),
        Param("max_depth", int, None, nullable=True, ge=1, sweep=True,
              help="Last depth to train (none: every residual block)."),
        Param("train_all", bool, True,
              help="true: train every depth min..max (the whole curve); false: stop after the first depth that "
                   "reaches the threshold (a sequential search from scratch: the same answer, for less)."),
        *(_odn_param(name) for name in SHARED),
        Param("schedule", str, "recipe", choices=SCHEDULES, omit_default=True,
              help="How each depth trains. recipe: the recipe's training run; odn: ODN's per-depth budget and "
                   "schedule (odn.max_epochs_per_depth, its base LR, plateau decay, patience, stop rule), from "
                   "scratch: the oracle then differs from ODN's search only by the warm start and the heads"),
        *(_budget_param(name) for name in BUDGET),
    )

    follows_board_tolerance = "relative_tolerance"  # as ODN's, so that both stop on the same threshold

    def check_backbone(self, params: Mapping[str, Any], backbone) -> None:
        for name in ("min_depth", "max_depth"):
            if params[name] is not None and params[name] > backbone.depth:
                raise OdnbenchError(f"oracle.{name}={params[name]}: backbone {backbone.name!r} has {backbone.depth} "
                                    f"blocks (stages {list(backbone.stages)}); allowed: 1..{backbone.depth}")

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        from odnbench_plugins.odn import ODN

        return {k: v for k, v in ODN().preset_defaults(preset, dataset).items() if k in SHARED}

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        if params.get("schedule", "recipe") == "recipe":
            stray = [n for n in BUDGET if params.get(n) is not None]
            if stray:  # it would only make separate cells that train the same way
                raise OdnbenchError(f"oracle.{stray[0]}={params[stray[0]]} applies to oracle.schedule=odn only "
                                    f"(this cell trains with the recipe); set oracle.schedule=odn or drop it")
        if params["max_depth"] is not None and params["max_depth"] < params["min_depth"]:
            raise OdnbenchError(f"oracle.max_depth={params['max_depth']} is below oracle.min_depth="
                                f"{params['min_depth']}")
        return [Requirement("full")] if _mode(params) == "relative" else []

    def run(self, ctx):
        import torch

        from odnbench import CurvePoint, MethodOutput

        p = ctx.params
        if _mode(p) == "fixed":
            target = {"target_mode": "fixed", "target": p["target"], "tolerance": p["tolerance"],
                      "threshold": round(p["target"] - p["tolerance"], 6), "full_val_top1": None}
        else:
            full_val = float(ctx.dependency("full").metrics["val_top1"])
            target = {"target_mode": "relative", "target": full_val, "tolerance": p["relative_tolerance"],
                      "threshold": round(full_val - p["relative_tolerance"], 6), "full_val_top1": full_val}
        blocks = ctx.build_backbone().depth
        last = blocks if p["max_depth"] is None else p["max_depth"]
        if not 1 <= p["min_depth"] <= last <= blocks:
            raise OdnbenchError(f"oracle.min_depth={p['min_depth']} / oracle.max_depth={p['max_depth']}: backbone "
                                f"{ctx.config.get('backbone', '?')} has depths 1..{blocks}")
        schedule = p.get("schedule", "recipe")
        budget = odn_budget(p, ctx.config["preset"], ctx.config["dataset"]) if schedule == "odn" else None
        if budget is not None:
            from odnbench_plugins.odn.search import train_depth_alone

            budget["lr"] = ctx.recipe.lr if budget["lr"] is None else budget["lr"]  # as ODN: none = the recipe's
        depths, models = [], {}
        for k in range(p["min_depth"], last + 1):
            torch.manual_seed(ctx.seed)  # each depth's init independent of the depths trained before it
            model = ctx.build_backbone().truncated(k).to(ctx.device)
            before = dict(ctx.cost.own)  # the meter's own share: epochs, sample_steps, train_seconds, train_macs
            if budget is None:
                fit = ctx.trainer.fit(model, label=f"oracle depth {k}")
                trained = {"val": fit.best_val, "best_epoch": fit.best_epoch, "epochs": fit.epochs,
                           "stopped": fit.stopped}
            else:
                ran = train_depth_alone(ctx.trainer, model, budget, depth=k, threshold=target["threshold"],
                                        base_lr=budget["lr"], label=f"oracle depth {k}")
                trained = {"val": ran["best_val_raw"], "best_epoch": ran["best_epoch"], "epochs": ran["epochs"],
                           "stopped": ran["stopped"], "lr_start": ran["lr_start"], "lr_end": ran["lr_end"],
                           "lr_decays": ran["lr_decays"]}
            depths.append({"depth": k, **trained,
                           "cost": _rounded({n: ctx.cost.own[n] - v for n, v in before.items()})})
            models[k] = model
            if not p["train_all"] and round(trained["val"], p["search_digits"]) >= target["threshold"]:
                break  # the shallowest depth that reaches it: deeper ones cannot change the answer
        chosen, reached = pick_depth([(d["depth"], d["val"]) for d in depths], target["threshold"],
                                     p["search_digits"])
        ctx.progress.line(f"oracle: depth {chosen} of {p['min_depth']}..{last} "
                          f"({'reached' if reached else 'none reached'} threshold {target['threshold']:.2f})")
        curve = [CurvePoint(models[d["depth"]], depth=d["depth"],
                            label=f"oracle, depth {d['depth']} trained from scratch",
                            info={**d, "chosen": d["depth"] == chosen}) for d in depths]
        info = {"optimal_depth": chosen, "min_depth": p["min_depth"], "max_depth": last, "blocks": blocks, **target,
                "reached_target": reached, "train_all": p["train_all"], "depths": depths,
                "schedule": schedule, "budget": budget,
                "total": _rounded({n: sum(d["cost"][n] for d in depths) for n in depths[0]["cost"]})}
        facts = {}
        if budget is not None:  # not the shared trainer's fit, so the harness cannot tell: say it, as ODN does
            capped = [str(d["depth"]) for d in depths if d["stopped"] == "max_epochs"]
            facts = {"converged": not capped, "cut_short": (f"depth(s) {', '.join(capped)} hit "
                                                            "max_epochs_per_depth before patience") if capped else None}
        return MethodOutput(models[chosen], info, depth=chosen, reached_target=reached, threshold=target["threshold"],
                            tolerance=target["tolerance"], **facts,
                            depth_curve=[{"depth": d["depth"], "val": round(d["val"], p["search_digits"])}
                                         for d in depths], curve=curve)


def _rounded(cost: dict[str, Any]) -> dict[str, Any]:
    return {**cost, "train_seconds": round(cost["train_seconds"], 3)}


@hookimpl
def register_methods(register):
    register(Oracle())

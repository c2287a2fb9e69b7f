"""ODN's parameters and the checks on them (plain data, no torch): shared by the registration
module (:mod:`odnbench_plugins.odn`) and the search (:mod:`odnbench_plugins.odn.search`)."""

from __future__ import annotations

from typing import Any, Mapping

from odnbench import OdnbenchError, Param
from odnbench_plugins.odn import paper

PARAMS = (
    Param("target", float, None, "Fixed target top-1 % on validation; the stop threshold is target - tolerance "
          "(paper preset: the paper's target for its five datasets)", nullable=True),
    Param("tolerance", float, paper.TOLERANCE, "Fixed mode: stop at the first depth whose best validation top-1 is "
          ">= target - tolerance"),
    Param("target_mode", str, "auto", "fixed: target - tolerance; relative: validation top-1 of the 'full' result "
          "- relative_tolerance (runs 'full' first); auto: fixed when target is set, else relative",
          choices=("auto", "fixed", "relative")),
    Param("relative_tolerance", float, 1.75, "Relative mode: points below the full-depth validation top-1"),
    Param("best_reading", str, "carry", "carry: the best validation accuracy is carried across depths, so a deeper "
          "depth must beat every shallower one to count as improving (the published logs); reset: each depth "
          "starts afresh (the released code). The stop check always uses each depth's own best",
          choices=("carry", "reset")),
    Param("lr", float, None, "Base LR of depth 1 (paper: 0.01, 0.1 for svhn); none = the recipe's lr", nullable=True),
    Param("next_depth_lr_factor", float, 0.5, "Each deeper depth gets a fresh optimiser at lr x this "
          "(paper: 0.5, 1.0 for cifar10)"),
    Param("lr_decay_factor", float, 0.6, "LR x this after every lr_decay_patience epochs without improvement"),
    Param("lr_decay_patience", int, 5, "Epochs without improvement before the LR is decayed"),
    Param("patience", int, 23, "A depth has converged after this many epochs without improvement"),
    Param("max_epochs_per_depth", int, 200, "Cap on epochs at one depth (reached before convergence = stop anyway)"),
    Param("search_digits", int, 1, "Validation % is rounded to this many decimals while searching (paper: 0.1 %)"),
    Param("warmup_epochs", int, 3, "Joint warm-up epochs of all heads, summed CE (paper: 3; 0 for cifar10)"),
    Param("warmup_lr", float, 0.001, "Warm-up LR, cosine over the warm-up (paper: 0.001; 0.01 for svhn)"),
    Param("start_depth", int, 1, "First depth to train (the paper starts at 1)"),
    Param("max_depth", int, None, "Last depth to try (none = every residual block)", nullable=True),
    Param("finetune", bool, True, "Fine-tune at the chosen depth with the same optimiser and decayed LR"),
    Param("finetune_patience", int, None, "Fine-tune stops after this many epochs without improvement "
          "(none = patience)", nullable=True),
    Param("finetune_max_epochs", int, 200, "Cap on fine-tuning epochs"),
    Param("finetune_schedule", str, "plateau", "plateau: LR x lr_decay_factor after lr_decay_patience flat epochs "
          "(the paper); cosine: anneal the LR to 0 over finetune_max_epochs (short, capped fine-tunes)",
          choices=("plateau", "cosine")),
    Param("finetune_digits", int, 2, "Validation % is rounded to this many decimals while fine-tuning (0.01 %)"),
    Param("save_depth_models", bool, True, "Save every converged depth's cut model as depth-K.pt in the cell folder"),
)


def resolve_target_mode(params: Mapping[str, Any]) -> str:
    """``fixed`` or ``relative`` from ``target_mode`` and ``target`` (one-line error when inconsistent)."""
    mode = params.get("target_mode", "auto")
    if mode == "auto":
        return "fixed" if params.get("target") is not None else "relative"
    if mode == "fixed" and params.get("target") is None:
        raise OdnbenchError("odn.target_mode=fixed needs odn.target (a validation top-1 %, e.g. odn.target=99.5); "
                            "or use odn.target_mode=relative")
    return mode


def check_params(p: Mapping[str, Any]) -> None:
    """Reject values the procedure cannot run with, naming what is allowed."""
    positive = ("patience", "max_epochs_per_depth", "lr_decay_patience", "start_depth")
    for name in positive:
        if p[name] < 1:
            raise OdnbenchError(f"odn.{name}={p[name]} must be >= 1")
    for name in ("warmup_epochs", "finetune_max_epochs", "search_digits", "finetune_digits"):
        if p[name] < 0:
            raise OdnbenchError(f"odn.{name}={p[name]} must be >= 0")
    for name in ("lr", "warmup_lr", "next_depth_lr_factor"):
        if p[name] is not None and p[name] <= 0:
            raise OdnbenchError(f"odn.{name}={p[name]} must be > 0")
    if not 0 < p["lr_decay_factor"] <= 1:
        raise OdnbenchError(f"odn.lr_decay_factor={p['lr_decay_factor']} must be in (0, 1]")
    if p["tolerance"] < 0 or p["relative_tolerance"] < 0:
        raise OdnbenchError("odn.tolerance and odn.relative_tolerance must be >= 0")
    if p["finetune_patience"] is not None and p["finetune_patience"] < 1:
        raise OdnbenchError(f"odn.finetune_patience={p['finetune_patience']} must be >= 1 (or none)")
    if p["finetune_schedule"] == "cosine" and p["finetune"] and p["finetune_max_epochs"] < 1:
        raise OdnbenchError("odn.finetune_schedule=cosine needs odn.finetune_max_epochs >= 1 (the cosine's length)")
    if p["max_depth"] is not None and p["max_depth"] < p["start_depth"]:
        raise OdnbenchError(f"odn.max_depth={p['max_depth']} is below odn.start_depth={p['start_depth']}")
    resolve_target_mode(p)

"""ODN's parameters and the checks on them (plain data, no torch): shared by the registration
module (:mod:`odnbench_plugins.odn`) and the search (:mod:`odnbench_plugins.odn.search`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odnbench import OdnbenchError, Param
from odnbench_plugins.odn import paper

PARAMS = (
    Param("target", float, None, "Fixed target top-1 % on validation; the stop threshold is target - tolerance "
          "(paper preset: the paper's target for its five datasets)", nullable=True, gt=0, le=100, sweep=True),
    Param("tolerance", float, paper.TOLERANCE, "Fixed mode: stop at the first depth whose best validation top-1 is "
          ">= target - tolerance", ge=0, sweep=True),
    Param("target_mode", str, "auto", "fixed: target - tolerance; relative: validation top-1 of the 'full' result "
          "- relative_tolerance (runs 'full' first); auto: fixed when target is set, else relative",
          choices=("auto", "fixed", "relative")),
    Param("relative_tolerance", float, 1.75, "Relative mode: points below the full-depth validation top-1", ge=0, sweep=True),
    Param("best_reading", str, "carry", "carry: the best validation accuracy is carried across depths, so a deeper "
          "depth must beat every shallower one to count as improving (the published logs); reset: each depth "
          "starts afresh (the released code). The stop check always uses each depth's own best",
          choices=("carry", "reset")),
    # Added after results were stored under the patience rule: a config without it ran under patience.
    Param("stop_rule", str, "patience", "When the search stops at a depth that reaches the threshold. first: in the "
          "epoch in which the depth's rounded validation reading first reaches it, fine-tuning at the LR in force then "
          "(the authors' code; every preset sets it); patience: only once the depth has converged (patience epochs "
          "without improvement), a patience window later and at a decayed LR. A stored config without stop_rule "
          "ran under patience", choices=("first", "patience"), omit_default=True),
    Param("start_from", str, "warmup", "Weights each deeper depth starts from. warmup: the warm-up weights, "
          "every depth alike (the authors' released code); previous: the stem and blocks 1..k-1 of depth k-1's "
          "best checkpoint, block k and head k as warmed up (mnist5k quick: shallower and cheaper, 0.6 points less "
          "accurate)", choices=("warmup", "previous")),
    Param("lr", float, None, "Base LR of depth 1 (paper: 0.01, 0.1 for svhn); none = the recipe's lr", nullable=True, gt=0, le=10),
    Param("next_depth_lr_factor", float, 0.5, "Each deeper depth gets a fresh optimiser at lr x this "
          "(paper: 0.5, 1.0 for cifar10)", gt=0, le=10),
    Param("lr_decay_factor", float, 0.6, "LR x this after every lr_decay_patience epochs without improvement",
          gt=0, le=1),
    Param("lr_decay_patience", int, 5, "Epochs without improvement before the LR is decayed", ge=1),
    Param("patience", int, 23, "A depth has converged after this many epochs without improvement", ge=1),
    Param("max_epochs_per_depth", int, 200, "Cap on epochs at one depth (reached before convergence = stop anyway)",
          ge=1),
    Param("search_digits", int, 1, "Validation % is rounded to this many decimals while searching (paper: 0.1 %)",
          ge=0, le=6),
    Param("warmup_epochs", int, 3, "Joint warm-up epochs of all heads, summed CE (paper: 3; 0 for cifar10)", ge=0),
    Param("warmup_lr", float, 0.001, "Warm-up LR, cosine over the warm-up (paper: 0.001; 0.01 for svhn)", gt=0, le=10),
    Param("start_depth", int, 1, "First depth to train (the paper starts at 1)", ge=1),
    Param("max_depth", int, None, "Last depth to try (none = every residual block)", nullable=True, ge=1),
    Param("finetune", bool, True, "Fine-tune at the chosen depth with the same optimiser and decayed LR"),
    Param("finetune_patience", int, None, "Fine-tune stops after this many epochs without improvement "
          "(none = patience)", nullable=True, ge=1),
    Param("finetune_max_epochs", int, 200, "Cap on fine-tuning epochs", ge=0),
    Param("finetune_schedule", str, "plateau", "plateau: LR x lr_decay_factor after lr_decay_patience flat epochs "
          "(the paper); cosine: anneal the LR to 0 over finetune_max_epochs (short, capped fine-tunes)",
          choices=("plateau", "cosine")),
    Param("finetune_digits", int, 2, "Validation % is rounded to this many decimals while fine-tuning (0.01 %)",
          ge=0, le=6),
    Param("save_depth_models", bool, True, "Save every converged depth's cut model as depth-K.safetensors in the cell "
          "folder"),
    # Added after results were stored: a config without it ran without saving the warm-up network.
    Param("save_warmup_exits", bool, True, "Save the warmed-up network with all its heads (every exit) as the "
          "artifact warmup-exits (an early-exit network, read by early-exit with source=odn); not when there is "
          "no warm-up", omit_default=True),
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
    """What the declared ranges cannot say: how parameters fit together (one-line errors)."""
    if p["finetune_schedule"] == "cosine" and p["finetune"] and p["finetune_max_epochs"] < 1:
        raise OdnbenchError("odn.finetune_schedule=cosine needs odn.finetune_max_epochs >= 1 (the cosine's length)")
    if p["max_depth"] is not None and p["max_depth"] < p["start_depth"]:
        raise OdnbenchError(f"odn.max_depth={p['max_depth']} is below odn.start_depth={p['start_depth']}")
    resolve_target_mode(p)

"""Training recipes (presets): every value here is stored with each result and is part of the cell key.

- ``smoke``: seconds per cell on a CPU, for tests: a few hundred images, one or two epochs.
- ``tiny``: seconds per cell too, but a model that learns (well above chance on mnist5k): for
  plugin tests whose choices depend on accuracy. About 1,000 images, narrow widths, 4 epochs.
- ``quick``: a meaningful CPU run: narrow widths (16, 32, 64, 128), a few thousand training
  images, short patience and epoch caps; bf16 autocast in channels-last (the fastest CPU setting,
  same top-1 as fp32 within the seed spread).
- ``paper``: the ODN authors' recipe (../shared/odn-method.md): full width and data, SGD
  momentum 0.9, weight decay 5e-4, batch 128, LR x0.6 after 5 epochs without improvement,
  early stop after 23. Meant for GPUs. In fp32 with TF32 by default; the fast path on a GPU is
  ``--set recipe.precision=bf16`` (and ``--set recipe.compile=true`` for long runs), see the README.

Every preset initialises its networks as the ODN authors did (``init="torch"``, see
:mod:`odnbench.initialization`; the README gives the measurements behind that choice).

Override any field with ``--set recipe.FIELD=VALUE``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from odnbench.errors import OdnbenchError, UnknownNameError
from odnbench.params import Param


@dataclass(frozen=True)
class Recipe:
    preset: str
    # data: None means "all of it"
    train_limit: int | None = None
    val_limit: int | None = None
    test_limit: int | None = None
    # backbone policy
    width: str = "full"  # "full" or comma-separated stage widths, e.g. "16,32,64,128"
    stem: str = "cifar"  # "cifar": 3x3 stride-1 stem, no max-pool; "imagenet": timm's own stem
    init: str = "torch"  # "torch": PyTorch's default layer init, BN weight 1 (the ODN authors'); "timm": as built
    # optimisation (shared by every method that trains)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    epochs: int = 200  # cap on epochs for one training run
    schedule: str = "plateau"  # "plateau" (LR x factor after N flat epochs), "cosine", "none"
    plateau_factor: float = 0.6
    plateau_patience: int = 5
    patience: int = 23  # early stop after this many epochs without validation improvement
    # measurement
    eval_batch_size: int = 512
    latency_warmup: int = 10
    latency_windows: int = 5
    latency_iters: int = 20
    throughput_batch: int = 256
    # Torch intra-op threads of the cell. 1 by default: results do not depend on the machine's core
    # count, and --jobs uses the cores by running cells side by side. 0 = leave the process's count
    # (torch's default, or the worker's --worker-threads): what every record before 0.2 ran with.
    threads: int = 1
    # execution (odnbench.execution): how tensors run; training, evaluation and timing alike
    precision: str = "fp32"  # "fp32" or "bf16" (autocast; weights and optimiser stay fp32)
    tf32: bool = True  # TF32 tensor-core math for fp32 matmul/conv on GPUs that have it (no effect on CPU)
    memory_format: str = "auto"  # "auto" (channels-last on CUDA, contiguous on CPU), "channels_last", "contiguous"
    compile: bool = False  # torch.compile the training step (CUDA; skipped on CPU with a note in the result)

    @property
    def widths(self) -> tuple[int, ...] | None:
        if self.width == "full":
            return None
        return tuple(int(w) for w in self.width.split(","))

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, stored: dict[str, Any]) -> Recipe:
        """The recipe a stored config ran with: its preset, then the stored field values (each
        validated as ``--set recipe.FIELD`` would be). Fields it lacks keep the preset's value, except
        ``init``: a config without it (protocol 1) ran with timm's init, whatever today's default, and
        ``threads``: one without it ran with the process's thread count (0), before the default was 1."""
        stored = {"init": "timm", "threads": 0, **stored}
        preset = stored.get("preset")
        if preset not in PRESETS:
            raise UnknownNameError("preset", str(preset), PRESETS)
        allowed = recipe_params()
        changes = {}
        for name, value in stored.items():
            if name == "preset":
                continue
            if name not in allowed:
                raise UnknownNameError("recipe parameter", name, allowed)
            changes[name] = allowed[name].check(value, "recipe")
        return _checked(dataclasses.replace(PRESETS[preset], **changes))


PRESETS: dict[str, Recipe] = {
    "smoke": Recipe(
        preset="smoke", train_limit=256, val_limit=128, test_limit=256, width="8,16,16,32",
        lr=0.05, batch_size=64, epochs=1, schedule="none", patience=1,
        eval_batch_size=256, latency_warmup=2, latency_windows=3, latency_iters=3, throughput_batch=32,
    ),
    # For plugin tests that need a model that learns: ~1,000 images, narrow widths, a few epochs.
    "tiny": Recipe(
        preset="tiny", train_limit=1024, val_limit=256, test_limit=512, width="8,16,32,32",
        lr=0.05, batch_size=64, epochs=4, schedule="cosine", patience=4,
        eval_batch_size=256, latency_warmup=2, latency_windows=3, latency_iters=3, throughput_batch=32,
    ),
    # bf16 autocast + channels-last: 1.6-1.9x the fp32 training rate on a CPU with bf16 instructions
    # (docs/speed.md, the roofline), with top-1 inside the seed spread of fp32 (docs/speed.md).
    "quick": Recipe(
        preset="quick", train_limit=6000, val_limit=1000, width="16,32,64,128",
        lr=0.05, batch_size=64, epochs=12, schedule="cosine", patience=4,
        latency_windows=5, latency_iters=20, throughput_batch=128,
        precision="bf16", memory_format="channels_last",
    ),
    # 2048-image evaluation batches: 5 forward passes over the 10k validation images each epoch
    # instead of 20 (top-1 does not depend on the batch size; BN is in eval mode).
    "paper": Recipe(preset="paper", eval_batch_size=2048),
}

_FIELD_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
_CHOICES = {
    "optimizer": ("sgd", "adamw"),
    "schedule": ("plateau", "cosine", "none"),
    "stem": ("cifar", "imagenet"),
    "init": ("torch", "timm"),
    "precision": ("fp32", "bf16"),
    "memory_format": ("auto", "channels_last", "contiguous"),
}
#: Each numeric field's allowed range (Param's ge/gt/le/lt): checked at plan time, one line naming it.
#: Zero epochs or a zero learning rate would store an untrained model as "ok" (and rank it); the upper
#: bounds keep an absurd value (recipe.lr=1e300, a million threads, a throughput batch that cannot be
#: allocated) from failing mid-run, blamed on the plugin. Each is far above any sensible recipe.
_LIMITS = {
    "train_limit": {"ge": 1, "le": 100_000_000}, "val_limit": {"ge": 1, "le": 100_000_000},
    "test_limit": {"ge": 1, "le": 100_000_000},
    "lr": {"gt": 0, "le": 10}, "momentum": {"ge": 0, "lt": 1}, "weight_decay": {"ge": 0, "le": 1},
    "batch_size": {"ge": 1, "le": 65_536}, "epochs": {"ge": 1, "le": 100_000},
    "plateau_factor": {"gt": 0, "le": 1}, "plateau_patience": {"ge": 1, "le": 100_000},
    "patience": {"ge": 1, "le": 100_000},
    "eval_batch_size": {"ge": 1, "le": 65_536}, "latency_warmup": {"ge": 0, "le": 10_000},
    "latency_windows": {"ge": 1, "le": 1_000}, "latency_iters": {"ge": 1, "le": 100_000},
    "throughput_batch": {"ge": 1, "le": 4_096}, "threads": {"ge": 0, "le": 1_024},
}

#: One line per field for `odnbench params recipe`.
_HELP = {
    "train_limit": "training images used (none: all)", "val_limit": "validation images (none: all)",
    "test_limit": "test images (none: all)",
    "width": "'full' or comma-separated stage widths, e.g. 16,32,64,128",
    "stem": "cifar: 3x3 stride-1 stem, no max-pool; imagenet: timm's own stem",
    "init": "torch: PyTorch's default layer init, BN weight 1 (the ODN authors'); timm: as built",
    "optimizer": "optimiser of every method that trains", "lr": "learning rate", "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay", "batch_size": "training batch size",
    "epochs": "cap on epochs for one training run",
    "schedule": "plateau: LR x plateau_factor after plateau_patience flat epochs; cosine; none",
    "plateau_factor": "LR factor of the plateau schedule", "plateau_patience": "flat epochs before a plateau decay",
    "patience": "early stop after this many epochs without validation improvement",
    "eval_batch_size": "evaluation batch size (top-1 does not depend on it)",
    "latency_warmup": "untimed batch-1 passes before latency", "latency_windows": "latency windows (median taken)",
    "latency_iters": "batch-1 passes per latency window", "throughput_batch": "batch size of the throughput timing",
    "threads": "torch threads per cell (0: torch's default)",
    "precision": "fp32, or bf16 autocast (weights and optimiser stay fp32)",
    "tf32": "TF32 math for fp32 matmul/conv on GPUs that have it (no effect on CPU)",
    "memory_format": "auto: channels-last on CUDA, contiguous on CPU",
    "compile": "torch.compile the training step (CUDA; skipped on CPU with a note)",
}


def recipe_params() -> dict[str, Param]:
    """Each recipe field as a typed :class:`Param`, so ``--set recipe.X=Y`` is validated."""
    out = {}
    for f in fields(Recipe):
        if f.name == "preset":
            continue
        typename = str(f.type).replace(" | None", "")
        limits: dict[str, Any] = _LIMITS.get(f.name, {})
        out[f.name] = Param(
            f.name, _FIELD_TYPES[typename], f.default, _HELP.get(f.name, ""), nullable="None" in str(f.type),
            choices=_CHOICES.get(f.name), **limits, sweep=f.name in _SWEEP,
        )
    return out


#: Recipe fields worth sweeping (``odnbench params recipe`` marks them); any field takes several values.
_SWEEP = ("epochs", "train_limit", "lr")


def make_recipe(preset: str, overrides: dict[str, str] | None = None) -> Recipe:
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, PRESETS)
    recipe = PRESETS[preset]
    allowed = recipe_params()
    changes = {}
    for key, text in (overrides or {}).items():
        if key not in allowed:
            raise UnknownNameError("recipe parameter", key, allowed)
        changes[key] = allowed[key].parse(text, "recipe")
    return _checked(dataclasses.replace(recipe, **changes))


def _checked(recipe: Recipe) -> Recipe:
    if recipe.width != "full":
        try:
            widths = recipe.widths
        except ValueError:
            widths = ()
        if not widths or any(w <= 0 for w in widths):
            raise OdnbenchError(f"recipe.width={recipe.width!r}: use 'full' or positive stage widths like 16,32,64,128")
    return recipe

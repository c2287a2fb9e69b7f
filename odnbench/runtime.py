"""Runtime helpers shared by the harness and verify: the device, seeding, the in-memory
dataset cache, and building a cell's backbone."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from odnbench.errors import OdnbenchError
from odnbench.recipes import Recipe
from odnbench.registry import Registry


def default_data_dir() -> Path:
    """Where datasets live unless --data-dir says otherwise: $ODNBENCH_DATA, else a user cache folder."""
    base = os.environ.get("ODNBENCH_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "odnbench", "data")
    return Path(base)


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OdnbenchError(f"device {name!r} asked for but CUDA is not available; use --device cpu or auto")
    if not (name == "cpu" or name.startswith("cuda")):
        raise OdnbenchError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class DataCache:
    """Datasets load once per process and are reused by every cell that needs the same split."""

    def __init__(self):
        self._cache: dict[tuple, Any] = {}

    def get(self, registry: Registry, name: str, data_dir: Path, download: bool, seed: int, recipe: Recipe, device):
        key = (name, str(data_dir), seed, recipe.train_limit, recipe.val_limit, recipe.test_limit, str(device))
        if key not in self._cache:
            from odnbench.data import check_splits, fingerprint

            splits = registry.dataset(name).load(Path(data_dir), download=download, seed=seed)
            check_splits(splits, name)
            splits.train = splits.train.subset(recipe.train_limit, seed)
            splits.val = splits.val.subset(recipe.val_limit, seed)
            splits.test = splits.test.subset(recipe.test_limit, 0)  # the same test images for every seed
            splits.fingerprint = fingerprint(splits)  # on the CPU tensors, before moving to the device
            self._cache = {key: splits.to(device)}  # keep one dataset in memory at a time
        return self._cache[key]


DATA_CACHE = DataCache()


def backbone_builder(registry: Registry, backbone_name: str, info, recipe: Recipe):
    """``build(width=None)``: a fresh DepthNet for a cell's backbone, input policy and (by default)
    the recipe's stage widths, initialised by ``recipe.init``, with the input policy recorded in its ``meta``."""
    from odnbench.initialization import apply_init

    backbone = registry.backbone(backbone_name)

    def build(width: tuple[int, ...] | None = None):
        net = backbone.build(in_chans=info.channels, num_classes=info.num_classes, stem=recipe.stem,
                             width=tuple(width) if width is not None else recipe.widths)
        apply_init(net, recipe.init)  # the same policy for every method of a cell
        net.meta.update({"backbone": backbone_name, "stem": recipe.stem, "in_chans": info.channels,
                         "num_classes": info.num_classes, "image_size": info.image_size})
        return net

    return build

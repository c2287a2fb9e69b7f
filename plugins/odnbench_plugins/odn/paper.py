"""What the ODN authors set and published (Tareen & Tareen, arXiv 2510.10764, and their five
notebooks; summarised in ../shared/odn-method.md). Plain data: no torch here.
"""

from __future__ import annotations

#: Hand-set targets (%) per dataset; the stop threshold is target - 0.5 everywhere (section 5).
TARGETS: dict[str, float] = {
    "mnist": 99.5,
    "emnist": 95.0,
    "fashion-mnist": 94.5,
    "svhn": 96.0,
    "cifar10": 94.5,
}
TOLERANCE = 0.5

#: Per-dataset recipe differences (sections 3 and 4); everything else is the same everywhere.
WARMUP: dict[str, tuple[int, float]] = {  # dataset -> (epochs, LR)
    "mnist": (3, 0.001),
    "emnist": (3, 0.001),
    "fashion-mnist": (3, 0.001),
    "svhn": (3, 0.01),
    "cifar10": (0, 0.001),  # no warm-up for CIFAR-10
}
BASE_LR: dict[str, float] = {"svhn": 0.1}  # 0.01 elsewhere
NEXT_DEPTH_LR_FACTOR: dict[str, float] = {"cifar10": 1.0}  # 0.5 elsewhere

#: Published results (section 8), keyed by (dataset, backbone). None = not published.
#: size_mb* are the paper's "MB" (saved state_dict, decimal megabytes).
SOURCE = "Tareen & Tareen, arXiv 2510.10764 (2025)"
PUBLISHED: dict[tuple[str, str], dict] = {
    ("mnist", "resnet18"): {"optimal_depth": 2, "top1": 99.31, "size_reduction_pct": 98.64,
                            "size_mb_full": 44.78, "size_mb": 0.61},
    ("emnist", "resnet18"): {"optimal_depth": 3, "top1": 95.04, "size_reduction_pct": None,
                             "size_mb_full": None, "size_mb": None},
    ("fashion-mnist", "resnet34"): {"optimal_depth": 6, "top1": 93.54, "size_reduction_pct": None,
                                    "size_mb_full": None, "size_mb": None},
    ("svhn", "resnet34"): {"optimal_depth": 5, "top1": 96.08, "size_reduction_pct": 96.44,
                           "size_mb_full": 85.29, "size_mb": 3.04},
    ("cifar10", "resnet50"): {"optimal_depth": 11, "top1": 93.35, "size_reduction_pct": 73.06,
                              "size_mb_full": 94.43, "size_mb": 25.44},
}

#: Epochs of the authors' logged runs after the warm-up (sections 4 and 8): the depth search and the
#: fine-tuning together (MNIST: 162, of which 57 fine-tune). The warm-up's epochs (WARMUP) come on top.
LOGGED_EPOCHS: dict[str, int] = {"mnist": 162, "fashion-mnist": 380, "svhn": 495}
#: Deprecated name of LOGGED_EPOCHS (it never excluded fine-tuning); removed after 0.2.0.
SEARCH_EPOCHS = LOGGED_EPOCHS
#: Of those, the fine-tuning epochs, where the notes state them.
LOGGED_FINETUNE_EPOCHS: dict[str, int] = {"mnist": 57}


def reference_cost(dataset: str) -> dict | None:
    """The authors' logged training epochs on ``dataset``, each counted once: ``warmup`` + ``search`` +
    ``finetune`` = ``total`` (``search``/``finetune`` None where the split is not stated; None when no run
    was logged). MNIST: 3 + 105 + 57 = 165."""
    if dataset not in LOGGED_EPOCHS:
        return None
    warmup = WARMUP.get(dataset, (3, 0.001))[0]
    after = LOGGED_EPOCHS[dataset]
    finetune = LOGGED_FINETUNE_EPOCHS.get(dataset)
    return {"warmup": warmup, "search": None if finetune is None else after - finetune, "finetune": finetune,
            "after_warmup": after, "total": warmup + after}


def reference_cost_text(dataset: str) -> str:
    """``165 (3+105+57)`` / ``383 (3+380 search and fine-tune)``: the form the epoch columns use."""
    c = reference_cost(dataset)
    if c is None:
        return "-"
    if c["finetune"] is None:
        return f"{c['total']} ({c['warmup']}+{c['after_warmup']} search and fine-tune)"
    return f"{c['total']} ({c['warmup']}+{c['search']}+{c['finetune']})"

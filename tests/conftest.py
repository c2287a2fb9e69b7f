"""Shared fixtures. Tests load only odnbench's own plugins (plus any a test installs on purpose),
so whatever else is installed on the machine cannot change the outcome."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ODNBENCH_SHARED_DATA points elsewhere (e.g. from a worktree that has no ../shared next to it).
SHARED_DATA = Path(os.environ.get("ODNBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(autouse=True)
def only_builtin_plugins(monkeypatch):
    if "ODNBENCH_LOAD_PLUGINS" not in os.environ:
        monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "odnbench")
    from odnbench import registry

    monkeypatch.setattr(registry, "_cached", None)
    yield


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests train tiny nets: a second thread gains nothing, and on a shared, busy CPU two OpenMP
    threads spin-wait on each other (a first forward can take seconds). Benchmarks set their own."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def shared_data() -> Path:
    """The real MNIST in ../shared/data (present in this workplace, absent in a user's clone)."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip("../shared/data/MNIST is not present")
    return SHARED_DATA


@pytest.fixture
def reg():
    from odnbench.registry import get_registry

    return get_registry(reload=True)


@pytest.fixture(scope="session")
def smoke_full_results(tmp_path_factory) -> Path:
    """`full` on mnist5k/resnet18, smoke preset, seeds 0 and 1: trained once per session and shared
    by every module that needs finished cells (read-only: copy it before writing, see
    ``copy_cells``). Its data folder is ``data/`` inside it, recorded in each result."""
    from odnbench import harness, plan
    from odnbench.progress import Progress
    from odnbench.registry import load_registry

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODNBENCH_LOAD_PLUGINS", os.environ.get("ODNBENCH_LOAD_PLUGINS", "odnbench"))
        reg = load_registry()
        out = tmp_path_factory.mktemp("smoke-full")
        (out / "data").mkdir()
        grid = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0, 1], "smoke")
        report = harness.run_grid(reg, grid, out, data_dir=out / "data", download=False, progress=Progress(quiet=True))
    assert not report.failed
    return out


def copy_cells(source: Path, target: Path, *, seeds: tuple[int, ...] | None = None) -> Path:
    """A private copy of the cell folders of a shared results folder (only those of ``seeds`` when
    given; not its data folder)."""
    import json
    import shutil

    target.mkdir(parents=True)
    for cell in sorted(p for p in source.iterdir() if (p / "result.json").is_file()):
        if seeds is None or json.loads((cell / "result.json").read_text())["config"]["seed"] in seeds:
            shutil.copytree(cell, target / cell.name)
    return target

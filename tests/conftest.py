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

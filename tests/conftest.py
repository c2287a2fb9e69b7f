"""Shared fixtures. Tests load only odnbench's own plugins (plus any a test installs on purpose),
so whatever else is installed on the machine cannot change the outcome."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# ODNBENCH_SHARED_DATA points elsewhere (e.g. from a worktree that has no ../shared next to it).
SHARED_DATA = Path(os.environ.get("ODNBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")


#: The fast tier (``pytest -m "not slow"``) stays under 2 CPU-minutes because no test in it is costly:
#: a test not marked ``slow`` fails when its body (the call phase) takes more than
#: ``CPU_LIMIT_SECONDS``, or its setup or teardown (fixtures; a shared one is charged to the first
#: test that needs it) more than ``FIXTURE_CPU_LIMIT_SECONDS``. CPU seconds of this process and the
#: subprocesses it waited for (user + system), not wall time, so a busy machine does not fail a test.
#: Make such a test cheaper or mark it ``@pytest.mark.slow``. It fails only in a run that selects the
#: fast tier; a full run (CI's) lists it in the summary instead. ``ODNBENCH_TEST_CPU_LIMIT=SECONDS``
#: sets the body's limit (the fixtures' scales with it; 0 turns the check off), e.g. on a slow CPU.
#: The summary gives the tier's total and its costliest ``ODNBENCH_TEST_CPU_SHOW`` phases (10), and
#: warns when a whole fast-tier run's phases took more than ``FAST_TIER_CPU_BUDGET``.
CPU_LIMIT_SECONDS = 3.0
FIXTURE_CPU_LIMIT_SECONDS = 5.0
#: Leaves room for start-up and collection (about 10 CPU seconds) under the 2 minutes.
FAST_TIER_CPU_BUDGET = 105.0


def cpu_seconds() -> float:
    """User + system CPU time of this process and of the children it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_limit(when: str = "call") -> float:
    """The most CPU seconds phase ``when`` of a test not marked slow may take (0: no limit)."""
    text = os.environ.get("ODNBENCH_TEST_CPU_LIMIT")
    try:
        limit = float(text) if text else CPU_LIMIT_SECONDS
    except ValueError:
        raise pytest.UsageError(f"ODNBENCH_TEST_CPU_LIMIT={text!r}: a number of CPU seconds (0: no limit)") from None
    return limit if when == "call" else limit * FIXTURE_CPU_LIMIT_SECONDS / CPU_LIMIT_SECONDS


def _fast_tier_selected(config) -> bool:
    """Whether this run leaves the slow tests out (``-m "not slow"``): only there does a costly
    unmarked test fail; a full run (CI's) lists it in the summary, so that how busy or how fast a
    machine is never fails a correct test."""
    return "not slow" in (config.getoption("markexpr") or "")


_OVER_LIMIT: list[str] = []  # unmarked tests over the limit in a full run (listed, not failed)
_FAST_TIER_CPU: list[tuple[float, str]] = []  # (CPU seconds, "test id phase") of unmarked tests, for the summary
_PHASE_CPU = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Time each phase of a test not marked slow in CPU seconds; fail the phase over the limit."""
    outcome = yield
    report = outcome.get_result()
    used = item.stash.get(_PHASE_CPU, {}).get(call.when)
    if used is None or item.get_closest_marker("slow") is not None:
        return
    _FAST_TIER_CPU.append((used, f"{item.nodeid} {call.when}"))
    limit = cpu_limit(call.when)
    if limit and used > limit and report.passed:
        if not _fast_tier_selected(item.config):  # a full run (CI): listed in the summary, not failed
            _OVER_LIMIT.append(f"{used:6.2f}s {item.nodeid} {call.when}")
            return
        report.outcome = "failed"
        report.longrepr = (f"{item.nodeid}: its {call.when} took {used:.1f} CPU seconds, more than the "
                           f"{limit:g} allowed a test not marked slow (tests/conftest.py): make it cheaper or "
                           "mark it @pytest.mark.slow")


def _timed_phase(item, when: str):
    start = cpu_seconds()
    yield
    item.stash.setdefault(_PHASE_CPU, {})[when] = cpu_seconds() - start


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _timed_phase(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _timed_phase(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _timed_phase(item, "teardown")


def pytest_terminal_summary(terminalreporter, config):
    """The CPU time of the tests not marked slow, and the costliest of them (the candidates for a
    slow mark when the fast tier grows)."""
    if not _FAST_TIER_CPU:
        return
    total = sum(used for used, _ in _FAST_TIER_CPU)
    terminalreporter.section("CPU time of tests not marked slow")
    terminalreporter.write_line(f"{total:.1f} CPU seconds in their phases (a body may take {cpu_limit():g}, a "
                                f"setup or teardown {cpu_limit('setup'):g}: tests/conftest.py); the costliest:")
    for used, what in sorted(_FAST_TIER_CPU, reverse=True)[:int(os.environ.get("ODNBENCH_TEST_CPU_SHOW") or 10)]:
        terminalreporter.write_line(f"{used:6.2f}s {what}")
    if _OVER_LIMIT:
        terminalreporter.write_line("over the limit, to mark @pytest.mark.slow (they fail under -m \"not slow\"):",
                                    yellow=True)
        for line in _OVER_LIMIT:
            terminalreporter.write_line(line)
    whole_tier = config.getoption("markexpr") == "not slow" and config.args == config.getini("testpaths")
    if whole_tier and total > FAST_TIER_CPU_BUDGET:
        terminalreporter.write_line(f"the fast tier took {total:.0f} CPU seconds, more than its budget of "
                                    f"{FAST_TIER_CPU_BUDGET:g} (tests/conftest.py FAST_TIER_CPU_BUDGET): mark the "
                                    "costliest tests above @pytest.mark.slow", red=True, bold=True)


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

"""The speed suite (pytest-benchmark): ``python -m pytest benchmarks --benchmark-only``.

Every test measures one thing with the ``benchmark`` fixture and puts the figure that matters in
``benchmark.extra_info`` (images per second, ms per image, ...), and ratios measured within the
same run in ``extra_info["ratios"]`` (higher is better), which ``--ratio-baseline`` compares with a
saved run (see benchmarks/ratios.py and docs/speed.md). Under ``--benchmark-disable`` (the test
suite's smoke run, tests/test_speed.py) each test runs once at a smaller size.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # loops.py and ratios.py, also under importlib mode

import ratios as ratio_check  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
_measured: dict[str, dict[str, float]] = {}  # fullname -> extra_info["ratios"] of this session
_report: dict[str, list[str]] = {}  # lines for the terminal summary
_baseline: list[Path] = []  # the saved run --ratio-baseline names, resolved at start-up


def pytest_addoption(parser):
    group = parser.getgroup("odnbench speed suite")
    group.addoption("--ratio-baseline", metavar="FILE",
                    help="a saved run (.benchmarks/<machine>/NNNN_NAME.json, or its id NNNN): fail when a "
                         "same-run ratio (extra_info['ratios']) fell more than --ratio-tolerance below it")
    group.addoption("--ratio-tolerance", type=float, default=ratio_check.DEFAULT_TOLERANCE, metavar="FRACTION",
                    help=f"allowed fall of a ratio, a fraction of the baseline (default {ratio_check.DEFAULT_TOLERANCE})")
    group.addoption("--bench-device", default="cpu",
                    help="device of the training benchmarks: cpu (default) or cuda (the ratio then compares "
                         "wall time, not process CPU time)")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # pyproject's addopts disable benchmarks for the test suite; asking for --benchmark-only here
    # means running them (pytest-benchmark would refuse the pair; --benchmark-enable is its override).
    if config.getoption("benchmark_only", False):
        config.option.benchmark_enable = True
    baseline = config.getoption("ratio_baseline", None)
    if baseline:  # a wrong file is a usage error now, not a surprise after minutes of benchmarks
        try:
            _baseline[:] = [ratio_check.resolve(baseline, config.getoption("benchmark_storage").split("://")[-1])]
        except ValueError as exc:
            raise pytest.UsageError(f"--ratio-baseline {exc}") from None


@pytest.fixture(autouse=True, scope="session")
def builtin_plugins_one_thread():
    """Only odnbench's own plugins, and one torch thread (as a cell runs by default): on a shared
    machine a second OpenMP thread mostly waits for the first."""
    import torch

    from odnbench import registry

    before_env, before_threads = os.environ.get("ODNBENCH_LOAD_PLUGINS"), torch.get_num_threads()
    if before_env is None:
        os.environ["ODNBENCH_LOAD_PLUGINS"] = "odnbench"
    registry._cached = None
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before_threads)
    if before_env is None:
        os.environ.pop("ODNBENCH_LOAD_PLUGINS", None)
    registry._cached = None


@pytest.fixture(scope="session")
def smoke(pytestconfig) -> bool:
    """True when benchmarks are disabled (each test runs once, as a check that it works): tests use
    their smaller sizes."""
    return bool(pytestconfig.getoption("benchmark_disable") and not pytestconfig.getoption("benchmark_enable"))


@pytest.fixture(scope="session")
def device(pytestconfig):
    from odnbench.runtime import pick_device

    return pick_device(pytestconfig.getoption("bench_device"))


@pytest.fixture
def benchmark(benchmark):
    """pytest-benchmark's fixture; what a test left in ``extra_info["ratios"]`` is kept for the check."""
    yield benchmark
    if benchmark.extra_info.get("ratios"):
        _measured[benchmark.fullname] = dict(benchmark.extra_info["ratios"])


def pytest_sessionfinish(session, exitstatus):
    if not _measured:
        return
    _report["now"] = [f"{name.split('::', 1)[-1]} {key}: {value:.3f}"
                      for name, ratios in sorted(_measured.items()) for key, value in sorted(ratios.items())]
    if _baseline:
        path = _baseline[0]
        tolerance = session.config.getoption("ratio_tolerance")
        lines, regressions = ratio_check.compare(ratio_check.load(path), _measured, tolerance)
        _report["compare"] = [f"against {path} (tolerance {tolerance:.0%}):", *lines]
        _report["regressions"] = regressions
        if regressions and session.exitstatus == 0:
            session.exitstatus = 1


@pytest.hookimpl(trylast=True)  # under pytest-benchmark's tables
def pytest_terminal_summary(terminalreporter):
    if "now" not in _report:
        return
    terminalreporter.section("same-run ratios (extra_info['ratios'], higher is better)")
    for line in _report["compare"] if "compare" in _report else _report["now"]:
        terminalreporter.write_line(line)
    if _report.get("regressions"):
        terminalreporter.write_line(f"{len(_report['regressions'])} ratio(s) regressed", red=True, bold=True)

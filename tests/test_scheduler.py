"""The scheduler on a fake executor (no training): dependency order, resume, failed dependencies,
--fail-fast, cell locks, and the ETA on a fake clock. Cells come from the real planner."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest
import torch

from odnbench import plan
from odnbench.executors import Executor, RunSpec
from odnbench.plan import Cell
from odnbench.progress import Progress
from odnbench.result import Result
from odnbench.scheduler import ETA_LINE_SECONDS, Eta, Scheduler
from odnbench.store import ResultStore


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_run_cell(outcomes: dict[str, str], calls: list[str], locks_held: list[bool], root: Path):
    """What the harness's run_cell does, without training: store a result (ok unless ``outcomes``
    says failed for the method), recording the order and whether the cell's lock was held."""

    def run_cell(registry, cell, results_dir, **kwargs):
        store = ResultStore(results_dir)
        locks_held.append((store.root / ".locks" / f"{cell.key}.lock").exists())
        calls.append(cell.config["method"])
        deps_ok = all((store.get(k) or Result("failed", k, {})).ok for k in cell.requires.values())
        ok = outcomes.get(cell.config["method"], "ok") == "ok" and deps_ok and not cell.error
        result = Result(status="ok" if ok else "failed", key=cell.key, config=cell.config,
                        metrics={"top1": 50.0, "params": 10, "size_mb": 0.1} if ok else None,
                        cost={"train_seconds": 1.0}, error=None if ok else "it failed")
        store.write(result)
        return result

    return run_cell


class FakeExecutor:
    """Runs ``slots`` cells at once: submit() queues, wait() finishes the oldest one, advancing the clock."""

    def __init__(self, slots: int = 1, clock: FakeClock | None = None, seconds: float = 10.0):
        self.slots, self.clock, self.seconds = slots, clock, seconds
        self.queue: list[Cell] = []
        self.submitted: list[str] = []
        self.max_at_once = 0
        self.closed = False

    def info(self) -> dict[str, Any]:
        return {"name": "fake", "cells_at_once": self.slots}

    def start(self, run: RunSpec) -> str:
        self.run = run
        return ""

    def free(self) -> int:
        return self.slots - len(self.queue)

    def submit(self, cell: Cell) -> None:
        self.queue.append(cell)
        self.submitted.append(cell.config["method"])
        self.max_at_once = max(self.max_at_once, len(self.queue))

    def wait(self, timeout: float | None) -> list[tuple[Cell, Result]]:
        cell = self.queue.pop(0)
        if self.clock is not None:
            self.clock.now += self.seconds
        r = self.run
        return [(cell, r.run_cell(r.registry, cell, r.results_dir, data_dir=r.data_dir, download=False,
                                  device=r.device, progress=r.progress, grid_cells=r.grid_cells, executor=self.info()))]

    def close(self) -> None:
        self.closed = True


def test_the_fake_executor_is_an_executor() -> None:
    """The scheduler's tests hold for every executor only if the fake is one: the protocol's six
    methods, with its parameters (mypy checks the types where a FakeExecutor is used as an Executor)."""
    fake: Executor = FakeExecutor()
    assert isinstance(fake, Executor)
    for name in ("info", "start", "free", "submit", "wait", "close"):
        ours, theirs = inspect.signature(getattr(FakeExecutor, name)), inspect.signature(getattr(Executor, name))
        assert list(ours.parameters) == list(theirs.parameters), name
        assert ours.return_annotation == theirs.return_annotation, name


def test_compare_offers_every_registered_executor_and_each_builds_one():
    import importlib.util

    from odnbench.cli import compare
    from odnbench.executors import EXECUTORS, ExecutorOptions, ProcessExecutor, SerialExecutor

    option = next(p for p in compare.params if p.name == "executor")
    assert list(option.type.choices) == list(EXECUTORS) == ["local", "ray"]
    assert type(EXECUTORS["local"](ExecutorOptions())) is SerialExecutor
    assert type(EXECUTORS["local"](ExecutorOptions(jobs=2))) is ProcessExecutor
    built = [EXECUTORS["local"](ExecutorOptions(jobs=j)) for j in (1, 2)]
    if importlib.util.find_spec("ray") is not None:
        built.append(EXECUTORS["ray"](ExecutorOptions(jobs=2)))  # connects only when a cell is submitted
    assert all(isinstance(e, Executor) for e in built)


@pytest.fixture
def grid(reg):
    # full; prune and odn after it; truncate after full and odn: a small dependency graph.
    return plan.plan_grid(reg, ["prune", "truncate"], ["mnist5k"], ["resnet18"], [0], "smoke")


def schedule(reg, grid, tmp_path, executor=None, outcomes=None, lines=None, **kwargs):
    import io

    import torch

    calls, locks = [], []
    stream = io.StringIO()
    run = RunSpec(registry=reg, results_dir=tmp_path / "results", data_dir=tmp_path, download=False,
                  device=torch.device("cpu"), progress=Progress(stream=stream), grid_cells=grid.by_key(),
                  run_cell=fake_run_cell(outcomes or {}, calls, locks, tmp_path), record_failure=None)
    executor = executor or FakeExecutor()
    report = Scheduler(grid, executor, run, **kwargs).run()
    if lines is not None:
        lines.extend(stream.getvalue().splitlines())
    return report, calls, locks, executor


def test_cells_run_after_their_dependencies_under_their_locks(reg, grid, tmp_path):
    report, calls, locks, executor = schedule(reg, grid, tmp_path, FakeExecutor(slots=3))
    order = {m: i for i, m in enumerate(calls)}
    for cell in grid.cells:
        for key in cell.requires.values():
            assert order[grid.by_key()[key].config["method"]] < order[cell.config["method"]]
    assert sorted(calls) == sorted(c.config["method"] for c in grid.cells)
    assert all(locks) and executor.closed and not report.failed and report.skipped == 0
    assert not any((tmp_path / "results" / ".locks").glob("*.lock"))  # every lock released
    assert executor.max_at_once >= 2  # independent cells run at once


def test_finished_cells_are_resumed_and_failed_ones_rerun(reg, grid, tmp_path):
    schedule(reg, grid, tmp_path, outcomes={"truncate": "failed"})
    report, calls, _, _ = schedule(reg, grid, tmp_path)
    assert calls == ["truncate"] and report.skipped == len(grid.cells) - 1 and not report.failed
    report, calls, _, _ = schedule(reg, grid, tmp_path, resume=False)
    assert sorted(calls) == sorted(c.config["method"] for c in grid.cells)


def test_a_failed_dependency_fails_its_dependants_without_a_worker(reg, grid, tmp_path):
    lines: list[str] = []
    report, calls, _, executor = schedule(reg, grid, tmp_path, outcomes={"full": "failed"}, lines=lines)
    assert "prune" not in executor.submitted and "truncate" not in executor.submitted
    assert {"prune", "truncate"} <= set(calls)  # stored as failed through run_cell, in this process
    assert {r.method for r in report.failed} >= {"full", "prune", "truncate"}
    assert any("FAILED" in line and "full" in line for line in lines)


def test_fail_fast_starts_nothing_after_the_first_failure(reg, grid, tmp_path):
    report, calls, _, _ = schedule(reg, grid, tmp_path, outcomes={calls_first(grid): "failed"}, fail_fast=True)
    assert calls == [calls_first(grid)] and len(report.results) == 1 and report.failed


def calls_first(grid) -> str:
    return grid.cells[0].config["method"]


def test_a_cell_another_run_holds_is_waited_for_then_its_result_used(reg, grid, tmp_path):
    store = ResultStore(tmp_path / "results")
    first = grid.cells[0]
    other = store.lock(first.key)
    assert other.acquire()
    waited = []

    def sleep(seconds):  # the other run stores the cell and lets go while this one waits
        waited.append(seconds)
        store.write(Result(status="ok", key=first.key, config=first.config, metrics={"top1": 1.0, "params": 1,
                                                                                     "size_mb": 0.1},
                           cost={"train_seconds": 0.0}))
        other.release()

    lines: list[str] = []
    report, calls, _, _ = schedule(reg, grid, tmp_path, FakeExecutor(slots=1), lines=lines, sleep=sleep)
    assert first.config["method"] not in calls and report.skipped == 1 and not report.failed
    assert any("another odnbench run" in line for line in lines)
    assert any("done by another run meanwhile, used" in line for line in lines)


def test_eta_is_cells_left_times_mean_without_epochs():
    clock = FakeClock()
    eta = Eta(clock)
    assert eta.seconds_left(pending=3) is None  # nothing measured yet
    eta.start("a")
    clock.now += 100
    eta.finish("a")
    assert eta.seconds_left(pending=3) == pytest.approx(300)
    assert eta.seconds_left(pending=3, slots=3) == pytest.approx(100)
    assert eta.text(1, 4, 3) == "1/4 finished, ETA 5.0 min"


def test_eta_uses_the_running_cells_measured_epochs():
    clock = FakeClock()
    eta = Eta(clock)
    eta.start("long")
    clock.now += 60
    for done in (1, 2):  # 30 s per epoch measured, capped at 40 epochs in this fit
        eta.epoch("long", done, 40, 30.0)
    # Before any cell finished: 38 epochs x 30 s left for the running cell, and each of the 2 pending
    # cells guessed as long as it (60 s so far + 1140 s).
    assert eta.seconds_left(pending=2) == pytest.approx(38 * 30 + 2 * 1200)
    # A short cell finished earlier does not make the long one look short.
    eta.durations.append(10.0)
    assert eta.seconds_left(pending=0) == pytest.approx(38 * 30)


def test_eta_of_a_method_whose_own_loop_has_no_known_length():
    clock = FakeClock()
    eta = Eta(clock)
    eta.start("a")
    clock.now += 10
    eta.finish("a")
    eta.start("odn")
    clock.now += 50
    eta.epoch("odn", 0, 0, 25.0)  # train_epoch outside fit: its time is known, not how many are left
    # Past the mean (10 s) and with no known budget, the running cell still needs at least one more
    # epoch (25 s), never 0 while it runs; the pending cell counts as the mean.
    assert eta.seconds_left(pending=1) == pytest.approx(25 + 10)
    eta.durations.clear()
    # Without a finished cell: one more epoch, and the pending cell guessed as long as it (50 + 25 s).
    assert eta.seconds_left(pending=1) == pytest.approx(25 + 75)


def test_the_scheduler_reports_a_running_cells_epochs_in_its_eta(reg, tmp_path):
    clock = FakeClock()
    grid = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0, 1], "smoke")

    class EpochsExecutor(FakeExecutor):
        def wait(self, timeout):
            cell = self.queue[0]
            for done in range(1, 4):  # 3 epochs of at most 10, 20 s each
                clock.now += 20
                self.run.on_epoch(cell.key, done, 10, 20.0)
            return super().wait(timeout)

    lines: list[str] = []
    schedule(reg, grid, tmp_path, EpochsExecutor(clock=clock, seconds=0.0), lines=lines, clock=clock)
    eta_lines = [line for line in lines if line.startswith("grid: ")]
    # 60 s after the first cell started: 7 epochs x 20 s left, and the other cell guessed as long (200 s).
    assert eta_lines[0] == f"grid: 0/2 finished, ETA {(7 * 20 + 200) / 60:.1f} min, running cells to their epoch caps"
    assert ETA_LINE_SECONDS == 60.0


def epoch_reporting_run_cell(registry, cell, results_dir, *, progress, **kwargs):
    """A worker's run_cell that trains nothing: two epochs reported, then an ok result stored.
    (Module-level, so a spawned worker finds it by name.)"""
    for done in (1, 2):
        progress.epoch(done, 5, 1.5)
    result = Result(status="ok", key=cell.key, config=cell.config, metrics={"top1": 1.0, "params": 1, "size_mb": 0.1},
                    cost={"train_seconds": 0.0})
    ResultStore(results_dir).write(result)
    return result


@pytest.mark.slow
def test_a_worker_process_reports_its_cells_epochs_to_the_driver(reg, tmp_path):
    import time

    import torch

    from odnbench.executors import ProcessExecutor

    grid = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke")
    seen = []
    run = RunSpec(registry=reg, results_dir=tmp_path / "results", data_dir=tmp_path, download=False,
                  device=torch.device("cpu"), progress=Progress(quiet=True), grid_cells=grid.by_key(),
                  run_cell=epoch_reporting_run_cell, record_failure=None,
                  on_epoch=lambda *args: seen.append(args))
    executor = ProcessExecutor(1, threads=1)
    executor.start(run)
    try:
        executor.submit(grid.cells[0])
        done, deadline = [], time.monotonic() + 120
        while not done and time.monotonic() < deadline:
            done = executor.wait(5)
    finally:
        executor.close()
    assert [r.ok for _, r in done] == [True]
    assert seen == [(grid.cells[0].key, 1, 5, 1.5), (grid.cells[0].key, 2, 5, 1.5)]


def test_the_serial_executor_passes_a_cells_epochs_to_the_eta(reg, tmp_path):
    import io

    from odnbench.executors import SerialExecutor

    clock = FakeClock()
    grid = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0, 1], "smoke")
    store_cell = fake_run_cell({}, [], [], tmp_path)

    def run_cell(registry, cell, results_dir, **kwargs):
        for done in (1, 2, 3):  # 30 s epochs, at most 10
            clock.now += 30
            kwargs["progress"].epoch(done, 10, 30.0)
        return store_cell(registry, cell, results_dir, **kwargs)

    stream = io.StringIO()
    run = RunSpec(registry=reg, results_dir=tmp_path / "results", data_dir=tmp_path, download=False,
                  device=torch.device("cpu"), progress=Progress(stream=stream), grid_cells=grid.by_key(),
                  run_cell=run_cell, record_failure=None)
    Scheduler(grid, SerialExecutor(), run, clock=clock).run()
    lines = [line for line in stream.getvalue().splitlines() if line.startswith("grid: ")]
    # The first line a minute in (epoch 2): 8 epochs x 30 s left, the other cell guessed as long (300 s);
    # one cell at a time.
    assert lines[0] == f"grid: 0/2 finished, ETA {(8 * 30 + 300) / 60:.1f} min, running cells to their epoch caps"

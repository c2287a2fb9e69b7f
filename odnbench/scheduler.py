"""Which cell of a grid runs when: dependency order, resume, cell locks, ``--fail-fast``, the ETA.

:class:`Scheduler` hands cells to an executor (:mod:`odnbench.executors`), each as soon as the
cells it requires have finished, in grid order. It never trains anything itself: an executor runs
each cell through the harness's ``run_cell`` (given in the :class:`~odnbench.executors.RunSpec`),
so the scheduler can be tested with a fake executor and a fake clock.

- **Resume**: a cell whose result is already stored ``ok`` is used, not rerun (``resume=False``
  reruns it); a failed one runs again.
- **Locks**: each cell runs under its lock in the results folder (:meth:`ResultStore.lock`); a cell
  another run on the same folder holds is waited for, and a result that other run stored while this
  one was running is used, not redone.
- **Failed dependencies**: a cell whose dependency failed is stored as failed at once, in this
  process, without a worker (``run_cell`` names the dependency).
- **--fail-fast**: no cell starts after the first failure; cells already running finish and are stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from odnbench.errors import CorruptResultError
from odnbench.executors import Executor, RunSpec
from odnbench.plan import Cell, Grid
from odnbench.progress import Progress
from odnbench.result import Result
from odnbench.store import RESULT_FILE, CellLock, ResultStore

#: How often a run waiting for a cell that another run holds looks again.
LOCK_POLL_SECONDS = 0.5
#: While a cell runs, its epochs update the ETA; a line saying it is printed at most this often.
ETA_LINE_SECONDS = 60.0


@dataclass
class GridReport:
    results: list[Result]  # in grid order
    skipped: int  # finished before (resume) or by another run on the same folder
    failed: list[Result]


@dataclass
class _Running:
    started: float
    epochs_done: int = 0  # over all its fits so far
    epoch_seconds: float = 0.0  # measured, summed over those epochs
    fit_done: int = 0  # epochs done in the fit it is in now ...
    fit_cap: int = 0  # ... of at most this many (an upper bound: patience may end it sooner)


@dataclass
class Eta:
    """The grid's remaining time, from what was measured.

    Each finished cell's wall time counts towards the mean cell time. A running cell that has
    reported epochs (:meth:`epoch`) is estimated from its own measured epoch time: the epochs its
    current fit has left (up to its cap) at that pace, and at least the mean cell time once a cell
    has finished; until one has, a pending cell is guessed to take as long as the running ones.
    A running cell without epochs yet counts as the mean cell time. The work left is divided over
    the cells that run at once. (It was "cells left x mean cell time" alone, which says nothing
    while the first cell runs and under-estimates a long cell that follows short ones.)
    """

    clock: Callable[[], float] = time.perf_counter
    durations: list[float] = field(default_factory=list)
    running: dict[str, _Running] = field(default_factory=dict)

    def start(self, key: str) -> None:
        self.running[key] = _Running(self.clock())

    def epoch(self, key: str, done: int, cap: int, seconds: float) -> None:
        run = self.running.get(key)
        if run is not None:
            run.epochs_done += 1
            run.epoch_seconds += seconds
            run.fit_done, run.fit_cap = done, max(cap, done)

    def finish(self, key: str, timed: bool = True) -> None:
        run = self.running.pop(key, None)
        if run is not None and timed:
            self.durations.append(self.clock() - run.started)

    def seconds_left(self, pending: int, slots: int = 1) -> float | None:
        """Seconds until the grid is done (None when nothing was measured yet)."""
        now = self.clock()
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        left, measured = 0.0, mean is not None
        running_guess = []
        for run in self.running.values():
            elapsed = now - run.started
            if run.epochs_done:
                per_epoch = run.epoch_seconds / run.epochs_done
                fit_left = (run.fit_cap - run.fit_done) * per_epoch
                total = elapsed + fit_left
                if mean is not None:
                    total = max(total, mean)
                left += total - elapsed
                running_guess.append(total)
                measured = True
            elif mean is not None:
                left += max(0.0, mean - elapsed)
        if not measured:
            return None
        per_pending = mean if mean is not None else sum(running_guess) / len(running_guess)
        left += pending * per_pending
        return left / max(1, slots)

    def text(self, finished: int, total: int, pending: int, slots: int = 1) -> str:
        seconds = self.seconds_left(pending, slots) if pending or self.running else None
        if seconds is None:
            return f"{finished}/{total} finished"
        return f"{finished}/{total} finished, ETA {seconds / 60:.1f} min"


class Scheduler:
    """Runs one grid on one executor; :meth:`run` returns what happened to every cell."""

    def __init__(self, grid: Grid, executor: Executor, run: RunSpec, *, resume: bool = True, fail_fast: bool = False,
                 clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep):
        self.grid = grid
        self.executor = executor
        self.run_spec = run
        self.resume = resume
        self.fail_fast = fail_fast
        self.sleep = sleep
        self.progress: Progress = run.progress
        self.store = ResultStore(run.results_dir)
        self.total = len(grid.cells)
        self.index = {c.key: i for i, c in enumerate(grid.cells, 1)}
        self.stamps = {c.key: stamp(self.store, c) for c in grid.cells}  # each result.json as this run found it
        self.done: dict[str, Result] = {}
        self.pending: list[Cell] = list(grid.cells)
        self.running: dict[str, CellLock] = {}
        self.waiting: set[str] = set()
        self.skipped = 0
        self.executed = 0  # cells that did run (the ETA's rate counts only those)
        self.stop = False
        self.eta = Eta(clock)
        self._clock = clock
        self._last_eta_line = clock()
        run.on_epoch = self.epoch

    # ------------------------------------------------------------------------------------ driving

    def run(self) -> GridReport:
        progress = self.progress
        for p in self.store.clean_stale_temp_files():
            progress.line(f"removed {p.name}, left in {self.store.root} by an interrupted write")
        try:
            description = self.executor.start(self.run_spec)
            if description:
                progress.line(description)
            while self.pending or self.running:
                acted = self.dispatch() if not self.stop else False
                if self.running:
                    for cell, result in self.executor.wait(LOCK_POLL_SECONDS if self.waiting else None):
                        self.finished(cell, result)
                elif self.stop or not self.pending:
                    break
                elif not acted:
                    if not self.waiting:
                        raise RuntimeError(f"no cell can start: {[c.label() for c in self.pending]}")  # a planning bug
                    self.sleep(LOCK_POLL_SECONDS)
        finally:
            for lock in self.running.values():
                lock.release()
            self.executor.close()
        results = [self.done[c.key] for c in self.grid.cells if c.key in self.done]
        return GridReport(results, self.skipped, [r for r in results if not r.ok])

    def dispatch(self) -> bool:
        """Start every cell that can start now, in grid order; True when anything happened."""
        acted = False
        for cell in list(self.pending):
            if self.stop:
                break
            if any(k in self.run_spec.grid_cells and k not in self.done for k in cell.requires.values()):
                continue  # a dependency is still to finish
            blocked = bool(cell.error) or not all(self.dependency_ok(k) for k in cell.requires.values())
            if not blocked and not self.executor.free() and self.stored_elsewhere(cell) is None:
                break  # keep grid order: later cells wait for a free worker too
            lock = self.store.lock(cell.key)
            if not lock.acquire():
                if cell.key not in self.waiting:
                    self.waiting.add(cell.key)
                    self.progress.line(f"{self.tag(cell)} {cell.label()}: another odnbench run "
                                       f"({who(lock.holder())}) is running it; waiting")
                continue
            prior = self.stored_elsewhere(cell)  # looked at under the lock: no run is writing it now
            if prior is not None:
                lock.release()  # (also clears a lock file left by a run killed after storing it)
                fresh = stamp(self.store, cell) != self.stamps[cell.key]
                self.used(cell, prior, "done by another run meanwhile, used" if fresh
                          else "done already (resume), skipped")
                acted = True
                continue
            if lock.taken_over:
                self.progress.line(f"{self.tag(cell)} {cell.label()}: took over the lock left by a run that ended "
                                   f"({who(lock.taken_over)})")
            self.pending.remove(cell)
            self.waiting.discard(cell.key)
            self.running[cell.key] = lock
            acted = True
            note = " (needed by another cell)" if cell.added_as_dependency else ""
            if blocked:  # it fails at once (run_cell says which dependency): no worker needed
                self.progress.line(f"{self.tag(cell)} {cell.label()}{note}")
                r = self.run_spec
                self.finished(cell, r.run_cell(r.registry, cell, r.results_dir, data_dir=r.data_dir,
                                               download=r.download, device=r.device,
                                               progress=self.progress.child(f"  [{cell.config['method']}] "),
                                               grid_cells=r.grid_cells, executor=self.executor.info()), timed=False)
                continue
            self.progress.line(f"{self.tag(cell)} {cell.label()}{note}" + (f"; {self.eta_text()}" if self.executed
                                                                          else ""))
            self.eta.start(cell.key)
            self.executor.submit(cell)
        return acted

    # ------------------------------------------------------------------------------------ events

    def finished(self, cell: Cell, result: Result, timed: bool = True) -> None:
        lock = self.running.pop(cell.key, None)
        if lock is not None:
            lock.release()
        self.done[cell.key] = result
        self.executed += timed
        self.eta.finish(cell.key, timed)
        if result.ok:
            m = result.metrics or {}
            cost = result.cost or {}
            self.progress.line(f"{self.tag(cell)} done {cell.label()}: top-1 {m['top1']:.2f}%, {m['params']:,} params, "
                               f"{m['size_mb']:.3f} MB, {cost['train_seconds']:.0f}s training; {self.eta_text()}")
        else:
            self.progress.line(f"{self.tag(cell)} FAILED {cell.label()}: {result.error}; {self.eta_text()}")
            self.stop = self.stop or self.fail_fast

    def epoch(self, key: str, done: int, cap: int, seconds: float) -> None:
        """A running cell finished an epoch (``done`` of at most ``cap`` in its current fit, taking
        ``seconds``): the ETA learns from it, and says so at most every ETA_LINE_SECONDS."""
        self.eta.epoch(key, done, cap, seconds)
        now = self._clock()
        if now - self._last_eta_line >= ETA_LINE_SECONDS:
            self._last_eta_line = now
            self.progress.line(f"grid: {self.eta_text()}")

    def used(self, cell: Cell, result: Result, how: str) -> None:
        for p in self.store.clean_stale_temp_files(self.store.cell_dir(cell.config)):
            self.progress.line(f"removed {p.name}, left in {cell.dirname} by an interrupted write")
        self.pending.remove(cell)
        self.waiting.discard(cell.key)
        self.done[cell.key] = result
        self.skipped += 1
        self.progress.line(f"{self.tag(cell)} {cell.label()}: {how}")

    # ------------------------------------------------------------------------------------ looking

    def tag(self, cell: Cell) -> str:
        return f"[{self.index[cell.key]}/{self.total}]"

    def eta_text(self) -> str:
        slots = max(1, int(self.executor.info().get("cells_at_once") or 1))  # cells that can run at once
        return self.eta.text(len(self.done), self.total, len(self.pending), slots)

    def dependency_ok(self, key: str) -> bool:
        result = self.done.get(key) or readable(self.store.get, key)
        return result is not None and result.ok

    def stored_elsewhere(self, cell: Cell) -> Result | None:
        """A result to use instead of running the cell: finished before (resume) or meanwhile by another run."""
        prior = readable(self.store.stored, cell.config)
        if prior is None:
            return None  # an unreadable result.json is no result: run_cell sets it aside and reruns
        if stamp(self.store, cell) != self.stamps[cell.key]:
            return prior  # written since this run started, by another run: its outcome stands
        return prior if self.resume and prior.ok else None


def readable(read, what) -> Result | None:
    try:
        return read(what)
    except CorruptResultError:
        return None


def stamp(store: ResultStore, cell: Cell):
    """Identity of a cell's stored result.json (inode and mtime), None when there is none."""
    try:
        st = (store.cell_dir(cell.config) / RESULT_FILE).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def who(holder: dict | None) -> str:
    """``pid 123 on host, since 12:00:05`` from what a lock file says."""
    holder = holder or {}
    since = time.strftime("%H:%M:%S", time.localtime(holder["started"])) if holder.get("started") else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since}"

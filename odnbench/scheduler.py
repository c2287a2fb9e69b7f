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
from odnbench.store import RESULT_FILE, CellLock, ResultStore, canonical_json

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
    fit_done: int = 0  # epochs done in the loop it is in now ...
    fit_cap: int = 0  # ... of at most this many (its budget: patience or a target may end it sooner)
    expected: float | None = None  # seconds a stored record of the same configuration took, when there is one


@dataclass
class Eta:
    """The grid's remaining time, from what was measured.

    A running cell that has reported epochs (:meth:`epoch`) is estimated from its own measured
    epoch time and its method's remaining budget: the epochs its current loop has left (up to its
    cap: ``fit`` passes its epochs; a method with its own loop passes its whole remaining budget,
    ODN its remaining search depths x ``max_epochs_per_depth`` plus its fine-tune cap) at that pace,
    an upper bound where patience or a target may end the loop sooner. Without a known budget it
    counts as the mean cell time, and while work remains never less than one more epoch. A pending
    cell counts as long as a stored record of the same configuration took (``expected``), else the
    mean finished cell, else the running ones. The work left is divided over the cells that run at
    once. (Earlier versions said 0.0 min while an ODN search still had minutes to go: a cell past the
    mean cell time counted as done.)
    """

    clock: Callable[[], float] = time.perf_counter
    durations: list[float] = field(default_factory=list)
    running: dict[str, _Running] = field(default_factory=dict)
    capped: bool = False  # the last estimate counted a running cell to its epoch cap (an upper bound)

    def start(self, key: str, expected: float | None = None) -> None:
        self.running[key] = _Running(self.clock(), expected=expected)

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

    def _running_left(self, run: _Running, now: float, mean: float | None) -> float | None:
        """Seconds the running cell still needs (None: nothing known about it yet)."""
        elapsed = now - run.started
        per_epoch = run.epoch_seconds / run.epochs_done if run.epochs_done else None
        if per_epoch is not None and run.fit_cap > run.fit_done:
            self.capped = True
            return (run.fit_cap - run.fit_done) * per_epoch  # its budget at its own pace
        guess = run.expected if run.expected is not None else mean
        if guess is None and per_epoch is None:
            return None
        # Past its guess (or with no guess), a cell that is still running needs at least one more epoch.
        return max((guess or 0.0) - elapsed, per_epoch or 0.0, 1.0)

    def seconds_left(self, pending: int | list[float | None], slots: int = 1) -> float | None:
        """Seconds until the grid is done (None when nothing was measured yet). ``pending``: the
        cells still to start, as a count or as each one's expected seconds (None: unknown)."""
        now = self.clock()
        self.capped = False
        mean = sum(self.durations) / len(self.durations) if self.durations else None
        expected = [None] * pending if isinstance(pending, int) else list(pending)
        left, known = 0.0, mean is not None
        running_guess = []
        for run in self.running.values():
            run_left = self._running_left(run, now, mean)
            if run_left is None:
                continue
            left += run_left
            known = True
            running_guess.append(now - run.started + run_left)
        known = known or any(e is not None for e in expected)
        if not known:
            return None
        fallback = mean if mean is not None else (sum(running_guess) / len(running_guess) if running_guess else None)
        for one in expected:
            left += one if one is not None else (fallback or 0.0)
        return left / max(1, slots)

    def text(self, finished: int, total: int, pending: int | list[float | None], slots: int = 1) -> str:
        waiting = pending if isinstance(pending, int) else len(pending)
        seconds = self.seconds_left(pending, slots) if waiting or self.running else None
        if seconds is None:
            return f"{finished}/{total} finished"
        bound = ", running cells to their epoch caps" if self.capped else ""
        return f"{finished}/{total} finished, ETA {seconds / 60:.1f} min{bound}"


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
        # cells a resume will use, not run (the ETA counts no time for them)
        self.resumable = {c.key for c in grid.cells if resume and self.stamps[c.key] is not None
                          and (readable(self.store.stored, c.config) or Result("failed", "", {})).ok}
        self.done: dict[str, Result] = {}
        self.pending: list[Cell] = list(grid.cells)
        self.running: dict[str, CellLock] = {}
        self.waiting: set[str] = set()
        self.skipped = 0
        self.executed = 0  # cells that did run (the ETA's rate counts only those)
        self.stop = False
        self.eta = Eta(clock)
        self.times = stored_times(self.store)  # wall seconds of stored cells, by configuration but seed
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
            self.eta.start(cell.key, expected_seconds(cell, self.times))  # first, so that the ETA counts it
            self.progress.line(f"{self.tag(cell)} {cell.label()}{note}" + (f"; {self.eta_text()}" if self.executed
                                                                          else ""))
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
            self.progress.line(f"{self.tag(cell)} done {cell.label()}: top-1 {m['top1']:.2f}%, {m['params']:,} params, "
                               f"{m['size_mb']:.3f} MB, {training_time(result.cost or {})}; {self.eta_text()}")
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
        pending = [0.0 if c.key in self.resumable else expected_seconds(c, self.times) for c in self.pending]
        return self.eta.text(len(self.done), self.total, pending, slots)

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


def training_time(cost: dict) -> str:
    """``249s own training + 181s of its dependencies = 430s``: a cell's own time and the time with
    its dependencies, said as such (a cell without dependencies: ``93s own training``)."""
    own = (cost.get("own") or {}).get("train_seconds", cost.get("train_seconds", 0.0))
    total = cost.get("train_seconds", own)
    if not cost.get("dependencies") or total - own < 0.5:
        return f"{own:.0f}s own training"
    return f"{own:.0f}s own training, {total:.0f}s with dependencies"


def config_without_seed(config: dict) -> str:
    """What stored cells of the same configuration share: the canonical config less its seed."""
    return canonical_json({k: v for k, v in config.items() if k != "seed"})


def stored_times(store: ResultStore) -> dict[str, list[float]]:
    """The wall seconds of every stored ``ok`` cell (its own run, not its dependencies'), by
    :func:`config_without_seed`: what a cell of the same configuration is expected to take."""
    out: dict[str, list[float]] = {}
    for _, result in store:
        if result.ok and isinstance(result.wall_seconds, (int, float)) and result.wall_seconds > 0:
            out.setdefault(config_without_seed(result.config), []).append(float(result.wall_seconds))
    return out


def expected_seconds(cell: Cell, times: dict[str, list[float]]) -> float | None:
    """The mean wall time of the stored cells of ``cell``'s configuration (any seed); None when none is stored."""
    found = times.get(config_without_seed(cell.config))
    return sum(found) / len(found) if found else None


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

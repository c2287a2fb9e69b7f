"""Where a grid's cells run: one after another in this process, in worker processes on this
machine (``compare --jobs N``), or as tasks on a Ray cluster (``compare --executor ray``).

:class:`odnbench.scheduler.Scheduler` decides which cell runs when (dependencies, resume, locks,
``--fail-fast``); an executor only runs the cells it is given, each through
:func:`odnbench.harness.run_cell`, and hands back each finished cell's stored
:class:`~odnbench.result.Result`. Every executor is an :class:`Executor` (a typing protocol: the
six methods the scheduler calls), and ``compare --executor NAME`` builds the one
:data:`EXECUTORS` names, from :class:`ExecutorOptions`. A new executor is a class with those six
methods and a factory added to :data:`EXECUTORS` (docs/architecture.md, "Where to add things").

Workers get names and configs only (a :class:`~odnbench.plan.Cell` is plain data): each loads
the plugins itself, from the installed entry points, so no plugin object is ever pickled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import wait as wait_for
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from odnbench.errors import OdnbenchError
from odnbench.plan import Cell
from odnbench.progress import Progress
from odnbench.registry import Registry
from odnbench.result import Result
from odnbench.store import RESULT_FILE, ResultStore, atomic_write_bytes

#: A worker's log (its progress lines, warnings, a traceback), kept in the cell's folder.
LOG_FILE = "log.txt"
#: Ray re-runs a task this many times when the process running it dies (not when the cell fails).
RAY_MAX_RETRIES = 2


#: A result's env["executor"] when its cell ran alone in the ``compare``/``run`` process.
SERIAL = {"name": "serial", "cells_at_once": 1}


@dataclass
class RunSpec:
    """What every cell of one grid run shares. ``run_cell`` and ``record_failure`` are the
    harness's (:func:`odnbench.harness.run_cell`, :func:`odnbench.harness.record_failure`): given,
    not imported, so that the harness can use executors without an import cycle. Workers get them
    pickled by reference (module and name)."""

    registry: Registry
    results_dir: Path
    data_dir: Path
    download: bool
    device: Any  # torch.device the user asked for
    progress: Progress
    grid_cells: dict[str, Cell]
    run_cell: Callable[..., Result]
    record_failure: Callable[..., Result]
    #: ``on_epoch(cell key, done, cap, seconds)``: a running cell's trainer finished an epoch (the
    #: scheduler's ETA). The serial and process executors report them; Ray tasks do not (yet).
    on_epoch: Callable[[str, int, int, float], None] | None = None

    def epoch_listener(self, cell: Cell):
        on_epoch = self.on_epoch
        return None if on_epoch is None else (lambda done, cap, seconds: on_epoch(cell.key, done, cap, seconds))


@runtime_checkable
class Executor(Protocol):
    """Where cells run: what the :class:`~odnbench.scheduler.Scheduler` calls, and nothing else."""

    def info(self) -> dict[str, Any]:
        """Stored as each result's ``env["executor"]``: ``name`` and ``cells_at_once`` at least."""
        ...

    def start(self, run: RunSpec) -> str:
        """Get ready for ``run``; returns a line for the log ("" for none). Costly set-up (workers, a
        Ray connection) waits for the first :meth:`submit`, so a grid that is all resumed costs nothing."""
        ...

    def free(self) -> int:
        """How many more cells it can take now."""
        ...

    def submit(self, cell: Cell) -> None:
        """Start one cell (through ``run.run_cell``)."""
        ...

    def wait(self, timeout: float | None) -> list[tuple[Cell, Result]]:
        """The cells finished since the last call, each with its stored result (ok or failed), waiting
        at most ``timeout`` seconds (None: until one finishes)."""
        ...

    def close(self) -> None:
        """Stop: idle workers exit; a cell still running is stopped and stores nothing."""
        ...


@dataclass(frozen=True)
class ExecutorOptions:
    """``compare``'s scale-out options, as given (None: not given), for an executor's factory."""

    jobs: int = 1
    worker_threads: int | None = None
    ray_address: str | None = None
    ray_gpus: float | None = None
    ray_cpus: float | None = None


#: Builds an executor from the options, or raises a one-line OdnbenchError naming a bad option.
ExecutorFactory = Callable[[ExecutorOptions], Executor]


#: The most cells (or torch threads per worker, or Ray CPUs/GPUs per cell) one option may ask for.
MAX_PARALLEL = 1024


def make_executor(executor: str = "local", jobs: int = 1, worker_threads: int | None = None,
                  ray_address: str | None = None, ray_gpus: float | None = None,
                  ray_cpus: float | None = None) -> Executor:
    """The executor ``compare``'s options ask for (``executor``: a name in :data:`EXECUTORS`); a bad
    combination is a one-line error before anything runs."""
    if executor not in EXECUTORS:
        raise OdnbenchError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise OdnbenchError(f"--jobs {jobs}: must be at least 1 (cells run at once)")
    if jobs > MAX_PARALLEL:
        raise OdnbenchError(f"--jobs {jobs}: at most {MAX_PARALLEL} cells run at once")
    if worker_threads is not None and worker_threads < 1:
        raise OdnbenchError(f"--worker-threads {worker_threads}: must be at least 1")
    if worker_threads is not None and worker_threads > MAX_PARALLEL:
        raise OdnbenchError(f"--worker-threads {worker_threads}: at most {MAX_PARALLEL}")
    for name, value in (("--ray-gpus", ray_gpus), ("--ray-cpus", ray_cpus)):
        if value is not None and not (math.isfinite(value) and value <= MAX_PARALLEL):
            raise OdnbenchError(f"{name} {value}: must be a finite number, at most {MAX_PARALLEL}")
    return EXECUTORS[executor](ExecutorOptions(jobs, worker_threads, ray_address, ray_gpus, ray_cpus))


def local_executor(options: ExecutorOptions) -> Executor:
    """``--executor local``: this process (``--jobs 1``) or ``--jobs`` worker processes."""
    ray_given = [name for name, value in (("--ray-address", options.ray_address), ("--ray-gpus", options.ray_gpus),
                                          ("--ray-cpus", options.ray_cpus)) if value is not None]
    if ray_given:
        raise OdnbenchError(f"{ray_given[0]} applies to --executor ray only")
    if options.jobs == 1:
        if options.worker_threads is not None:
            raise OdnbenchError("--worker-threads applies to worker processes (--jobs 2 or more, or "
                                "--executor ray); a single-process run takes --set recipe.threads=N")
        return SerialExecutor()
    return ProcessExecutor(options.jobs, threads=options.worker_threads)


def ray_executor(options: ExecutorOptions) -> Executor:
    """``--executor ray``: a Ray task per cell (``pip install 'odnbench[ray]'``)."""
    ray_gpus, ray_cpus = options.ray_gpus, options.ray_cpus
    if ray_gpus is not None and ray_gpus < 0:
        raise OdnbenchError(f"--ray-gpus {ray_gpus}: must be ≥ 0 (a fraction such as 0.25 shares a GPU)")
    if ray_cpus is not None and ray_cpus <= 0:
        raise OdnbenchError(f"--ray-cpus {ray_cpus}: must be positive")
    if importlib.util.find_spec("ray") is None:
        raise OdnbenchError("--executor ray needs Ray, which is not installed: pip install 'odnbench[ray]'")
    return RayExecutor(address=options.ray_address, jobs=options.jobs if options.jobs > 1 else None,
                       cpus_per_cell=ray_cpus or 1.0, gpus_per_cell=ray_gpus or 0.0, threads=options.worker_threads)


#: ``compare --executor NAME``: each name's factory (the CLI's choices, in this order).
EXECUTORS: dict[str, ExecutorFactory] = {"local": local_executor, "ray": ray_executor}


# --------------------------------------------------------------------------------------- serial


class SerialExecutor:
    """Today's behaviour: one cell at a time, in this process, progress on the terminal."""

    def __init__(self):
        self._done: list[tuple[Cell, Result]] = []
        self._run: RunSpec  # given by start()

    def info(self) -> dict:
        return dict(SERIAL)

    def start(self, run: RunSpec) -> str:
        self._run = run
        return ""

    def free(self) -> int:
        return 0 if self._done else 1

    def submit(self, cell: Cell) -> None:
        r = self._run
        progress = r.progress.child(f"  [{cell.config['method']}] ").listening(r.epoch_listener(cell))
        result = r.run_cell(r.registry, cell, r.results_dir, data_dir=r.data_dir, download=r.download, device=r.device,
                            progress=progress, grid_cells=r.grid_cells, executor=self.info())
        self._done.append((cell, result))

    def wait(self, timeout: float | None) -> list[tuple[Cell, Result]]:
        done, self._done = self._done, []
        return done

    def close(self) -> None:
        pass


# ------------------------------------------------------------------------------ worker processes


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads(cells_at_once: int) -> int:
    """Torch threads per worker so that the workers together use each core once: the count a cell
    with ``recipe.threads=0`` runs with (a cell runs with ``recipe.threads``, 1 by default)."""
    return max(1, usable_cores() // cells_at_once)


def worker_devices(device, jobs: int, gpu_count: int) -> list[str]:
    """The device of each worker: ``cuda`` without an index spreads them over the visible GPUs
    (several per GPU when there are more workers than GPUs); anything else is used by all."""
    if device.type == "cuda" and device.index is None and gpu_count > 0:
        return [f"cuda:{i % gpu_count}" for i in range(jobs)]
    return [str(device)] * jobs


@dataclass
class _Worker:
    index: int
    device: str
    process: Any
    conn: Any
    cell: Cell | None = None


@dataclass
class _WorkerSetup:
    parent_pid: int
    results_dir: str
    data_dir: str
    download: bool
    device: str
    threads: int
    executor: dict
    run_cell: Callable[..., Result]


class ProcessExecutor:
    """``--jobs N``: N worker processes (``spawn``: torch is not fork-safe), each running one cell
    at a time with its own torch threads, its log in the cell's folder. A worker that dies fails
    its cell alone and is replaced; workers exit when this process does, even on ``kill -9``."""

    def __init__(self, jobs: int, threads: int | None = None):
        self.jobs = jobs
        self.threads = threads
        self._workers: list[_Worker] = []
        self._run: RunSpec  # given by start()
        self._devices: list[str] = []

    def info(self) -> dict:
        return {"name": "process", "cells_at_once": self.jobs}

    def start(self, run: RunSpec) -> str:
        import torch

        self._run = run
        self.threads = self.threads or default_threads(self.jobs)
        gpus = torch.cuda.device_count() if run.device.type == "cuda" else 0
        self._devices = worker_devices(run.device, self.jobs, gpus)
        self._ctx = multiprocessing.get_context("spawn")
        self._workers = []
        shared = ", ".join(f"{d} x{self._devices.count(d)}" for d in dict.fromkeys(self._devices))
        return (f"odnbench: {self.jobs} worker processes ({shared}), each cell with recipe.threads torch threads "
                f"(default 1; 0 = the worker's {self.threads}); each cell's log goes to <cell folder>/{LOG_FILE}")

    def _spawn(self, index: int) -> _Worker:
        r = self._run
        assert self.threads is not None  # chosen by start()
        setup = _WorkerSetup(os.getpid(), str(r.results_dir), str(r.data_dir), r.download, self._devices[index],
                             self.threads, self.info(), r.run_cell)
        ours, theirs = self._ctx.Pipe()
        process = self._ctx.Process(target=_process_worker, args=(theirs, setup), name=f"odnbench-worker-{index}",
                                    daemon=True)
        process.start()
        theirs.close()
        return _Worker(index, self._devices[index], process, ours)

    def free(self) -> int:
        return self.jobs - sum(w.cell is not None for w in self._workers)

    def submit(self, cell: Cell) -> None:
        worker = next((w for w in self._workers if w.cell is None), None)
        if worker is None:  # started when first needed
            worker = self._spawn(len(self._workers))
            self._workers.append(worker)
        elif not worker.process.is_alive():  # its last cell killed it: a fresh one takes its place
            worker = self._workers[worker.index] = self._spawn(worker.index)
        try:
            worker.conn.send(cell)
        except OSError:  # it died while idle (e.g. the OOM killer): start a fresh one for this cell
            worker.process.join(timeout=10)
            worker = self._workers[worker.index] = self._spawn(worker.index)
            worker.conn.send(cell)
        worker.cell = cell

    def wait(self, timeout: float | None) -> list[tuple[Cell, Result]]:
        busy = [(w, w.cell) for w in self._workers if w.cell is not None]
        ready = set(wait_for([w.conn for w, _ in busy] + [w.process.sentinel for w, _ in busy], timeout))
        done = []
        for w, cell in busy:
            if w.conn not in ready and w.process.sentinel not in ready:
                continue
            message = None
            try:
                while message is None and w.conn.poll():
                    message = w.conn.recv()
                    if message[0] == "epoch":  # the cell goes on: its epochs feed the ETA
                        if self._run.on_epoch is not None:
                            self._run.on_epoch(cell.key, *message[1:])
                        message = None
            except (EOFError, OSError):
                pass
            if message is None and w.process.is_alive() and w.process.sentinel not in ready:
                continue  # only epochs arrived (or the pipe closed as it exits: the sentinel says so next)
            w.cell = None
            if message is not None:
                done.append((cell, self._stored(cell, w, message)))
                continue
            w.process.join(timeout=10)  # the other workers and cells go on; submit() replaces this one
            code = w.process.exitcode
            killed = code is not None and code < 0
            how = f"was killed by {_signal_name(-code)}" if killed else f"died (exit code {code})"
            log = self._run.results_dir / cell.dirname / LOG_FILE
            done.append((cell, self._failure(cell, w, f"the worker process running this cell {how} before it "
                                                      f"could store a result; its log: {log}")))
        return done

    def _stored(self, cell: Cell, worker: _Worker, message: tuple) -> Result:
        if message[0] == "result":
            return Result.from_dict(message[1])
        return self._failure(cell, worker, message[1], message[2])

    def _failure(self, cell: Cell, worker: _Worker, error: str, tb: str | None = None) -> Result:
        import torch

        return self._run.record_failure(self._run.registry, cell, self._run.results_dir, error,
                                        device=torch.device(worker.device), executor=self.info(), traceback_text=tb)

    def close(self) -> None:
        for w in self._workers:
            if w.process.is_alive() and w.cell is None:
                with contextlib.suppress(OSError):
                    w.conn.send(None)  # idle: finish
        deadline = time.monotonic() + 5
        for w in self._workers:
            if w.cell is not None:  # interrupted mid-cell: stop it now (no partial result is ever stored)
                w.process.terminate()
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.kill()
                w.process.join()
            w.conn.close()
        self._workers = []


def _process_worker(conn, setup: _WorkerSetup) -> None:
    """A worker process's main loop: run each cell it is sent, answer with its stored result."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle; it stops us
    _exit_with_parent(setup.parent_pid)
    _set_threads(setup.threads)
    from odnbench.registry import get_registry

    try:
        registry: Registry | tuple[str, str] = get_registry()
    except Exception as exc:  # every cell sent here fails with the reason (message, traceback)
        registry = (f"the worker could not load the plugins: {type(exc).__name__}: {exc}",
                    traceback.format_exc(limit=8))
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            return
        if isinstance(registry, tuple):
            conn.send(("error", *registry))
            continue
        conn.send(run_logged(setup.run_cell, registry, cell, Path(setup.results_dir), data_dir=Path(setup.data_dir),
                             download=setup.download, device=setup.device, threads=setup.threads,
                             executor=setup.executor, on_epoch=_epoch_sender(conn)))


def _epoch_sender(conn):
    """The worker's per-epoch report to its driver. When the driver is gone (``kill -9``) the send
    fails inside the method's training loop: die at once, as the parent watch would, rather than let
    run_cell store that broken pipe as the method's failure over the cell's folder."""

    def send(done: int, cap: int | None, seconds: float) -> None:
        try:
            conn.send(("epoch", done, cap, seconds))
        except OSError:
            os.kill(os.getpid(), signal.SIGKILL)

    return send


def _exit_with_parent(parent_pid: int) -> None:
    """A worker must not outlive its driver (a ``kill -9`` of ``compare`` included): it would go on
    training a cell whose lock is gone, and the rerun would run it a second time."""

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)  # at once: no cleanup may touch the results folder

    threading.Thread(target=watch, name="odnbench-parent-watch", daemon=True).start()


def _set_threads(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)  # for libraries that read it when they load
    import torch

    torch.set_num_threads(threads)


def run_logged(run_cell: Callable[..., Result], registry: Registry, cell: Cell, results_dir: Path, *,
               data_dir: Path, download: bool, device: str, threads: int, executor: dict,
               on_epoch=None) -> tuple:
    """Run one cell in a worker with its output going to ``<cell folder>/log.txt``. Returns
    ``("result", result_dict)``, or ``("error", message, traceback)`` when something outside the
    method failed (run_cell itself records a method's failure as a failed result)."""
    import torch

    folder = ResultStore(results_dir).cell_dir(cell.config)
    folder.mkdir(parents=True, exist_ok=True)
    where = torch.device(device)
    if where.type == "cuda" and where.index is not None:
        torch.cuda.set_device(where)
    with open(folder / LOG_FILE, "w", buffering=1) as log, \
            contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        progress = Progress(stream=log, on_epoch=on_epoch)
        progress.line(f"odnbench worker (pid {os.getpid()}, {executor['name']}): {cell.label()} on {where}, "
                      f"{threads} torch thread{'s' if threads > 1 else ''}, key {cell.key}")
        try:
            result = run_cell(registry, cell, results_dir, data_dir=data_dir, download=download, device=where,
                              progress=progress, executor=executor)
        except Exception as exc:
            text = traceback.format_exc(limit=8)
            log.write(text)
            return ("error", f"the worker failed outside the method: {type(exc).__name__}: {exc}", text)
        except KeyboardInterrupt:  # workers ignore Ctrl-C: this one came from the cell's code; its log keeps it
            text = traceback.format_exc(limit=8)
            log.write(text)
            return ("error", "the cell raised KeyboardInterrupt in a worker process (Ctrl-C is the driver's; workers "
                             f"ignore it): the traceback is in {folder / LOG_FILE}", text)
        progress.line(f"{result.status}" + (f": {result.error}" if result.error else ""))
        return ("result", result.to_dict())


# ------------------------------------------------------------------------------------------ ray


class RayExecutor:
    """``--executor ray``: each cell is a Ray task, on the cluster at ``address`` (or
    ``$RAY_ADDRESS``), else on a Ray instance started here (this machine only, loopback).

    The task gets the cell and the files of the cells it requires, runs it in a private temporary
    folder and returns the result and the files its record names (model, artifacts) and its log; this
    process writes them into the results folder, so the workers need no shared filesystem, only
    odnbench and the same plugins installed. A task whose process dies is retried
    (``RAY_MAX_RETRIES``); a cell whose method raised is a failed cell, as everywhere.
    """

    def __init__(self, address: str | None = None, jobs: int | None = None, cpus_per_cell: float = 1.0,
                 gpus_per_cell: float = 0.0, threads: int | None = None, max_retries: int = RAY_MAX_RETRIES):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.jobs = jobs
        self.cpus_per_cell = cpus_per_cell
        self.gpus_per_cell = gpus_per_cell
        self.threads = threads or max(1, int(cpus_per_cell))
        self.max_retries = max_retries
        self.slots = 1
        self._connected = False
        self._started_ray = False
        self._tasks: dict[Any, Cell] = {}
        self._dep_refs: dict[str, Any] = {}
        self._run: RunSpec  # given by start()

    def info(self) -> dict:
        return {"name": "ray", "cells_at_once": self.slots, "cluster": "remote" if self.address else "local"}

    def start(self, run: RunSpec) -> str:
        self._run = run
        if run.device.type == "cuda" and self.gpus_per_cell == 0:
            raise OdnbenchError(f"--device {run.device} with --executor ray: say how much of a GPU each cell "
                                "takes with --ray-gpus (1, or a fraction such as 0.25)")
        return ""

    def _connect(self) -> None:
        """Join the cluster (or start a local instance) when the first cell is submitted."""
        import ray

        if not ray.is_initialized():
            quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
            if self.address:
                ray.init(address=self.address, **quiet)
            else:
                cpus = int(self.jobs * self.cpus_per_cell) if self.jobs else usable_cores()
                ray.init(address="local", num_cpus=max(1, cpus), include_dashboard=False,
                         _node_ip_address="127.0.0.1", **quiet)
            self._started_ray = True
        have = ray.cluster_resources()
        fits = int(have.get("CPU", 0) // self.cpus_per_cell)
        if self.gpus_per_cell:
            fits = min(fits, int(have.get("GPU", 0) // self.gpus_per_cell))
        if fits < 1:
            raise OdnbenchError(f"the Ray cluster has {have.get('CPU', 0):g} CPUs and {have.get('GPU', 0):g} GPUs; "
                                f"a cell asks for {self.cpus_per_cell:g} CPUs and {self.gpus_per_cell:g} GPUs "
                                "(--ray-cpus, --ray-gpus)")
        self.slots = min(self.jobs, fits) if self.jobs else fits
        self._remote = ray.remote(_ray_cell).options(num_cpus=self.cpus_per_cell, num_gpus=self.gpus_per_cell,
                                                     max_retries=self.max_retries)
        self._connected = True
        where = f"the Ray cluster at {self.address}" if self.address else "a local Ray instance"
        self._run.progress.line(
            f"odnbench: up to {self.slots} cells at once on {where} ({have.get('CPU', 0):g} CPUs, "
            f"{have.get('GPU', 0):g} GPUs; {self.cpus_per_cell:g} CPU and {self.gpus_per_cell:g} GPU per cell, "
            f"recipe.threads torch threads per cell, default 1; 0 = the worker's {self.threads}); each cell's log goes to "
            f"<cell folder>/{LOG_FILE}")

    def free(self) -> int:
        return self.slots - len(self._tasks)  # one until connected: the first submit connects

    def submit(self, cell: Cell) -> None:
        if not self._connected:
            self._connect()
        r = self._run
        job = {"cell": cell, "data_dir": str(r.data_dir), "download": r.download, "device": r.device.type,
               "threads": self.threads, "executor": self.info(), "run_cell": r.run_cell,
               "plugins": os.environ.get("ODNBENCH_LOAD_PLUGINS"), "strict": os.environ.get("ODNBENCH_STRICT_PLUGINS")}
        deps = [self._dependency(key) for key in cell.requires.values()]
        self._tasks[self._remote.remote(job, *deps)] = cell

    def _dependency(self, key: str):
        """A finished dependency's folder, put in Ray's object store once for every task that needs it."""
        import ray

        if key not in self._dep_refs:
            store = ResultStore(self._run.results_dir)
            folder = store.find(key)
            result = store.read(folder) if folder is not None else None
            assert folder is not None and result is not None  # the scheduler submits a cell once its dependencies are stored
            files = (RESULT_FILE, *result.stored_files())  # by its record: model and artifacts
            self._dep_refs[key] = ray.put((folder.name, read_folder(folder, only=files)))
        return self._dep_refs[key]

    def wait(self, timeout: float | None) -> list[tuple[Cell, Result]]:
        import ray

        ready, _ = ray.wait(list(self._tasks), num_returns=1, timeout=timeout)
        if ready:  # and whatever else has finished by now
            ready, _ = ray.wait(list(self._tasks), num_returns=len(self._tasks), timeout=0)
        done = []
        for ref in ready:
            cell = self._tasks.pop(ref)
            try:
                message, files = ray.get(ref)
            except ray.exceptions.RayError as exc:
                done.append((cell, self._failure(cell, f"the Ray task running this cell failed (retried "
                                                       f"{self.max_retries} times when its worker died): "
                                                       f"{type(exc).__name__}: {_first_line(exc)}")))
                continue
            done.append((cell, self._store(cell, message, files)))
        return done

    def _store(self, cell: Cell, message: tuple, files: dict[str, bytes]) -> Result:
        """Write what the task returned into the results folder, result.json last."""
        folder = ResultStore(self._run.results_dir).cell_dir(cell.config)
        for rel, data in files.items():
            atomic_write_bytes(folder / rel, data)
        if message[0] != "result":
            return self._failure(cell, message[1], message[2])
        result = Result.from_dict(message[1])
        ResultStore(self._run.results_dir).write(result)
        return result

    def _failure(self, cell: Cell, error: str, tb: str | None = None) -> Result:
        return self._run.record_failure(self._run.registry, cell, self._run.results_dir, error,
                                        executor=self.info(), traceback_text=tb)

    def close(self) -> None:
        if not (self._connected or self._started_ray):
            return
        import ray

        self._connected = False
        for ref in list(self._tasks):  # interrupted: cancel what is still running
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        self._tasks.clear()
        self._dep_refs.clear()
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False


_RAY_REGISTRY: dict[tuple, Registry] = {}


def _ray_cell(job: dict, *dependencies) -> tuple:
    """A Ray task: run one cell in a temporary results folder holding its dependencies' files;
    return the run's message and every file of the cell's folder."""
    import ray
    import torch

    from odnbench.registry import load_registry

    selection = (job["plugins"], job["strict"])
    for name, value in zip(("ODNBENCH_LOAD_PLUGINS", "ODNBENCH_STRICT_PLUGINS"), selection):
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if selection not in _RAY_REGISTRY:  # a Ray worker process runs many tasks: load the plugins once
        _RAY_REGISTRY[selection] = load_registry()
    _set_threads(job["threads"])
    device = "cuda" if job["device"] != "cpu" and ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
    cell: Cell = job["cell"]
    clean_dead_task_folders()
    with tempfile.TemporaryDirectory(prefix=RAY_TMP_PREFIX) as tmp:
        root = Path(tmp)
        (root / RAY_TMP_OWNER).write_text(str(os.getpid()))  # who uses it: a killed task's is swept later
        for dirname, files in dependencies:
            for rel, data in files.items():
                atomic_write_bytes(root / dirname / rel, data)
        message = run_logged(job["run_cell"], _RAY_REGISTRY[selection], cell, root, data_dir=Path(job["data_dir"]),
                             download=job["download"], device=device, threads=job["threads"],
                             executor=job["executor"])
        # result.json goes back in the message; the files its record names (model, artifacts) and the log here.
        stored = Result.from_dict(message[1]).stored_files() if message[0] == "result" else []
        return message, read_folder(root / cell.dirname, only=(LOG_FILE, *stored))


RAY_TMP_PREFIX = "odnbench-ray-"
RAY_TMP_OWNER = ".odnbench-owner"


def clean_dead_task_folders(tmp_root: Path | None = None) -> list[Path]:
    """Remove the temporary folders of Ray tasks that were killed (their ``with`` never ran its
    cleanup): those whose owner process is gone. Never one of a live task."""
    import shutil

    removed = []
    for folder in sorted(Path(tmp_root or tempfile.gettempdir()).glob(f"{RAY_TMP_PREFIX}*")):
        try:
            if folder.is_symlink() or not folder.is_dir():
                continue
            pid = int((folder / RAY_TMP_OWNER).read_text().strip())
            os.kill(pid, 0)
            continue  # alive (or not ours to signal): keep
        except ProcessLookupError:
            pass
        except (OSError, ValueError):
            continue  # no owner file (yet) or not ours: keep
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def read_folder(folder: Path, only: tuple[str, ...]) -> dict[str, bytes]:
    """The files ``only`` names in ``folder`` that exist (name -> bytes)."""
    folder = Path(folder)
    return {name: (folder / name).read_bytes() for name in only if (folder / name).is_file()}


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__

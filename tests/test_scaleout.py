"""Scale-out: a grid's cells in worker processes (``compare --jobs N``) and as Ray tasks
(``compare --executor ray``), the cell lock that keeps two runs on one folder from running a cell
twice, and crash behaviour (a dying worker, a ``kill -9`` of the driver).

Real training throughout (smoke preset). Worker processes load plugins from entry points like any
user's run, so the test plugins here are installed as real distributions (a ``*.dist-info``
folder on the path), which spawned workers find as well.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from odnbench import store
from odnbench.errors import OdnbenchError
from odnbench.executors import LOG_FILE, default_threads, make_executor, usable_cores, worker_devices

BUILTIN = "odnbench"
# The dependency chain of the issue: full -> odn (relative target) -> prune matched to odn's size,
# two seeds. ODN is held to depth 6 (of 8) so that prune always has a smaller model to match.
CHAIN = ["--method", "odn", "--method", "prune", "--method", "full", "--set", "prune.match=odn:size",
         "--set", "odn.start_depth=6", "--set", "odn.max_depth=6", "--seed", "0", "--seed", "1"]


def compare(results: Path, *args: str):
    from odnbench.cli import cli

    return CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--results", str(results), *args])


def stored(results: Path) -> dict[str, dict]:
    """Every stored result by folder name."""
    return {folder.name: raw for folder, raw in store.ResultStore(results).raw()}


def odnbench_cmd() -> list[str]:
    script = shutil.which("odnbench")
    return [script] if script else [sys.executable, "-c", "import sys; from odnbench.cli import main; sys.exit(main())"]


def install_dist(site: Path, monkeypatch, dist: str, module: str, source: str) -> None:
    """An installed distribution (module + dist-info with an ``odnbench`` entry point) on sys.path
    and PYTHONPATH, selected next to the built-ins, so spawned workers and subprocesses load it too."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[odnbench]\n{module} = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", f"{BUILTIN},{module}")
    monkeypatch.delitem(sys.modules, module, raising=False)


DIES = '''
import os

from odnbench import Method, MethodOutput, Requirement, hookimpl


class Dies(Method):
    name = "dies"
    description = "test method: its worker process dies on seed 0"

    def requires(self, params):
        return [Requirement("full")]

    def run(self, ctx):
        ctx.progress.line("dies: about to exit the worker process")
        if ctx.seed == 0:
            os._exit(13)
        return MethodOutput(ctx.dependency("full").load_model(ctx.device), {})


@hookimpl
def register_methods(register):
    register(Dies())
'''

COUNTED = '''
import os
import time

from odnbench import Method, MethodOutput, Requirement, hookimpl


class Counted(Method):
    name = "counted"
    description = "test method: notes every run of itself in $ODNBENCH_TEST_COUNTER"

    def requires(self, params):
        return [Requirement("full")]

    def run(self, ctx):
        with open(os.environ["ODNBENCH_TEST_COUNTER"], "a") as f:
            f.write(f"seed {ctx.seed} pid {os.getpid()}\\n")
        time.sleep(1.0)  # long enough for the other run to reach the same cell
        return MethodOutput(ctx.dependency("full").load_model(ctx.device), {})


@hookimpl
def register_methods(register):
    register(Counted())
'''


# ----------------------------------------------------------------------------- options and helpers


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "--jobs 0: must be at least 1"),
    (["--worker-threads", "2"], "--worker-threads applies to worker processes"),
    (["--jobs", "2", "--worker-threads", "0"], "--worker-threads 0: must be at least 1"),
    (["--ray-gpus", "0.5"], "--ray-gpus applies to --executor ray only"),
    (["--executor", "ray", "--ray-gpus", "-1"], "--ray-gpus -1.0: must be ≥ 0"),
    (["--executor", "dask"], "Invalid value for '--executor'"),
])
def test_bad_scale_out_options_are_one_line_errors_before_anything_runs(tmp_path, args, message):
    out = compare(tmp_path / "r", "--method", "full", *args)
    assert out.exit_code == 2 and message in out.stderr, out.output
    assert not (tmp_path / "r").exists()


def test_ray_missing_is_a_one_line_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(OdnbenchError, match=r"pip install 'odnbench\[ray\]'"):
        make_executor("ray")


def test_workers_spread_over_the_visible_gpus_and_share_one():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert worker_devices(cuda, 4, 1) == ["cuda:0"] * 4  # --jobs 4 on one GPU
    assert worker_devices(cuda, 3, 2) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_devices(torch.device("cuda:1"), 2, 2) == ["cuda:1", "cuda:1"]  # an explicit GPU is kept
    assert worker_devices(cpu, 2, 0) == ["cpu", "cpu"]
    cores = usable_cores()
    assert default_threads(1) == cores and default_threads(cores * 2) == 1
    assert default_threads(2) * 2 <= max(cores, 2)  # two workers never ask for more threads than cores


# ----------------------------------------------------------------------------- the cell lock


HOLD_LOCK = '''
import sys, time
from odnbench.store import ResultStore
lock = ResultStore(sys.argv[1]).lock("abc123")
assert lock.acquire()
print("held", flush=True)
time.sleep(600)
'''


def test_a_cell_lock_is_exclusive_and_a_killed_holders_lock_is_taken_over(tmp_path):
    results = store.ResultStore(tmp_path)
    first, second = results.lock("abc123"), results.lock("abc123")
    assert first.acquire() and first.held
    assert not second.acquire()  # another holder, even in the same process
    assert second.holder()["pid"] == os.getpid()
    assert results.lock("other").acquire()  # other cells are independent
    first.release()
    assert not first.path.exists()
    assert second.acquire() and second.taken_over is None  # released cleanly: nothing to take over
    second.release()

    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert not results.lock("abc123").acquire()
        assert results.lock("abc123").holder()["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    lock = results.lock("abc123")
    assert lock.path.exists()  # the killed run left its lock file behind ...
    assert lock.acquire()  # ... and the kernel released its lock: taken over
    assert lock.taken_over["pid"] == holder.pid and lock.holder()["pid"] == os.getpid()
    lock.release()


# ----------------------------------------------------------------------------- parallel = serial


@pytest.fixture(scope="module")
def serial_chain(tmp_path_factory):
    """The chain grid run one cell after another in this process (1 torch thread: conftest)."""
    results = tmp_path_factory.mktemp("serial") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
        from odnbench import registry

        mp.setattr(registry, "_cached", None)
        out = compare(results, *CHAIN)
    assert out.exit_code == 0, out.output
    assert "cells ran at once" not in (results / "leaderboard.md").read_text()
    return stored(results)


def assert_same_cells(serial: dict[str, dict], other: dict[str, dict], executor: str) -> None:
    assert sorted(other) == sorted(serial) and len(serial) == 6  # the same cell keys (folder names)
    for name, r in other.items():
        s = serial[name]
        assert r["status"] == s["status"] == "ok", (name, r["error"])
        assert r["key"] == s["key"] and r["requires"] == s["requires"]
        for field in ("params", "size_mb", "macs", "top1", "val_top1"):
            assert r["metrics"][field] == s["metrics"][field], (name, field)
        assert r["facts"]["depth"] == s["facts"]["depth"]
        assert r["env"]["threads"] == s["env"]["threads"] == 1  # recorded: what each cell ran with
        assert r["env"]["executor"]["name"] == executor and s["env"]["executor"]["name"] == "serial"


@pytest.mark.slow
def test_jobs_2_gives_the_serial_results_with_each_log_in_its_cell_folder(serial_chain, tmp_path):
    results = tmp_path / "results"
    out = compare(results, *CHAIN, "--jobs", "2", "--worker-threads", "1")
    assert out.exit_code == 0, out.output
    assert "2 worker processes (cpu x2), each cell with recipe.threads torch threads (default 1; 0 = the worker's 1)" \
        in out.stderr
    assert "6 ok (0 resumed), 0 failed" in out.stdout
    got = stored(results)
    assert_same_cells(serial_chain, got, "process")
    assert all(r["env"]["executor"]["cells_at_once"] == 2 for r in got.values())
    # One line per finished cell, with the grid's ETA until the last.
    done = [line for line in out.stderr.splitlines() if "] done " in line]
    assert len(done) == 6 and all("finished" in line for line in done) and "ETA" in done[0]
    for name in got:  # each worker's log is kept with its cell
        log = (results / name / LOG_FILE).read_text()
        assert log.startswith("odnbench worker (pid ") and "1 torch thread" in log and log.rstrip().endswith("ok")
    odn = next(name for name in got if name.startswith("odn-"))
    assert "ODN: optimal depth 6" in (results / odn / LOG_FILE).read_text()  # the method's own lines
    assert not list((results / store.LOCK_DIR).iterdir())  # every lock released
    board = (results / "leaderboard.md").read_text()  # timings that shared the machine say so
    assert "measured while up to 2 cells ran at once" in board

    # Resume is the serial run's: everything is done, nothing runs (and no worker is needed).
    again = compare(results, *CHAIN, "--jobs", "2")
    assert again.exit_code == 0 and "6 ok (6 resumed), 0 failed" in again.stdout
    assert again.stderr.count("done already (resume), skipped") == 6


@pytest.mark.slow
def test_a_dying_worker_fails_its_cell_alone(tmp_path, monkeypatch):
    install_dist(tmp_path / "site", monkeypatch, "odnbench-dies", "odnbench_testplugin_dies", DIES)
    from odnbench import registry

    monkeypatch.setattr(registry, "_cached", None)
    results = tmp_path / "results"
    out = compare(results, "--method", "dies", "--method", "full", "--seed", "0", "--seed", "1", "--jobs", "2",
                  "--worker-threads", "1")
    assert out.exit_code == 1, out.output
    assert "3 ok (0 resumed), 1 failed" in out.stdout
    got = stored(results)
    failed = [r for r in got.values() if r["status"] != "ok"]
    assert len(failed) == 1
    [dead] = failed
    assert (dead["config"]["method"], dead["config"]["seed"]) == ("dies", 0)
    assert "the worker process running this cell died (exit code 13)" in dead["error"]
    assert dead["env"]["executor"]["name"] == "process"
    folder = results / store.cell_dirname(dead["config"])
    assert "dies: about to exit the worker process" in (folder / LOG_FILE).read_text()  # its last words
    assert str(folder / LOG_FILE) in dead["error"]
    assert f"FAILED dies mnist5k seed 0: {dead['error']}" in out.stderr
    # The other cells, the second 'dies' included, ran on (on a fresh worker).
    assert sorted((r["config"]["method"], r["config"]["seed"]) for r in got.values() if r["status"] == "ok") == [
        ("dies", 1), ("full", 0), ("full", 1)]

    # --fail-fast: no cell starts after the failure; the ones running finish and are stored.
    fast = tmp_path / "fast"
    out = compare(fast, "--method", "dies", "--method", "full", *[a for s in range(3) for a in ("--seed", str(s))],
                  "--jobs", "2", "--worker-threads", "1", "--fail-fast")
    assert out.exit_code == 1, out.output
    lines = out.stderr.splitlines()
    failure = next(i for i, line in enumerate(lines) if "] FAILED dies |" in line)
    assert all("] done " in line for line in lines[failure + 1:] if line.startswith("[")), lines
    got = stored(fast)
    assert ("dies", 2) not in {(r["config"]["method"], r["config"]["seed"]) for r in got.values()}
    assert all(r["status"] == "ok" for r in got.values() if r["config"]["method"] == "full")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.slow
def test_kill_9_of_the_driver_then_rerun_finishes_only_the_missing_cells(tmp_path, monkeypatch):
    results = tmp_path / "results"
    env = {**os.environ, "ODNBENCH_LOAD_PLUGINS": BUILTIN}
    args = ["compare", "--method", "full", *[a for s in range(4) for a in ("--seed", str(s))], "--preset", "smoke",
            "--results", str(results), "--jobs", "2", "--worker-threads", "1", "--quiet"]
    log = open(tmp_path / "driver.txt", "w")
    driver = subprocess.Popen(odnbench_cmd() + args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    try:
        while not list(results.glob(f"*/{store.RESULT_FILE}")):
            assert driver.poll() is None, (tmp_path / "driver.txt").read_text()
            assert time.monotonic() < deadline, "no result.json appeared"
            time.sleep(0.01)
        driver.send_signal(signal.SIGKILL)
    finally:
        if driver.poll() is None:
            driver.kill()
        driver.wait()
        log.close()
    workers = [int(p.read_text().split("(pid ", 1)[1].split(",", 1)[0]) for p in results.glob(f"*/{LOG_FILE}")]
    assert workers
    until = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < until:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed driver"
    done = {f.parent.name: f.stat().st_mtime_ns for f in results.glob(f"*/{store.RESULT_FILE}")}
    assert 1 <= len(done) < 4
    # a worker still training when its driver died stored nothing (no broken pipe recorded as a failure)
    assert all(raw["status"] == "ok" for raw in stored(results).values()), stored(results)
    left = list((results / store.LOCK_DIR).glob("*.lock"))  # the locks of the cells it was running

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
    out = compare(results, "--method", "full", *[a for s in range(4) for a in ("--seed", str(s))], "--jobs", "2",
                  "--worker-threads", "1")
    assert out.exit_code == 0, out.output
    assert f"4 ok ({len(done)} resumed), 0 failed" in out.stdout, out.stdout
    assert out.stderr.count("done already (resume), skipped") == len(done)
    # A lock left on an unfinished cell is taken over (one left on a stored cell is just cleared).
    unfinished = [lock for lock in left if not any(name.endswith(lock.stem) for name in done)]
    assert out.stderr.count("took over the lock left by a run that ended") == len(unfinished)
    assert sorted(r["config"]["seed"] for r in stored(results).values()) == [0, 1, 2, 3]
    for name, stamp in done.items():  # what finished before the kill was not touched
        assert (results / name / store.RESULT_FILE).stat().st_mtime_ns == stamp
    assert not list((results / store.LOCK_DIR).glob("*.lock"))


@pytest.mark.slow
def test_two_concurrent_compares_on_one_folder_run_each_cell_once(tmp_path, monkeypatch):
    install_dist(tmp_path / "site", monkeypatch, "odnbench-counted", "odnbench_testplugin_counted", COUNTED)
    counter = tmp_path / "runs.txt"
    results = tmp_path / "results"
    env = {**os.environ, "ODNBENCH_TEST_COUNTER": str(counter), "OMP_NUM_THREADS": "1"}
    seeds = [0, 1]  # run one takes them in this order, run two in the other: they meet on each cell
    runs = []
    for order, extra in ((seeds, ["--jobs", "2", "--worker-threads", "1"]), (seeds[::-1], [])):
        args = ["compare", "--method", "full", "--method", "counted", *[a for s in order for a in ("--seed", str(s))],
                "--preset", "smoke", "--results", str(results), *extra]
        runs.append(subprocess.Popen(odnbench_cmd() + args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True))
    outs = [run.communicate(timeout=400) for run in runs]
    for run, (_, stderr) in zip(runs, outs):
        assert run.returncode == 0, stderr
    got = stored(results)
    assert len(got) == 4 and all(r["status"] == "ok" for r in got.values())
    # Each `counted` cell ran once ...
    assert sorted(int(line.split()[1]) for line in counter.read_text().splitlines()) == seeds
    # ... and so did every cell: what one run did, the other used.
    ran = []
    for stdout, stderr in outs:
        summary = next(line for line in stdout.splitlines() if " ok (" in line)
        ok, resumed = int(summary.split()[0]), int(summary.split("(")[1].split()[0])
        assert ok == 4
        ran.append(ok - resumed)
        assert stderr.count("] done ") == ok - resumed
    assert sum(ran) == 4, outs
    assert not list((results / store.LOCK_DIR).glob("*.lock"))


# ----------------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for the module (starting Ray takes seconds)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'odnbench[ray]' to test --executor ray")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False, logging_level="WARNING")
    except Exception as exc:  # e.g. no shared memory in a sandbox
        pytest.skip(f"a local Ray instance cannot start here: {type(exc).__name__}: {exc}")
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_executor_runs_the_chain_on_a_local_instance(serial_chain, ray_session, tmp_path):
    results = tmp_path / "results"
    out = compare(results, *CHAIN, "--executor", "ray", "--jobs", "2")
    assert out.exit_code == 0, out.output
    assert "up to 2 cells at once on a local Ray instance" in out.stderr
    assert "6 ok (0 resumed), 0 failed" in out.stdout
    got = stored(results)
    assert_same_cells(serial_chain, got, "ray")
    for name, r in got.items():  # files came back from the workers: model, per-depth models, log
        folder = results / name
        assert (folder / r["model_file"]).is_file() and (folder / LOG_FILE).read_text().rstrip().endswith("ok")
        assert all((folder / name).is_file() for name in r["files"])  # every model file it recorded
        if r["config"]["method"] == "odn":
            assert any(name.startswith("depth-") for name in r["files"])  # ODN's per-depth models too
    assert ray_session.is_initialized()  # an existing Ray session is used, not shut down


# ----------------------------------------------------------------------------- the benchmark


@pytest.mark.slow
def test_the_parallel_grid_benchmark_runs_its_gpu_modes_on_a_cpu(tmp_path):
    """The GPU command the benchmark documents, shrunk to one smoke cell on the CPU."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "parallel_grid.py"
    env = {**os.environ, "ODNBENCH_LOAD_PLUGINS": BUILTIN, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script), "--gpu", "--device", "cpu", "--seeds", "1", "--preset", "smoke",
                          "--modes", "jobs1,jobs2", "--timeout", "300"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in out.stdout.splitlines() if line.startswith("| jobs")}
    assert set(rows) == {"jobs1", "jobs2"}
    assert rows["jobs2"][1] == "`compare --jobs 2`" and rows["jobs1"][4] == "1.00x"
    assert rows["jobs1"][6] == rows["jobs2"][6] == "1" and rows["jobs2"][7] == "same"  # 1 cell, as serial
    assert float(rows["jobs2"][3]) > 0


def _report_an_epoch_to_a_dead_driver(marker: str) -> None:
    import multiprocessing

    from odnbench.executors import _epoch_sender

    ours, theirs = multiprocessing.Pipe()
    theirs.close()  # the driver is gone
    _epoch_sender(ours)(1, 12, 0.5)
    Path(marker).write_text("the method went on and could have stored a failure")


@pytest.mark.slow
def test_a_worker_whose_driver_died_dies_at_its_next_epoch_report_without_storing_anything(tmp_path):
    """kill -9 of compare while a cell trains: the worker's next epoch report fails; it must die then,
    not raise into the method (run_cell would store a BrokenPipeError as the cell's failed result)."""
    import multiprocessing

    marker = tmp_path / "went-on"
    proc = multiprocessing.get_context("spawn").Process(target=_report_an_epoch_to_a_dead_driver,
                                                         args=(str(marker),))
    proc.start()
    proc.join(120)
    assert proc.exitcode == -signal.SIGKILL and not marker.exists()

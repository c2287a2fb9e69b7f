"""The bookkeeping around training: a result record's write and read, publishing the committed boards
from their records, planning the committed grid files, and the command line's start-up."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOARDS = REPO / "leaderboards"
RECORDS = sorted(p for p in (BOARDS / "results").glob("*/result.json"))
GRIDS = sorted((BOARDS / "grids").glob("*.toml"))
pytestmark = pytest.mark.benchmark(group="bookkeeping")


def _timed(fn, seconds: list[float]):
    def run(*args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds.append(time.perf_counter() - start)
        return out
    return run


def test_result_record_write_and_read(benchmark, tmp_path):
    """One committed record (the largest: an ODN cell with its per-depth curve) written to a results
    folder (digest, strict JSON, atomic rename) and read back (checks, upgrade, dataclass)."""
    from odnbench.result import Result
    from odnbench.store import ResultStore, read_json

    if not RECORDS:
        pytest.skip("no committed records in leaderboards/results")
    source = max(RECORDS, key=lambda p: p.stat().st_size)
    result = Result.from_dict(read_json(source))
    store = ResultStore(tmp_path / "results")
    seconds: list[float] = []

    def write_and_read():
        return store.read(store.write(result))

    back = benchmark(_timed(write_and_read, seconds))
    assert back is not None and back.to_dict() == result.to_dict()
    benchmark.extra_info.update({"record": source.parent.name, "record_bytes": source.stat().st_size,
                                 "records_per_s": round(1 / statistics.median(seconds), 1)})


def test_publish_the_committed_boards(benchmark, smoke, tmp_path):
    """``leaderboard publish`` of every committed record (leaderboards/results) into a new folder:
    loading and checking the records, the boards, their markdown, JSON, CSV and PNG plots."""
    from odnbench.report.publish import publish

    if not RECORDS:
        pytest.skip("no committed records in leaderboards/results")
    results = tmp_path / "leaderboards" / "results"
    shutil.copytree(BOARDS / "results", results, ignore=shutil.ignore_patterns("*.pt", "leaderboard.md"))
    outs = iter(range(1000))
    seconds: list[float] = []
    reports = []

    def fresh_folder():
        return (results, tmp_path / f"out-{next(outs)}"), {}

    def run(results_dir, out_dir):
        reports.append(publish(results_dir, out_dir))

    benchmark.pedantic(_timed(run, seconds), setup=fresh_folder, rounds=1 if smoke else 3)
    report = reports[-1]
    files = [p for p in report.out_dir.rglob("*") if p.is_file()]
    assert len(report.boards) == len(GRIDS) and any(p.suffix == ".png" for p in files)
    benchmark.extra_info.update({"records": len(RECORDS), "boards": len(report.boards), "files": len(files),
                                 "seconds": round(statistics.median(seconds), 3)})


@pytest.mark.parametrize("grid", [p.name for p in GRIDS])
def test_plan_a_committed_grid_file(benchmark, grid):
    """Reading, checking and planning a committed grid file, as ``compare --grid FILE`` does before
    anything trains (every cell's config and key, dependencies added)."""
    from odnbench import plan
    from odnbench.gridfile import load_grid, merge_cli
    from odnbench.registry import get_registry

    reg = get_registry()
    seconds: list[float] = []

    def plan_file():
        loaded = load_grid(BOARDS / "grids" / grid, reg)
        merged = merge_cli(loaded, methods=(), datasets=(), backbones=(), seeds=(), preset="quick", sets=(),
                           data_dir=None, download=False, jobs=1, given=set())
        return plan.plan_grid(reg, merged.methods, merged.datasets, merged.backbones, merged.seeds, merged.preset,
                              merged.sets, entries=merged.entries, provenance=loaded.provenance)

    planned = benchmark(_timed(plan_file, seconds))
    assert planned.cells and all(c.key for c in planned.cells)
    benchmark.extra_info.update({"cells": len(planned.cells), "cells_per_s": round(len(planned.cells) / statistics.median(seconds), 1)})


def test_odnbench_help_startup(benchmark, smoke):
    """``odnbench --help`` in a new process: interpreter start, imports and plugin loading (what
    every command pays before it does anything)."""
    command = [sys.executable, "-c", "from odnbench.cli import main; main()", "--help"]
    env = {**os.environ, "ODNBENCH_LOAD_PLUGINS": os.environ.get("ODNBENCH_LOAD_PLUGINS", "odnbench")}
    seconds: list[float] = []

    def start():
        return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=120)

    done = benchmark.pedantic(_timed(start, seconds), rounds=1 if smoke else 5, warmup_rounds=0 if smoke else 1)
    assert done.returncode == 0 and "Usage: odnbench" in done.stdout, done.stderr
    benchmark.extra_info["seconds"] = round(statistics.median(seconds[-(1 if smoke else 5):]), 3)

"""Wall time of one grid run serially, in worker processes (`compare --jobs N`) and on Ray.

Each run is a fresh `odnbench compare` process on an empty results folder, timed from start to
exit as a user sees it (worker start-up and, for Ray, starting a local Ray instance included).
Every run must store the same cells as the first mode's run (same keys, outcomes and model
sizes, and the same top-1 where a cell ran with the same number of torch threads); the script
says so, and exits 1 when one differs or is cut off.

CPU (default): a 12-cell smoke grid with a dependency chain (full -> odn -> prune matched to
odn's size, seeds 0-3): serial as it comes (torch's default threads), serial with one torch
thread (what each of two workers gets), `--jobs 2`, and `--executor ray --jobs 2` (a local Ray
instance, its start-up included). On a busy shared machine, serial with torch's default threads
can be several times slower than with one (the threads spin-wait on each other) and dominates
the run; leave it out there:

    python benchmarks/parallel_grid.py                                  # 3 repeats of each mode
    python benchmarks/parallel_grid.py --repeats 2 --modes serial-1t,jobs2,ray2

GPU: several cells side by side on ONE GPU, `--jobs 1/2/4`, quick preset (epochs capped at 6),
8 independent `full` cells (seeds 0-7, the offline mnist5k: no download), one run each; about 2-3
minutes on an H100/H200 in all (each run is cut off after --timeout seconds, 120 by default, so
the whole script cannot take more than 6 minutes):

    python benchmarks/parallel_grid.py --gpu

Prints one table row per mode: every run's wall time, the median, the speed-up over serial, and
the torch threads each cell ran with (read back from the stored results). Timings on a shared
machine are noisy: use the median of several repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# smoke preset, 4 seeds: 12 cells. ODN held to depth 6 so that prune always has a smaller size to match.
CPU_GRID = ["--method", "full", "--method", "odn", "--method", "prune", "--set", "prune.match=odn:size",
            "--set", "odn.start_depth=6", "--set", "odn.max_depth=6"]
# quick preset, 8 seeds: 8 independent cells (epochs capped at 6 so the three runs fit in ~2-3 minutes)
GPU_GRID = ["--method", "full", "--set", "recipe.epochs=6"]
# mode -> (compare's extra options, environment): serial as it comes (torch's default threads, all
# cores) and with one thread, the thread count each of the two workers gets.
CPU_MODES = {
    "serial": ([], {}),
    "serial-1t": ([], {"OMP_NUM_THREADS": "1"}),
    "jobs2": (["--jobs", "2"], {}),
    "ray2": (["--executor", "ray", "--jobs", "2"], {}),
}
GPU_MODES = {
    "jobs1": ([], {}),
    "jobs2": (["--jobs", "2"], {}),
    "jobs4": (["--jobs", "4"], {}),
}


def odnbench() -> list[str]:
    script = shutil.which("odnbench", path=str(Path(sys.executable).parent)) or shutil.which("odnbench")
    return [script] if script else [sys.executable, "-c", "import sys; from odnbench.cli import main; sys.exit(main())"]


def run_once(grid: list[str], extra: list[str], env: dict, device: str, timeout: float) -> dict:
    """One `odnbench compare` on an empty folder: wall seconds and what it stored."""
    with tempfile.TemporaryDirectory(prefix="odnbench-bench-") as tmp:
        results = Path(tmp) / "results"
        cmd = odnbench() + ["compare", *grid, *extra, "--device", device, "--results", str(results), "--quiet"]
        started = time.perf_counter()
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env})
        except subprocess.TimeoutExpired:
            return {"seconds": None, "error": f"cut off after {timeout:.0f} s", "cells": {}}
        seconds = time.perf_counter() - started
        cells = {}
        for f in sorted(results.glob("*/result.json")):
            r = json.loads(f.read_text())
            m = r.get("metrics") or {}
            cells[f.parent.name] = {"status": r["status"], "params": m.get("params"), "size_mb": m.get("size_mb"),
                                    "top1": m.get("top1"), "threads": (r.get("env") or {}).get("threads")}
        error = None if done.returncode == 0 else (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"seconds": seconds, "error": error, "cells": cells}


def compare_cells(reference: dict, cells: dict) -> str:
    if sorted(cells) != sorted(reference):
        return f"different cells ({len(cells)} vs {len(reference)})"
    status = [n for n in cells if cells[n]["status"] != reference[n]["status"]]
    if status:
        return f"different outcome: {', '.join(status)}"
    sizes = [n for n in cells if (cells[n]["params"], cells[n]["size_mb"]) != (reference[n]["params"],
                                                                                reference[n]["size_mb"])]
    if sizes:
        return f"different model sizes: {', '.join(sizes)}"
    same_threads = [n for n in cells if cells[n]["threads"] == reference[n]["threads"]]
    top1 = [n for n in same_threads if cells[n]["top1"] != reference[n]["top1"]]
    if top1:
        return f"different top-1 at the same thread count: {', '.join(top1)}"
    return "same"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpu", action="store_true", help="--jobs 1/2/4 on one GPU, quick preset, 8 full cells")
    parser.add_argument("--modes", default=None, help="comma-separated subset of the modes (see the table)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per mode [default: 3 on CPU, 1 on GPU]")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds before a run is cut off [default: 1800 on CPU, 120 on GPU]")
    parser.add_argument("--seeds", type=int, default=None, help="seeds in the grid [default: 4 on CPU, 8 on GPU]")
    parser.add_argument("--preset", default=None, help="[default: smoke on CPU, quick on GPU]")
    parser.add_argument("--device", default=None, help="[default: cpu; cuda with --gpu] (--gpu --device cpu "
                                                       "tries the GPU modes on a CPU)")
    args = parser.parse_args(argv)

    modes = GPU_MODES if args.gpu else CPU_MODES
    seeds = args.seeds or (8 if args.gpu else 4)
    grid = (GPU_GRID if args.gpu else CPU_GRID) + ["--preset", args.preset or ("quick" if args.gpu else "smoke"),
                                                   *[a for s in range(seeds) for a in ("--seed", str(s))]]
    device = args.device or ("cuda" if args.gpu else "cpu")
    repeats = args.repeats or (1 if args.gpu else 3)
    timeout = args.timeout or (120 if args.gpu else 1800)
    if args.modes:
        unknown = [m for m in args.modes.split(",") if m not in modes]
        if unknown:
            parser.error(f"unknown mode {unknown[0]!r}; choose from {', '.join(modes)}")
        modes = {m: modes[m] for m in args.modes.split(",")}
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            parser.error(f"--device {device} needs CUDA (try --gpu --device cpu on a CPU)")
        where = f"{torch.cuda.get_device_name(0)} (1 of {torch.cuda.device_count()} visible GPUs used: cuda:0)"
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
    else:
        from odnbench.envinfo import cpu_name
        from odnbench.executors import usable_cores

        where = f"{cpu_name()}, {usable_cores()} usable cores"
    print(f"odnbench parallel grid benchmark on {where}", flush=True)
    print(f"grid: {' '.join(grid)}; {repeats} run(s) per mode; runs alternate between modes", flush=True)

    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for i in range(repeats):  # alternate modes so that a busy spell on a shared machine hits them all
        for mode, (extra, env) in modes.items():
            run = run_once(grid, extra, env, device, timeout)
            runs[mode].append(run)
            took = f"{run['seconds']:.1f} s" if run["seconds"] is not None else run["error"]
            print(f"  run {i + 1}/{repeats} {mode:<7} {took}" + (f"  ({run['error']})" if run["error"] and
                                                                   run["seconds"] else ""), flush=True)

    first = next(iter(modes))
    reference = next((r["cells"] for r in runs[first] if r["seconds"] is not None), {})
    base = statistics.median([r["seconds"] for r in runs[first] if r["seconds"]] or [float("nan")])
    bad = False
    print()
    print(f"| mode | command line | runs (s) | median (s) | vs {first} | threads per cell | cells "
          f"| results vs {first} |")
    print("|---|---|---|--:|--:|--:|--:|---|")
    for mode, (extra, env) in modes.items():
        times = [r["seconds"] for r in runs[mode] if r["seconds"] is not None]
        median = statistics.median(times) if times else float("nan")
        verdicts = {compare_cells(reference, r["cells"]) if r["seconds"] is not None else r["error"]
                    for r in runs[mode]}
        bad = bad or verdicts != {"same"}
        threads = sorted({c["threads"] for r in runs[mode] for c in r["cells"].values()})
        cells = len(runs[mode][-1]["cells"])
        failed = sum(c["status"] != "ok" for c in runs[mode][-1]["cells"].values())
        cells = f"{cells}" + (f" ({failed} failed)" if failed else "")
        listed = ", ".join(f"{t:.1f}" if t is not None else "cut off" for t in
                           [r["seconds"] for r in runs[mode]])
        command = " ".join([f"{k}={v}" for k, v in env.items()] + ["compare", *extra])
        print(f"| {mode} | `{command}` | {listed} | {median:.1f} | "
              f"{base / median:.2f}x | {', '.join(map(str, threads))} | {cells} | {'; '.join(sorted(verdicts))} |")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

"""Reproduce the ODN paper's MNIST row: the ``paper`` preset, ResNet-18, the real MNIST.

Runs ``odnbench compare --method odn --dataset mnist --backbone resnet18 --preset paper`` once per
seed, each seed in its own process (small models leave a GPU mostly idle, so seeds share one
GPU side by side), then prints the optimal depth, test top-1, size and cost of every seed next
to the paper's row (Tareen & Tareen, arXiv 2510.10764: depth 2, 99.31 %, 0.61 MB, 98.64 % size
reduction; 165 training epochs: 3 warm-up + 105 search + 57 fine-tune). It is odnbench's own CLI that runs: results land in
``--results`` like any other cells (rerunning skips finished seeds), and each seed's full log is
kept in ``<results>/logs/``. The console gets a few greppable lines per seed and a summary table.

    python benchmarks/odn_paper_mnist.py --seed 0 --seed 1 --seed 2 --data-dir DATA --device cuda
    python benchmarks/odn_paper_mnist.py --seed 0 --data-dir DATA --timeout 540   # fits a 10-min slot
    python benchmarks/odn_paper_mnist.py --smoke --seed 0 --data-dir DATA --device cpu   # seconds, CPU
    python benchmarks/odn_paper_mnist.py --dry-run --seed 0   # the cells it would run and the paper's row

``--set`` passes odnbench overrides through (``--set odn.start_from=previous``); ``--smoke`` prepends a
tiny recipe (a few hundred images, narrow widths, one epoch per phase, depths 1..2) for tests.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

DATASET, BACKBONE, PRESET = "mnist", "resnet18", "paper"
SMOKE_SETS = [
    "recipe.train_limit=512", "recipe.val_limit=256", "recipe.test_limit=256", "recipe.width=8,16,16,32",
    "recipe.latency_warmup=1", "recipe.latency_windows=2", "recipe.latency_iters=2", "recipe.throughput_batch=32",
    "odn.warmup_epochs=1", "odn.max_epochs_per_depth=1", "odn.patience=1", "odn.finetune_max_epochs=1",
    "odn.max_depth=2",
]
CLI = "from odnbench.cli import main; main()"


def compare_args(seed: int, args, sets: list[str]) -> list[str]:
    out = ["compare", "--method", "odn", *(["--method", "full"] if args.with_full else []), "--dataset", DATASET,
           "--backbone", BACKBONE, "--preset", PRESET, "--seed", str(seed), "--results", str(args.results),
           "--device", args.device]
    if args.data_dir:
        out += ["--data-dir", str(args.data_dir)]
    out += ["--download" if args.download else "--no-download"]
    for s in sets:
        out += ["--set", s]
    return out


def last_progress(log: Path) -> str:
    """The last per-epoch or per-depth line of a seed's log (what a timed-out run had reached)."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                 if ln.strip().startswith("[odn]") or "[full]" in ln]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def run_seeds(args, sets: list[str]) -> dict[int, dict]:
    """One ``odnbench compare`` process per seed, at most ``--parallel`` at a time."""
    logs = Path(args.results) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.threads:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    pending, running, done = list(args.seed), {}, {}
    while pending or running:
        while pending and len(running) < args.parallel:
            seed = pending.pop(0)
            log = logs / f"seed-{seed}.log"
            fh = log.open("w")
            proc = subprocess.Popen([sys.executable, "-c", CLI, *compare_args(seed, args, sets)], stdout=fh,
                                    stderr=subprocess.STDOUT, env=env)
            running[seed] = (proc, fh, log, time.perf_counter())
            print(f"[seed {seed}] started (log {log})", flush=True)
        time.sleep(0.2)
        for seed, (proc, fh, log, started) in list(running.items()):
            elapsed = time.perf_counter() - started
            timed_out = args.timeout and elapsed > args.timeout and proc.poll() is None
            if timed_out:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.poll() is None:
                continue
            fh.close()
            del running[seed]
            status = "timeout" if timed_out else ("ok" if proc.returncode == 0 else f"exit {proc.returncode}")
            done[seed] = {"status": status, "seconds": elapsed, "log": log, "last": last_progress(log)}
            tail = f"; reached: {done[seed]['last']}" if status != "ok" else ""
            print(f"[seed {seed}] {status} after {elapsed:.0f}s{tail}", flush=True)
    return done


def odn_cells(sets: list[str], seeds: list[int]) -> dict[int, str]:
    """The odn cell folder of each seed, planned exactly as the CLI plans it."""
    from odnbench.plan import plan_grid
    from odnbench.registry import get_registry

    grid = plan_grid(get_registry(), ["odn"], [DATASET], [BACKBONE], seeds, PRESET, sets)
    return {c.config["seed"]: c.dirname for c in grid.cells if c.config["method"] == "odn"}


def full_size_mb(sets: list[str]) -> float:
    """Saved size of the uncut backbone at this recipe's widths (what the reduction is measured against)."""
    import torch

    from odnbench.metrics import saved_size_mb
    from odnbench.plan import split_overrides
    from odnbench.recipes import make_recipe
    from odnbench.registry import get_registry

    recipe = make_recipe(PRESET, split_overrides(sets).get("recipe", {}))
    torch.manual_seed(0)
    net = get_registry().backbone(BACKBONE).build(in_chans=1, num_classes=10, stem=recipe.stem, width=recipe.widths)
    return saved_size_mb(net)


def print_head() -> None:
    """The table's header and the paper's row (its epochs: warm-up + search + fine-tune, each counted once)."""
    from odnbench_plugins.odn import paper

    ref = paper.PUBLISHED[(DATASET, BACKBONE)]
    head = (f"| {'run':<8} | {'depth':>5} | {'test top-1 %':>12} | {'size MB':>7} | {'size red. %':>11} | "
            f"{'epochs (warm+search+ft)':>23} | {'train s':>8} | {'wall s':>7} |")
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    print(f"| {'paper':<8} | {ref['optimal_depth']:>5} | {ref['top1']:>12.2f} | {ref['size_mb']:>7.2f} | "
          f"{ref['size_reduction_pct']:>11.2f} | {paper.reference_cost_text(DATASET):>23} | {'-':>8} | {'-':>7} |")


def summary(args, sets: list[str], ran: dict[int, dict]) -> list[dict]:
    from odnbench.store import ResultStore
    from odnbench_plugins.odn import paper

    full_mb = full_size_mb(sets)
    store = ResultStore(args.results)
    rows = []
    for seed, dirname in odn_cells(sets, args.seed).items():
        folder = Path(args.results) / dirname
        r = store.read(folder) if folder.is_dir() else None
        row = {"seed": seed, "status": (ran.get(seed) or {}).get("status", "missing"), "cell": dirname}
        if r is not None and r.ok:
            info, m, cost = r.method_info, r.metrics, r.cost
            row.update(status="ok", depth=info["optimal_depth"], blocks=info["blocks"], top1=m["top1"],
                       val=info.get("final_val"), size_mb=m["size_mb"], params=m["params"],
                       reduction=100 * (1 - m["size_mb"] / full_mb), epochs=cost["epochs"],
                       warmup=info["warmup_epochs"], search=info["search_epochs"], finetune=info["finetune_epochs"],
                       train_s=cost["train_seconds"], wall_s=r.wall_seconds, reached=info["reached_target"],
                       curve=" ".join(f"d{c['depth']}:{c['best_val']:.1f}/{c['epochs']}ep" for c in info["depth_curve"]),
                       warm_heads=(info["warmup"] or {}).get("val_per_depth"))
        elif r is not None:
            row["status"] = "failed"
            row["error"] = r.error
        rows.append(row)

    ref = paper.PUBLISHED[(DATASET, BACKBONE)]
    print(f"\nODN paper reproduction: {DATASET} / {BACKBONE} / preset {PRESET}"
          f"{' (SMOKE: tiny recipe, numbers meaningless)' if args.smoke else ''}; full-depth size {full_mb:.2f} MB"
          f" (paper {ref['size_mb_full']} MB); sets: {' '.join(args.set) or '-'}")
    for row in rows:
        if row["status"] == "ok":
            print(f"[seed {row['seed']}] depth curve (best val %/epochs): {row['curve']}")
            if row["warm_heads"]:
                print(f"[seed {row['seed']}] warm-up val % per head: {' '.join(f'{v:.1f}' for v in row['warm_heads'])}")
        elif row.get("error"):
            print(f"[seed {row['seed']}] failed: {row['error']}")
    print_head()
    for row in rows:
        if row["status"] != "ok":
            seconds = (ran.get(row["seed"]) or {}).get("seconds")
            print(f"| {'seed ' + str(row['seed']):<8} | {row['status']:>5} | {'-':>12} | {'-':>7} | {'-':>11} | "
                  f"{'-':>23} | {'-':>8} | {f'{seconds:.0f}' if seconds else '-':>7} |")
            continue
        epochs = f"{row['epochs']} ({row['warmup']}+{row['search']}+{row['finetune']})"
        print(f"| {'seed ' + str(row['seed']):<8} | {row['depth']:>5} | {row['top1']:>12.2f} | {row['size_mb']:>7.2f} | "
              f"{row['reduction']:>11.2f} | {epochs:>23} | {row['train_s']:>8.0f} | {row['wall_s']:>7.0f} |")
    ok = [r for r in rows if r["status"] == "ok"]
    if len(ok) > 1:
        import statistics as st

        def ms(key, digits=2):
            vals = [r[key] for r in ok]
            return f"{st.mean(vals):.{digits}f}±{st.stdev(vals):.{digits}f}"

        print(f"| {'mean±sd':<8} | {ms('depth', 1):>5} | {ms('top1'):>12} | {ms('size_mb'):>7} | {ms('reduction'):>11} | "
              f"{ms('epochs', 0):>23} | {ms('train_s', 0):>8} | {ms('wall_s', 0):>7} |")
    print(f"done: {len(ok)}/{len(rows)} seeds ok; results in {args.results}")
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, action="append", help="Seed (repeatable) [default: 0].")
    parser.add_argument("--data-dir", type=Path, default=None, help="Where MNIST lives (holds MNIST/raw).")
    parser.add_argument("--download", action="store_true", help="Download MNIST when missing (default: do not).")
    parser.add_argument("--results", type=Path, default=Path("odnbench-results-paper-mnist"))
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]; every seed uses it.")
    parser.add_argument("--set", action="append", default=[], metavar="OWNER.PARAM=VALUE",
                        help="Passed to odnbench compare (repeatable), after --smoke's values.")
    parser.add_argument("--smoke", action="store_true", help="Tiny recipe for a CPU test (numbers mean nothing).")
    parser.add_argument("--with-full", action="store_true", help="Also train the full-depth baseline per seed.")
    parser.add_argument("--parallel", type=int, default=0, help="Seeds at a time (0 = all of them).")
    parser.add_argument("--threads", type=int, default=0, help="OMP/MKL threads per seed process (0 = default).")
    parser.add_argument("--timeout", type=float, default=0, help="Stop a seed after this many seconds (0 = never).")
    parser.add_argument("--dry-run", action="store_true",
                        help="Plan the cells, print them and the paper's row; train nothing.")
    args = parser.parse_args(argv)
    args.seed = args.seed or [0]
    args.parallel = args.parallel or len(args.seed)
    sets = (SMOKE_SETS if args.smoke else []) + list(args.set)

    from odnbench.errors import OdnbenchError

    try:
        cells = odn_cells(sets, args.seed)  # bad --set values fail here, once, before any process starts
    except OdnbenchError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    if args.dry_run:
        for seed, dirname in cells.items():
            print(f"[seed {seed}] would run {Path(args.results) / dirname}")
        print_head()
        return 0
    print(f"odn paper reproduction: seeds {' '.join(map(str, args.seed))}, device {args.device}, "
          f"{args.parallel} at a time, results {args.results}", flush=True)
    ran = run_seeds(args, sets)
    rows = summary(args, sets, ran)
    return 0 if rows and all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

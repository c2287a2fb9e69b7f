"""GPU speed report: training images/s of the harness's own loop per width, precision, memory
format and torch.compile, and (optionally) the wall time of the ``paper`` preset on real MNIST.

Every measurement goes through ``odnbench.Trainer.train_epoch`` / ``evaluate`` with the recipe's
execution settings, on 28x28 single-channel images (mnist5k's real digits, repeated) already on
the device, at batch 128 (the paper's). Each configuration runs in its own try/except: an error
(no bf16, no triton, out of memory) is a row in the report, not the end of it. Rows:

- widths ``full`` (ResNet-18 as the paper trains it) and the quick widths 16,32,64,128;
- precision ``fp32`` (TF32 off), ``tf32`` (fp32 storage, TF32 conv/matmul) and ``bf16`` (autocast);
- memory format ``contiguous`` and ``channels_last``; compile off, and on for ``--compile-precisions``;
- full width cut after block 1 and 2 (``--depths``): where ODN spends most of its epochs.

The markdown (``--out``) is rewritten after every section, so a run cut short keeps what it had.
``--budget`` caps the seconds spent on throughput rows (rows past it are listed as skipped).

    python benchmarks/gpu_speed_report.py --out speed-report.md                # ~2-3 min on an H100
    python benchmarks/gpu_speed_report.py --paper odn --data-dir ../shared/data \\
        --paper-set recipe.precision=bf16                                       # + the paper ODN run
    python benchmarks/gpu_speed_report.py --device cpu --widths 8,8,8,8 --steps 2 --warmup 1   # a test

Targets (benchmarks, not unit tests): full width >= 20,000 training images/s at batch 128; the
``paper`` ODN run on real MNIST (seed 0) <= 6 minutes end to end, the full-depth run <= 4 minutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
import traceback
import warnings
from pathlib import Path

QUICK = "16,32,64,128"
COMPILE_RESERVE = 60  # seconds of budget a compiled row needs to start (compilation takes tens of seconds)
PRECISIONS = {  # label -> recipe fields
    "fp32": {"precision": "fp32", "tf32": "false"},
    "tf32": {"precision": "fp32", "tf32": "true"},
    "bf16": {"precision": "bf16", "tf32": "true"},
}


def digits(n: int, device):
    """``n`` real 28x28 digits (mnist5k, offline), repeated as needed, on ``device``."""
    from odnbench.data import Split
    from odnbench.registry import get_registry

    splits = get_registry().dataset("mnist5k").load(None, download=False, seed=0)
    x, y = splits.train.x, splits.train.y
    reps = -(-n // len(y))
    return splits.info, Split(x.repeat(reps, 1, 1, 1)[:n].contiguous(), y.repeat(reps)[:n].contiguous()).to(device)


class Bench:
    def __init__(self, args, device):
        import torch

        from odnbench.data import Splits

        self.args, self.device = args, device
        self.info, train = digits(args.steps * args.batch_size, device)
        _, warm = digits(args.warmup * args.batch_size, device)
        _, val = digits(args.eval_images, device)
        empty = val.subset(1, 0)
        self.timed = Splits(self.info, train, val, empty)
        self.warm = Splits(self.info, warm, val.subset(args.batch_size, 0), empty)
        torch.manual_seed(0)

    def recipe(self, width: str, precision: str, memory_format: str, compile_: bool):
        from odnbench.recipes import make_recipe

        return make_recipe("paper", {"width": width, "batch_size": str(self.args.batch_size),
                                     "eval_batch_size": str(self.args.eval_batch), "memory_format": memory_format,
                                     "compile": str(compile_).lower(), **PRECISIONS[precision]})

    def model(self, width: str, depth: int | None):
        from odnbench.recipes import make_recipe
        from odnbench.registry import get_registry

        net = get_registry().backbone(self.args.backbone).build(
            in_chans=self.info.channels, num_classes=self.info.num_classes, stem="cifar",
            width=make_recipe("paper", {"width": width}).widths)
        return net.truncated(depth) if depth else net

    def row(self, width: str, depth: int | None, precision: str, memory_format: str, compile_: bool) -> dict:
        """One configuration: a warm-up epoch (compilation included), one timed epoch, one validation pass."""
        import torch

        from odnbench.execution import Execution
        from odnbench.progress import Progress
        from odnbench.trainer import CostMeter, Trainer

        row = {"width": width, "depth": depth or "all", "precision": precision, "memory_format": memory_format,
               "compile_asked": compile_, "compile": None, "train_img_s": None, "eval_img_s": None,
               "warmup_s": None, "note": None, "error": None}
        recipe = self.recipe(width, precision, memory_format, compile_)
        try:
            ex = Execution.for_recipe(recipe, self.device)
            row.update(memory_format=ex.env()["memory_format"], compile=ex.compile,
                       note="; ".join(ex.notes) or None)
            model = self.model(width, depth)
            quiet = Progress(quiet=True)
            with ex.activate():
                # One trainer for both epochs: its compiled step is reused, not compiled again.
                timed = Trainer(self.warm, recipe, self.device, quiet, CostMeter(), 0, execution=ex)
                opt = timed.make_optimizer(model.parameters())
                row["warmup_s"] = round(timed.train_epoch(model, opt).seconds, 2)
                timed.splits = self.timed
                stats = timed.train_epoch(model, opt)
                row["train_img_s"] = round(stats.samples / stats.seconds)
                timed.evaluate(model)  # warm the eval kernels
                started = time.perf_counter()
                timed.evaluate(model)
                row["eval_img_s"] = round(len(self.timed.val) / (time.perf_counter() - started))
        except Exception as exc:  # one bad configuration is a row, not the end of the report
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
            traceback.print_exc(limit=3)
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        return row

    def host_syncs(self) -> int | None:
        """Host synchronisations in one default training epoch + validation pass (CUDA only)."""
        import torch

        from odnbench.execution import Execution
        from odnbench.progress import Progress
        from odnbench.trainer import CostMeter, Trainer

        if self.device.type != "cuda":
            return None
        recipe = self.recipe(QUICK, "tf32", "auto", False)
        ex = Execution.for_recipe(recipe, self.device)
        trainer = Trainer(self.warm, recipe, self.device, Progress(quiet=True), CostMeter(), 0, execution=ex)
        model = self.model(QUICK, None)
        with ex.activate():
            opt = trainer.make_optimizer(model.parameters())
            trainer.train_epoch(model, opt)  # first calls (cuDNN set-up) are not what is counted
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    trainer.train_epoch(model, opt)
                    trainer.evaluate(model)
                finally:
                    torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)


def paper_run(method: str, args, out_dir: Path) -> dict:
    """``odnbench compare`` for the paper preset on the real MNIST, in a subprocess with a timeout."""
    results = out_dir / f"paper-{method}-results"
    log = out_dir / f"paper-{method}.log"
    sets = [s for pair in args.paper_set for s in ("--set", pair)]
    cmd = [sys.executable, "-c", "from odnbench.cli import main; main()", "compare", "-m", method, "-d", args.paper_dataset,
           "-b", args.backbone, "-s", "0", "-p", "paper", "--data-dir", str(args.data_dir), "--no-download",
           "-r", str(results), "--no-resume", "--device", args.device, *sets]
    row = {"method": method, "settings": " ".join(args.paper_set) or "defaults", "wall_s": None, "status": None}
    started = time.perf_counter()
    try:
        env = {k: v for k, v in os.environ.items() if k != "ODNBENCH_LOAD_PLUGINS"}
        if args.plugins is not None:
            env["ODNBENCH_LOAD_PLUGINS"] = args.plugins
        with open(log, "w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=args.paper_timeout, env=env)
        row["status"] = "ok" if proc.returncode == 0 else f"exit {proc.returncode} (see {log.name})"
    except subprocess.TimeoutExpired:
        row["status"] = f"timed out after {args.paper_timeout} s (see {log.name})"
    row["wall_s"] = round(time.perf_counter() - started, 1)
    for path in results.glob(f"{method}-*/result.json"):
        r = json.loads(path.read_text())
        m, cost = r.get("metrics") or {}, r.get("cost") or {}
        row.update(cell_wall_s=r.get("wall_seconds"), train_s=cost.get("train_seconds"), epochs=cost.get("epochs"),
                   top1=m.get("top1"), depth=(r.get("facts") or {}).get("depth"), result=r.get("status"),
                   env={k: (r.get("env") or {}).get(k) for k in ("precision", "tf32", "memory_format", "compile")})
    if not row.get("epochs"):  # cut short: how far it got, from the epoch lines
        lines = [line for line in log.read_text(errors="replace").splitlines() if "epoch" in line] if log.exists() else []
        row["last_line"] = lines[-1][-160:] if lines else None
    return row


def _throughput_table(rows: list[dict]) -> list[str]:
    out = ["## Training throughput", "",
           "| width | depth | precision | memory format | compile | train img/s | eval img/s | warm-up s | note |",
           "|---|---|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        note = r["error"] or r["note"] or ""
        compile_ = "on" if r["compile"] else ("off" if not r["compile_asked"] else "asked, not applied")
        out.append(f"| {r['width']} | {r['depth']} | {r['precision']} | {r['memory_format']} | {compile_} | "
                   f"{_n(r['train_img_s'])} | {_n(r['eval_img_s'])} | {_n(r['warmup_s'], '.1f')} | "
                   f"{note.replace('|', '/')} |")
    best = max((r["train_img_s"] or 0 for r in rows if r["width"] == "full" and r["depth"] == "all"), default=0)
    if best:
        verdict = "meets" if best >= 20000 else "misses"
        out += ["", f"Best full-width training rate: {best:,} images/s ({verdict} the 20,000 images/s target)."]
    return out + [""]


def markdown(meta: dict, rows: list[dict], paper: list[dict]) -> str:
    out = ["# odnbench GPU speed report", "",
           f"Device: {meta['device_name']} ({meta['device']}); torch {meta['torch']}, odnbench {meta['odnbench']} "
           f"(git {meta['git_commit']}); {meta['when']}.", "",
           f"{meta['backbone']} on 1x28x28 digits (mnist5k, on the device), batch {meta['batch_size']}, SGD; "
           f"images/s over one timed epoch of {meta['steps']} steps after a warm-up epoch of {meta['warmup']} "
           f"steps (compilation happens there: see its seconds); evaluation images/s over {meta['eval_images']:,} "
           f"images at batch {meta['eval_batch']}. Through `Trainer.train_epoch` / `Trainer.evaluate`, i.e. what "
           f"the harness runs. Precision: fp32 = TF32 off; tf32 = fp32 storage, TF32 conv/matmul; bf16 = autocast.",
           ""]
    if meta.get("host_syncs") is not None:
        out += [f"Host synchronisations in one training epoch + one validation pass (quick widths, defaults): "
                f"{meta['host_syncs']} (expected: the epoch's loss sum, the shuffle order's copy to the device "
                f"and the validation count).", ""]
    if rows:
        out += _throughput_table(rows)
    if paper:
        out += [f"## Paper preset, {meta.get('paper_dataset', 'mnist')}, seed 0", "",
                "Targets: `odn` <= 360 s end to end, `full` <= 240 s. Wall s: the whole `odnbench compare` "
                "process (start-up and data loading included); cell s: the cell itself (training, evaluation, "
                "measurement); computed as: the result's env.", "",
                "| method | settings | wall s | cell s | training s | epochs | depth | test top-1 | computed as | status |",
                "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for p in paper:
            status = p["status"] or ""
            if p.get("last_line"):
                status += f"; last: `{p['last_line']}`"
            env = p.get("env") or {}
            how = (f"{env.get('precision')}, TF32 {'on' if env.get('tf32') else 'off'}, {env.get('memory_format')}, "
                   f"compile {'on' if env.get('compile') else 'off'}") if env else "-"
            out.append(f"| {p['method']} | `{p['settings']}` | {_n(p['wall_s'], '.0f')} | "
                       f"{_n(p.get('cell_wall_s'), '.0f')} | {_n(p.get('train_s'), '.0f')} | {_n(p.get('epochs'))} | "
                       f"{_n(p.get('depth'))} | {_n(p.get('top1'), '.2f')} | {how} | {status.replace('|', '/')} |")
    return "\n".join(out) + "\n"


def _n(value, spec: str = ",") -> str:
    return "-" if value is None else format(value, spec)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="auto, cuda or cpu (cpu only at tiny scale, for a test)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--widths", default=f"full;{QUICK}", help="';'-separated stage widths or 'full'")
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--memory-formats", default="contiguous,channels_last",
                        help="comma-separated: contiguous, channels_last, auto")
    parser.add_argument("--compile", default="off,on", help="off, on or off,on")
    parser.add_argument("--compile-precisions", default="bf16",
                        help="precisions that also get a compiled row (each compilation costs tens of seconds)")
    parser.add_argument("--depths", default="1,2", help="extra full-width rows cut after these blocks ('' = none)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=200, help="timed training steps per configuration")
    parser.add_argument("--warmup", type=int, default=25, help="warm-up steps (compilation included)")
    parser.add_argument("--eval-batch", type=int, default=2048)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--budget", type=float, default=160.0,
                        help="seconds for the throughput rows: a row starts only while some are left, a compiled "
                             f"row only with {COMPILE_RESERVE} s left; the others are listed as skipped")
    parser.add_argument("--skip-throughput", action="store_true", help="only the paper runs (with --paper)")
    parser.add_argument("--paper", default="", help="also run the paper preset on real MNIST: odn, full or odn,full")
    parser.add_argument("--paper-set", action="append", default=[], metavar="OWNER.PARAM=VALUE",
                        help="--set options for the paper runs, e.g. recipe.precision=bf16 (repeatable)")
    parser.add_argument("--paper-timeout", type=int, default=420, help="seconds per paper run before it is stopped")
    parser.add_argument("--data-dir", default=None, help="where the real MNIST is (for --paper)")
    parser.add_argument("--paper-dataset", default="mnist", help="dataset of the paper runs (mnist5k: a CPU check)")
    parser.add_argument("--out", default="gpu-speed-report.md", help="markdown file to write")
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    args.plugins = os.environ.get("ODNBENCH_LOAD_PLUGINS")  # the paper runs load whatever the user loads
    os.environ.setdefault("ODNBENCH_LOAD_PLUGINS", "datasets,timm-resnet")
    import torch

    import odnbench
    from odnbench.envinfo import device_name, git_commit
    from odnbench.runtime import pick_device

    device = pick_device(args.device)
    args.device = str(device)
    if args.paper and not args.data_dir:
        parser.error("--paper needs --data-dir (where the real MNIST is)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": device.type, "device_name": device_name(device), "torch": torch.__version__,
            "odnbench": odnbench.__version__, "git_commit": (git_commit() or "?")[:10], "backbone": args.backbone,
            "when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
            "eval_batch": args.eval_batch, "eval_images": args.eval_images}
    meta["paper_dataset"] = args.paper_dataset
    bench = None if args.skip_throughput else Bench(args, device)
    rows: list[dict] = []
    paper: list[dict] = []

    def write() -> None:
        out.write_text(markdown(meta, rows, paper))
        if args.json:
            Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows, "paper": paper}, indent=2))

    try:
        meta["host_syncs"] = None if args.skip_throughput else bench.host_syncs()
    except Exception as exc:
        meta["host_syncs"] = f"not counted ({type(exc).__name__}: {exc})"

    widths = [w for w in args.widths.split(";") if w]
    precisions = [p for p in args.precisions.split(",") if p]
    for p in precisions + args.compile_precisions.split(","):
        if p and p not in PRECISIONS:
            parser.error(f"unknown precision {p!r}; use {', '.join(PRECISIONS)}")
    compiles = [c == "on" for c in args.compile.split(",") if c]
    plan = []  # (width, depth, precision, memory format, compile): eager rows first, compiled rows last
    for width in widths:
        for precision in precisions:
            for fmt in args.memory_formats.split(","):
                if False in compiles:
                    plan.append((width, None, precision, fmt, False))
    if "full" in widths:
        for depth in [int(d) for d in args.depths.split(",") if d]:
            for precision in ("tf32", "bf16"):
                if precision in precisions:
                    plan.append(("full", depth, precision, "auto", False))
    if True in compiles:
        for width in widths:
            for precision in [p for p in args.compile_precisions.split(",") if p in precisions]:
                plan.append((width, None, precision, "auto", True))

    started = time.perf_counter()
    for i, (width, depth, precision, fmt, compile_) in enumerate([] if args.skip_throughput else plan, 1):
        label = f"width {width}, depth {depth or 'all'}, {precision}, {fmt}, compile {'on' if compile_ else 'off'}"
        left = args.budget - (time.perf_counter() - started)
        if left <= 0 or (compile_ and left < COMPILE_RESERVE and device.type == "cuda"):
            rows.append({"width": width, "depth": depth or "all", "precision": precision, "memory_format": fmt,
                         "compile_asked": compile_, "compile": None, "train_img_s": None, "eval_img_s": None,
                         "warmup_s": None, "note": None,
                         "error": f"skipped: too little of the {args.budget:.0f} s budget was left"})
            continue
        print(f"[{i}/{len(plan)}] {label} ...", file=sys.stderr, flush=True)
        rows.append(bench.row(width, depth, precision, fmt, compile_))
        r = rows[-1]
        print(f"    train {r['train_img_s']} img/s, eval {r['eval_img_s']} img/s, warm-up {r['warmup_s']} s"
              f"{'; ' + r['error'] if r['error'] else ''}", file=sys.stderr, flush=True)
        write()
    meta["throughput_seconds"] = round(time.perf_counter() - started, 1)
    write()

    for method in [m for m in args.paper.split(",") if m]:
        print(f"paper preset: {method} on the real MNIST (timeout {args.paper_timeout} s) ...", file=sys.stderr,
              flush=True)
        paper.append(paper_run(method, args, out.parent))
        print(f"    {paper[-1]}", file=sys.stderr, flush=True)
        write()
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())

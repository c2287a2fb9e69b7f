"""How much the harness's training loop costs over a bare PyTorch loop doing the same work.

Both sides train the same model (the same initial weights) on the same data (real digits from
the offline mnist5k, already in memory on the device), with the same optimiser (SGD, momentum,
weight decay), batch size, shuffling and number of steps, and run one validation pass per epoch:

- harness: ``odnbench.Trainer.fit`` (what the ``full`` method calls), with its cost accounting,
  epoch lines (to an in-memory stream, as in a log), best-epoch checkpoint and the recipe's
  execution settings (precision, memory format, compile);
- bare: the loop a careful PyTorch user writes by hand: shuffle, index, forward, backward, step;
  then top-1 on validation, read once.

The two alternate in one process (bare first on even repetitions, harness first on odd ones) so
that a busy machine slows both alike; the first pair is a discarded warm-up. Each repetition gives
one ratio bare_seconds / harness_seconds; the last line printed is their median: ``ratio 0.97``
(1.0 = no overhead; the target is >= 0.95). On CPU the seconds are the process's CPU time by
default (one thread), which other work on a shared machine barely disturbs; on CUDA, wall time.
On CPU in fp32 both sides do exactly the same arithmetic, and the script says whether their
final weights are identical.

    python benchmarks/harness_overhead.py                     # CPU, quick widths, < 1 minute
    python benchmarks/harness_overhead.py --repeats 9         # more repetitions on a noisy machine
    python benchmarks/harness_overhead.py --device cuda --width full --train 12800 --val 10000 \
        --batch-size 128 --eval-batch 2048                    # the paper's batch, ~30 s on an H100
    python benchmarks/harness_overhead.py --device cuda --set recipe.precision=bf16
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import statistics
import sys
import time


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _elapsed(started: tuple[float, float]) -> dict:
    wall, cpu = _clocks()
    return {"wall": wall - started[0], "cpu": cpu - started[1]}


def load_splits(n_train: int, n_val: int, device):
    """Real digits (mnist5k, offline), repeated when more training images are asked for than it has."""
    import torch

    from odnbench.data import Split, Splits
    from odnbench.registry import get_registry

    full = get_registry().dataset("mnist5k").load(None, download=False, seed=0)
    reps = -(-n_train // len(full.train))
    train = Split(full.train.x.repeat(reps, 1, 1, 1)[:n_train], full.train.y.repeat(reps)[:n_train])
    val = full.val.subset(n_val, 0)
    empty = Split(torch.zeros((0, *full.train.x.shape[1:])), torch.zeros(0, dtype=torch.long))
    return Splits(full.info, train, val, empty).to(device)


def make_recipe(args):
    from odnbench.plan import split_overrides
    from odnbench.recipes import make_recipe as _make

    sets = split_overrides(args.set).get("recipe", {})
    fields = {"width": args.width, "batch_size": str(args.batch_size), "schedule": "none",
              "eval_batch_size": str(args.eval_batch), "threads": str(args.threads), **sets}
    return _make("quick", fields)


def harness_run(model, splits, recipe, device, epochs: int, seed: int) -> float:
    """Seconds for ``epochs`` epochs through the harness's Trainer.fit (as the ``full`` method calls it)."""
    from odnbench.progress import Progress
    from odnbench.trainer import CostMeter, Trainer

    trainer = Trainer(splits, recipe, device, Progress(stream=io.StringIO()), CostMeter(), seed)
    started = _clocks()
    with trainer.execution.activate():  # as run_cell does: TF32 and cuDNN switches for the cell
        trainer.fit(model, label="full", epochs=epochs, patience=None)
    return _elapsed(started)


def bare_run(model, splits, recipe, device, epochs: int, seed: int) -> float:
    """Seconds for the same work written as a plain PyTorch loop."""
    import torch
    import torch.nn.functional as F

    bf16 = getattr(recipe, "precision", "fp32") == "bf16"
    fmt = getattr(recipe, "memory_format", "auto")
    channels_last = fmt == "channels_last" or (fmt == "auto" and device.type == "cuda")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    tf32 = getattr(recipe, "tf32", True) and device.type == "cuda"
    if device.type == "cuda":  # what a careful hand-written GPU loop sets
        from odnbench.execution import set_tf32  # the TF32 switches' names differ across torch versions

        set_tf32(tf32)
        torch.backends.cudnn.benchmark = True
    train, val = splits.train, splits.val
    n, bs, eb = len(train), recipe.batch_size, recipe.eval_batch_size
    started = _clocks()
    model.to(device, memory_format=memory_format)
    step = model
    if getattr(recipe, "compile", False) and device.type == "cuda":
        step = torch.compile(model, dynamic=False)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, bs):
            idx = order[start:start + bs]
            x, y = train.x[idx].contiguous(memory_format=memory_format), train.y[idx]
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy((step if len(y) == bs else model)(x), y)
            loss.backward()
            opt.step()
        model.eval()
        correct = torch.zeros((), dtype=torch.long, device=device)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            for start in range(0, len(val), eb):
                xv = val.x[start:start + eb].contiguous(memory_format=memory_format)
                correct += (model(xv).argmax(1) == val.y[start:start + eb]).sum()
        _ = 100.0 * correct.item() / len(val)  # read once an epoch, as a loop that prints it would
    return _elapsed(started)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--width", default="16,32,64,128", help="stage widths or 'full' (default: quick widths)")
    parser.add_argument("--train", type=int, default=512, help="training images per epoch")
    parser.add_argument("--val", type=int, default=256, help="validation images (one pass per epoch)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eval-batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run")
    parser.add_argument("--repeats", type=int, default=5, help="timed (bare, harness) pairs after one warm-up pair")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: 1 on CPU, where a shared machine makes OpenMP threads wait "
                             "on each other; torch's default on CUDA); 0 = torch's default")
    parser.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                        help="what the ratio compares: process CPU time (auto on CPU: robust to other "
                             "processes on a shared machine) or wall time (auto on CUDA, where the device works "
                             "while the process waits)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="recipe.FIELD=VALUE",
                        help="a recipe field for both sides (precision, memory_format, tf32, compile; with "
                             "compile both sides compile again in every run); repeatable")
    args = parser.parse_args(argv)

    os.environ.setdefault("ODNBENCH_LOAD_PLUGINS", "datasets,timm-resnet")
    import torch

    from odnbench.envinfo import device_name
    from odnbench.registry import get_registry
    from odnbench.runtime import pick_device

    device = pick_device(args.device)
    if args.threads is None:
        args.threads = 1 if device.type == "cpu" else 0
    clock = args.clock if args.clock != "auto" else ("cpu" if device.type == "cpu" else "wall")
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = make_recipe(args)
    splits = load_splits(args.train, args.val, device)
    torch.manual_seed(args.seed)
    info = splits.info
    initial = get_registry().backbone(args.backbone).build(
        in_chans=info.channels, num_classes=info.num_classes, stem=recipe.stem, width=recipe.widths).to(device)
    settings = {k: getattr(recipe, k) for k in ("precision", "tf32", "memory_format", "compile") if hasattr(recipe, k)}
    print(f"{args.backbone} width {args.width} on {device_name(device)} ({device.type}), "
          f"{torch.get_num_threads()} threads; {args.train} training images x {args.epochs} epoch(s), "
          f"batch {args.batch_size}, {args.val} validation images; {settings or 'fp32'}", flush=True)

    ratios, identical = [], None
    for rep in range(args.repeats + 1):
        times, finals = {}, {}
        for side in (("bare", "harness") if rep % 2 == 0 else ("harness", "bare")):
            model = copy.deepcopy(initial)
            run = bare_run if side == "bare" else harness_run
            times[side] = run(model, splits, recipe, device, args.epochs, args.seed)
            finals[side] = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
        same = all(torch.equal(finals["bare"][k], finals["harness"][k]) for k in finals["bare"])
        identical = same if identical is None else identical and same
        ratio = {c: times["bare"][c] / max(1e-9, times["harness"][c]) for c in ("wall", "cpu")}
        tag = "warm-up, not counted" if rep == 0 else f"{rep}/{args.repeats}"
        print(f"  [{tag}] wall: bare {times['bare']['wall']:.3f}s harness {times['harness']['wall']:.3f}s "
              f"ratio {ratio['wall']:.3f} | process CPU: bare {times['bare']['cpu']:.3f}s "
              f"harness {times['harness']['cpu']:.3f}s ratio {ratio['cpu']:.3f}", flush=True)
        if rep:
            ratios.append(ratio[clock])
    if args.epochs > 1:
        print("final weights not compared: with several epochs the harness keeps the best epoch's weights")
    else:
        print(f"identical final weights (bare vs harness): {identical}"
              + ("" if identical or device.type == "cpu" else " (expected on GPU: kernels are not bitwise deterministic)"))
    print(f"{clock} clock, median of {len(ratios)} repetitions; min {min(ratios):.3f}, max {max(ratios):.3f}")
    print(f"ratio {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

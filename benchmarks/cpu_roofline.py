"""How close the harness's CPU training comes to what this CPU can do (issue 25).

In one run, with one torch thread:
  1. the machine's matmul peak in fp32 and in bf16 (best of several square matmuls);
  2. the training throughput of the harness's own train step (``odnbench.trainer.Trainer.train_epoch``,
     the one every method runs) for the quick-width full ResNet-18 (widths 16,32,64,128, cifar stem,
     28x28x1 real digits, 10 classes, batch 128) under each execution setting odnbench offers
     (``recipe.precision``, ``recipe.memory_format``, ``recipe.compile``).

Each setting prints images/s, GFLOP/s (training FLOPs per image = forward MACs x 2 x 3, the MACs from
``odnbench.metrics.count_macs``) and its fraction of the matching peak (bf16 settings against the bf16
peak, fp32 ones against the fp32 peak). The last line, ``fraction X``, is the best setting's GFLOP/s as
a fraction of the bf16 peak. Speed targets live here, never in unit tests. Run:

    python benchmarks/cpu_roofline.py               # about 2-4 minutes on an idle 2-core machine
    python benchmarks/cpu_roofline.py --no-compile  # skip torch.compile (its C++ build takes a minute)
"""

from __future__ import annotations

import argparse
import os
import sys
import time

#: name -> recipe fields. Every execution setting odnbench offers on a CPU.
SETTINGS = {
    "fp32": {"precision": "fp32", "memory_format": "contiguous"},
    "fp32 channels-last": {"precision": "fp32", "memory_format": "channels_last"},
    "bf16": {"precision": "bf16", "memory_format": "contiguous"},
    "bf16 channels-last": {"precision": "bf16", "memory_format": "channels_last"},
    "fp32 compile": {"precision": "fp32", "memory_format": "contiguous", "compile": True},
    "bf16 channels-last compile": {"precision": "bf16", "memory_format": "channels_last", "compile": True},
}
QUICK_WIDTH = "16,32,64,128"
FORWARDS_PER_STEP = 3  # forward + backward ~ 3 forwards (odnbench.trainer.FORWARDS_PER_STEP)


def matmul_peak(dtype, size: int = 2048, repeats: int = 5, min_seconds: float = 0.3) -> float:
    """GFLOP/s of ``size``² x ``size``² matmuls in ``dtype`` (best of ``repeats`` timed windows)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dtype)
    b = torch.randn(size, size, generator=g).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up (oneDNN picks its kernel)
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            torch.mm(a, b, out=out)
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, 2 * size**3 * calls / elapsed / 1e9)
    return best


def conv_rate(precision: str, channels_last: bool, channels: int = 64, size: int = 14, batch: int = 128,
              repeats: int = 3, min_seconds: float = 0.3) -> float:
    """GFLOP/s of one 3x3 convolution of the quick ResNet-18 (``channels``->``channels`` at ``size``²,
    stage 3) trained alone: forward, input gradient and weight gradient (3 x its MACs x 2), best of
    ``repeats``. The roof for this network's own layer shapes, below the big-matmul peak."""
    import torch

    conv = torch.nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.detach().contiguous(
            memory_format=torch.channels_last).requires_grad_()
    flop = 2 * batch * size * size * channels * channels * 9 * FORWARDS_PER_STEP

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = conv(x)
        out.float().sum().backward()

    step()
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, time.perf_counter()
        while True:
            step()
            calls += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = max(best, flop * calls / elapsed / 1e9)
    return best


def quick_resnet(width: str = QUICK_WIDTH, backbone: str = "resnet18"):
    """The full-depth network a quick cell trains (the harness's own builder and init)."""
    from odnbench.recipes import make_recipe
    from odnbench.registry import get_registry
    from odnbench.runtime import backbone_builder

    registry = get_registry()
    recipe = make_recipe("quick", {"width": width})
    info = registry.dataset("mnist5k").load(None, download=False, seed=0).info
    return backbone_builder(registry, backbone, info, recipe)()


def digits(n: int):
    """``n`` real training digits of mnist5k, as the harness holds them (in-memory tensors)."""
    from odnbench.registry import get_registry

    splits = get_registry().dataset("mnist5k").load(None, download=False, seed=0)
    return splits, splits.train.subset(n, 0)


def training_gflop_per_image(net, shape=(1, 28, 28)) -> float:
    from odnbench.metrics import count_macs

    return count_macs(net, shape) * 2 * FORWARDS_PER_STEP / 1e9


def train_throughput(setting: dict, *, width: str = QUICK_WIDTH, batch_size: int = 128, images: int = 1024,
                     epochs: int = 3, warmup_epochs: int = 1) -> dict:
    """Images/s of ``Trainer.train_epoch`` (the harness's step: its optimiser, loss, execution) on
    ``images`` real digits in batches of ``batch_size``; best of ``epochs`` timed epochs after warm-up.
    Returns ``{"img_s", "execution"}`` (``execution``: what ran, with notes of settings not applied)."""
    import dataclasses

    import torch

    from odnbench.progress import Progress
    from odnbench.recipes import make_recipe
    from odnbench.trainer import CostMeter, Trainer

    splits, train = digits(images)
    overrides = {"width": width, "batch_size": str(batch_size)}
    overrides.update({k: str(v).lower() for k, v in setting.items()})
    recipe = make_recipe("quick", overrides)
    splits = dataclasses.replace(splits, train=train)
    torch.manual_seed(0)
    net = quick_resnet(width)
    trainer = Trainer(splits, recipe, torch.device("cpu"), Progress(quiet=True), CostMeter(), seed=0)
    if setting.get("compile"):
        # A cell skips compile on CPU (Execution.for_recipe says why: the C++ build of each network
        # shape takes minutes); here it is forced on to show what it would gain. The first epoch compiles.
        trainer.execution.compile, trainer.execution.notes = True, []
    opt = trainer.make_optimizer(net.parameters())
    started = time.perf_counter()
    for _ in range(warmup_epochs):
        trainer.train_epoch(net, opt)
    warmup_seconds = time.perf_counter() - started
    best = 0.0
    for _ in range(epochs):
        stats = trainer.train_epoch(net, opt)
        best = max(best, stats.samples / stats.seconds)
    return {"img_s": best, "warmup_seconds": warmup_seconds, "execution": trainer.execution.env()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1024, help="images per timed epoch (default 1024: 8 batches)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per setting (best of)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--matmul-size", type=int, default=2048)
    parser.add_argument("--matmul-repeats", type=int, default=5)
    parser.add_argument("--width", default=QUICK_WIDTH, help="stage widths of the ResNet-18 (default: quick's)")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile settings")
    parser.add_argument("--only", action="append", help="measure only this setting (repeatable)")
    args = parser.parse_args(argv)

    os.environ.setdefault("ODNBENCH_LOAD_PLUGINS", "datasets,timm-resnet")
    import torch

    torch.set_num_threads(1)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, 1 thread, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    min_seconds = 0.3 if args.matmul_repeats > 1 else 0.01
    peak = {name: matmul_peak(dtype, args.matmul_size, args.matmul_repeats, min_seconds)
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    for name, value in peak.items():
        print(f"peak {name}: {value:.1f} GFLOP/s ({args.matmul_size}² matmul, best of {args.matmul_repeats})",
              flush=True)
    for precision, cl in (("fp32", False), ("bf16", True)):
        rate = conv_rate(precision, cl, repeats=args.matmul_repeats, min_seconds=min_seconds)
        print(f"one 3x3 conv 64->64 at 14x14, batch 128, {precision}{' channels-last' if cl else ''}, forward + "
              f"backward: {rate:.1f} GFLOP/s ({rate / peak[precision]:.3f} of {precision} peak)", flush=True)
    gflop = training_gflop_per_image(quick_resnet(args.width))
    print(f"ResNet-18 ({args.width}, 28x28x1): {gflop * 1e3 / 2 / FORWARDS_PER_STEP:.2f} M forward MACs, "
          f"{gflop:.4f} GFLOP per training image (MACs x 2 x 3); batch {args.batch_size}", flush=True)
    best_name, best_gflops = None, 0.0
    for name, setting in SETTINGS.items():
        if args.only and name not in args.only:
            continue
        if args.no_compile and setting.get("compile"):
            continue
        try:
            out = train_throughput(setting, width=args.width, batch_size=args.batch_size, images=args.images,
                                   epochs=args.epochs, warmup_epochs=args.warmup_epochs)
        except Exception as exc:  # noqa: BLE001 -- torch.compile on CPU needs a C++ compiler; say why, go on
            print(f"{name:<28} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            continue
        notes = out["execution"].get("execution_notes")
        if setting.get("compile") and not out["execution"]["compile"]:
            print(f"{name:<28} not applied: {'; '.join(notes or ['compile is off'])}", flush=True)
            continue
        gflops = out["img_s"] * gflop
        kind = setting["precision"]
        compiled = f" (first epoch, compiling: {out['warmup_seconds']:.0f} s)" if setting.get("compile") else ""
        print(f"{name:<28} {out['img_s']:8.0f} img/s {gflops:7.1f} GFLOP/s {gflops / peak[kind]:6.3f} of {kind} peak"
              f"{compiled}", flush=True)
        if gflops > best_gflops:
            best_name, best_gflops = name, gflops
    if best_name is None:
        print("fraction 0")
        return 1
    print(f"best: {best_name}")
    print(f"fraction {best_gflops / peak['bf16']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

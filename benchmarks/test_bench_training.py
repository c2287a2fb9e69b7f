"""Training speed: the harness's epoch against a bare PyTorch loop, and one quick-width epoch per
execution setting with its fraction of this CPU's matmul peak."""

from __future__ import annotations

import copy
import statistics
import time

import pytest
import torch
from loops import QUICK_WIDTH, bare_run, build_net, harness_run, load_splits, matmul_peak

from odnbench.recipes import make_recipe

pytestmark = pytest.mark.benchmark(group="training")
FORWARDS_PER_STEP = 3  # forward + backward ~ 3 forwards (odnbench.trainer.FORWARDS_PER_STEP)


def test_harness_epoch_against_a_bare_loop(benchmark, smoke, device):
    """One epoch (training + one validation pass) through ``Trainer.fit`` against the same work as a
    hand-written loop, same model, data, optimiser and order. The table times the harness side; the
    bare side runs in the same rounds (before the harness on even rounds, after it on odd ones, so a
    busy machine slows both alike), and ``ratios.bare_over_harness`` is the median of the rounds'
    bare / harness ratios (1.0 = no overhead). On CPU both sides are timed in process CPU time, which other processes on
    a shared machine barely disturb; on CUDA in wall time."""
    n_train, n_val, rounds = (128, 64, 1) if smoke else (384, 128, 5)
    warmup = 0 if smoke else 1
    recipe = make_recipe("quick", {"width": QUICK_WIDTH, "schedule": "none", "eval_batch_size": "512"})
    splits = load_splits(n_train, n_val, device)
    torch.manual_seed(0)
    initial = build_net(recipe).to(device)
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    seconds: dict[str, list[float]] = {"bare": [], "harness": []}
    walls: dict[str, list[float]] = {"bare": [], "harness": []}
    calls = []

    def timed(side, run):
        model = copy.deepcopy(initial)
        wall, started = time.perf_counter(), clock()
        run(model, splits, recipe, device, 1, 0)
        seconds[side].append(clock() - started)
        walls[side].append(time.perf_counter() - wall)

    def setup():
        calls.append(len(calls))
        if len(calls) % 2 == 1:  # rounds 0, 2, ...: bare first
            timed("bare", bare_run)

    def teardown(*_):  # gets the harness's arguments
        if len(calls) % 2 == 0:  # rounds 1, 3, ...: bare after the harness
            timed("bare", bare_run)

    benchmark.pedantic(timed, args=("harness", harness_run), setup=setup, teardown=teardown,
                       rounds=rounds, warmup_rounds=warmup)
    # Each round's pair gives one ratio (a drift in the machine's load cancels within a pair); their median.
    ratio = statistics.median(b / h for b, h in zip(seconds["bare"][warmup:], seconds["harness"][warmup:]))
    wall_ratio = statistics.median(b / h for b, h in zip(walls["bare"][warmup:], walls["harness"][warmup:]))
    bare, harness = (statistics.median(seconds[s][warmup:]) for s in ("bare", "harness"))
    benchmark.extra_info.update({
        "ratios": {"bare_over_harness": round(ratio, 4)},
        "clock": "process CPU" if device.type == "cpu" else "wall", "wall_ratio": round(wall_ratio, 4),
        "bare_s": round(bare, 4), "harness_s": round(harness, 4), "train_images": n_train, "val_images": n_val,
        "rounds": rounds, "recipe": {k: getattr(recipe, k) for k in ("precision", "memory_format", "batch_size")},
    })
    assert len(seconds["bare"]) == len(seconds["harness"]) == rounds + warmup
    assert bare > 0 and harness > 0


#: name -> recipe fields: the execution settings odnbench offers on a CPU (torch.compile is left out:
#: inductor's C++ build of one training step takes minutes here; docs/speed.md).
SETTINGS = {
    "fp32": {"precision": "fp32", "memory_format": "contiguous"},
    "fp32-channels-last": {"precision": "fp32", "memory_format": "channels_last"},
    "bf16": {"precision": "bf16", "memory_format": "contiguous"},
    "bf16-channels-last": {"precision": "bf16", "memory_format": "channels_last"},  # quick's own
}


def peak_gflops(precision: str, smoke: bool, device, clock) -> float:
    """The device's matmul GFLOP/s in ``precision`` (1024² matmuls, best of 2 windows), the roof an
    epoch is divided by."""
    size, repeats, least = (256, 1, 0.02) if smoke else (1024, 2, 0.1)
    return matmul_peak(torch.bfloat16 if precision == "bf16" else torch.float32, size, repeats, least, device, clock)


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_quick_width_training_epoch(benchmark, smoke, device, setting):
    """One epoch of ``Trainer.train_epoch`` (the step every method runs) for the quick-width
    ResNet-18 on real mnist5k digits at quick's batch size. ``images_per_s`` is the median epoch's
    (wall time, as the table). ``ratios.fraction_of_peak``: training GFLOP/s (forward MACs x 2 x 3
    per image) over the matching matmul peak (bf16 settings against the bf16 peak), the peak measured
    just before each epoch and both timed in process CPU time (wall time on CUDA), so that a busy
    machine slows both alike; the median of the rounds' fractions."""
    from odnbench.metrics import count_macs
    from odnbench.progress import Progress
    from odnbench.trainer import CostMeter, Trainer

    images, rounds = (64, 1) if smoke else (192, 5)
    recipe = make_recipe("quick", {"width": QUICK_WIDTH, **SETTINGS[setting]})
    splits = load_splits(images, 64, device)
    torch.manual_seed(0)
    net = build_net(recipe).to(device)
    trainer = Trainer(splits, recipe, device, Progress(quiet=True), CostMeter(), seed=0)
    opt = trainer.make_optimizer(net.parameters())
    gflop = count_macs(net, (1, 28, 28)) * 2 * FORWARDS_PER_STEP / 1e9
    clock = time.process_time if device.type == "cpu" else time.perf_counter
    rates: list[float] = []
    fractions: list[float] = []
    peaks: list[float] = []

    def measure_peak():
        peaks.append(peak_gflops(recipe.precision, smoke, device, clock))

    def epoch():
        started = clock()
        stats = trainer.train_epoch(net, opt)  # reads its loss at the end: the device has finished
        rates.append(stats.samples / stats.seconds)
        fractions.append(stats.samples * gflop / (clock() - started) / peaks[-1])

    benchmark.pedantic(epoch, setup=measure_peak, rounds=rounds, warmup_rounds=0 if smoke else 1)
    img_s = statistics.median(rates[-rounds:])
    benchmark.extra_info.update({
        "images_per_s": round(img_s, 1), "gflop_per_image": round(gflop, 5), "gflops": round(img_s * gflop, 2),
        "peak_gflops": round(statistics.median(peaks[-rounds:]), 1),
        "ratios": {"fraction_of_peak": round(statistics.median(fractions[-rounds:]), 4)},
        "clock": "process CPU" if device.type == "cpu" else "wall",
        "batch": recipe.batch_size, "images": images, "execution": trainer.execution.env(),
    })
    assert img_s > 0 and trainer.execution.precision == SETTINGS[setting]["precision"]

"""Every metric, defined once. The harness applies these to each method's exported model.

- ``top1``: percent of the test split classified correctly (the model was chosen on validation).
- ``params``: number of parameters of the exported model.
- ``size_mb``: bytes of ``torch.save(model.state_dict())`` / 1e6 -- the ODN paper's "MB". Saved to
  a buffer (as to a file object); torch.save to a path names the zip records after the file, so a
  checkpoint on disk differs from this by a few bytes per tensor depending on its file name.
- ``size_mib``: fp32-equivalent bytes of parameters + buffers / 2**20 (numel x element size).
- ``flops``: floating-point operations of one forward pass on one image, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products; a
  multiply-add counts as 2 FLOPs; BN, ReLU, pooling and additions are not counted).
- ``macs``: flops / 2, the unit torch-pruning, fvcore and the papers use. Never call MACs FLOPs.
- ``latency_ms``: batch-1 forward latency in eval + inference_mode after warm-up, with a fixed
  thread count (:func:`latency_ms` takes a ``batch_size``: ``leaderboard --remeasure-latency`` also
  times a larger batch and reports ms per image); ``latency_windows`` timed windows of ``latency_iters`` calls each; p50/p90 over
  the windows' per-call means (CUDA synchronised when on GPU). Its spread is stored with it
  (``windows_ms``, ``p90_over_p50``, ``spread`` = (max - min) / p50 of the windows, ``cpu_share``
  = CPU seconds per wall second the process got, ``busy``);
  :func:`measured_latency` measures once more when the spread says the machine was busy
  (:func:`odnbench.result.latency_busy`). Thread policy, the same for the harness and
  ``odnbench profile``: ``recipe.threads`` / ``--threads`` (default 1), 0 = torch's default.
- ``throughput``: images per second at batch ``throughput_batch``, median over windows.

Top-1, latency and throughput run in the precision and memory format the cell trained in (an
:class:`odnbench.execution.Execution`; the result's ``env`` says which). FLOPs/MACs are counted in fp32.

An early-exit network (:class:`odnbench.depthnet.EarlyExitNet`) spends different compute on
different images, so its ``flops``/``macs`` are the mean over the test images of what each one
spent: the stem, the blocks up to its exit and every exit evaluated on the way (the per-exit counts
come from the same flop counter, on the network cut at that exit plus the exits before it). Its
``exits`` record says where images left (``shares``, ``val_shares``), what each exit costs
(``macs``, cumulative) and the exact means; its latency and throughput run on real test images
(batch-1 latency one test image per call), since a random input exits anywhere.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import statistics
import time
from contextlib import contextmanager

import torch
from torch import nn

from odnbench.depthnet import EarlyExitNet
from odnbench.result import latency_busy

FLOP_COUNTER = "torch.utils.flop_counter.FlopCounterMode"


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def saved_size_mb(model: nn.Module) -> float:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes / 1e6


def tensor_size_mib(model: nn.Module) -> float:
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(b.numel() * b.element_size() for b in model.buffers())
    return total / 2**20


def count_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on a single input of ``input_shape`` (C, H, W)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = _device_of(model)
    x = torch.zeros((1, *input_shape), device=device)
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    return count_flops(model, input_shape) // 2


def footprint(model: nn.Module, input_shape: tuple[int, ...]) -> dict:
    """Parameters, saved size (MB) and MACs of a model, exactly as the harness measures its exported
    model: for sizing a model before training (matching another method's size or MACs)."""
    return {"params": count_params(model), "size_mb": round(saved_size_mb(model), 6),
            "macs": count_macs(model, input_shape)}


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


@torch.inference_mode()
def top1(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, *, execution=None) -> float:
    """Top-1 accuracy in percent. Counted on the device and read once (no host sync per batch);
    ``execution`` (an :class:`odnbench.execution.Execution`) sets precision and memory format."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    with _autocast(execution):
        for start in range(0, len(y), batch_size):
            logits = model(_input(execution, x[start:start + batch_size]))
            correct += (logits.argmax(1) == y[start:start + batch_size]).sum()
    model.train(was_training)
    return 100.0 * int(correct) / max(1, len(y))


def _autocast(execution):
    return execution.autocast() if execution is not None else contextlib.nullcontext()


def _input(execution, x: torch.Tensor) -> torch.Tensor:
    return execution.input(x) if execution is not None else x


@contextmanager
def torch_threads(n: int):
    """Run with exactly ``n`` intra-op threads (0 = leave as is), then restore."""
    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.inference_mode()
def timed_windows(model: nn.Module, x: torch.Tensor | list[torch.Tensor], warmup: int, windows: int,
                  iters: int) -> list[float]:
    """Seconds per call, one value per timed window. ``x``: the input of every call, or a list of
    inputs taken in turn (an early-exit network's cost depends on the image)."""
    inputs = x if isinstance(x, list) else [x]
    calls = itertools.cycle(inputs)
    device = inputs[0].device
    for _ in range(warmup):
        model(next(calls))
    _sync(device)
    per_call = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(iters):
            model(next(calls))
        _sync(device)
        per_call.append((time.perf_counter() - start) / iters)
    return per_call


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_ms(model: nn.Module, input_shape, *, warmup=10, windows=5, iters=20, threads=0, execution=None,
               images: torch.Tensor | None = None, batch_size: int = 1) -> dict:
    """Latency of one call on ``batch_size`` images (default 1), on a random input, or on ``images``
    ``batch_size`` per call in turn (``input: "images"``). ``p50``/``p90`` are ms per call; above batch
    1 the result also holds them per image (``ms_per_image_p50``/``_p90`` = per call / ``batch_size``),
    the number to compare across batch sizes. At batch 1 the result is what it was before batches."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"latency batch_size {batch_size!r} is not allowed; allowed: an integer >= 1")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    with torch_threads(threads) as used, _autocast(execution):
        x: torch.Tensor | list[torch.Tensor]
        if images is not None:
            x = [_input(execution, images[i:i + batch_size].to(device))
                 for i in range(0, len(images) - batch_size + 1, batch_size)]
            if not x:
                raise ValueError(f"latency at batch {batch_size} needs at least {batch_size} images; got {len(images)}")
        else:
            x = _input(execution, torch.randn((batch_size, *input_shape), device=device))
        wall, cpu = time.perf_counter(), time.process_time()
        per_call = timed_windows(model, x, warmup, windows, iters)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    model.train(was_training)
    ms = [1000 * s for s in per_call]
    p50 = statistics.median(ms)
    out = {
        "p50": round(p50, 4),
        "p90": round(_quantile(ms, 0.9), 4),
        "batch_size": batch_size,
        "windows": windows,
        "iters_per_window": iters,
        "threads": used,
        "device": device.type,
        "windows_ms": [round(v, 4) for v in ms],
        "p90_over_p50": round(_quantile(ms, 0.9) / p50, 4) if p50 > 0 else None,
        "spread": round((max(ms) - min(ms)) / p50, 4) if p50 > 0 else None,
        # CPU seconds this process got per wall second: under one core when other processes held
        # the cores (a uniformly slow run has no spread to show it). CPU only: a GPU run waits for
        # the device.
        "cpu_share": round(cpu / wall, 4) if device.type == "cpu" and wall > 0 else None,
    }
    if batch_size > 1:  # (batch 1 keeps the keys it always had: stored records and pages keep their bytes)
        out["ms_per_image_p50"] = round(p50 / batch_size, 6)
        out["ms_per_image_p90"] = round(_quantile(ms, 0.9) / batch_size, 6)
    if images is not None:
        out["input"] = "images"
    out["busy"] = bool(latency_busy(out))
    return out


def measured_latency(model: nn.Module, input_shape, recipe, execution=None, images: torch.Tensor | None = None) -> dict:
    """Batch-1 latency with the recipe's settings; measured a second time when the first looks
    busy (the less noisy of the two is kept, ``attempts`` says how many ran). ``images``: see
    :func:`latency_ms` (the first windows x iterations of them are used)."""
    if images is not None:
        images = images[: recipe.latency_windows * recipe.latency_iters]

    def once():
        return latency_ms(model, input_shape, warmup=recipe.latency_warmup, windows=recipe.latency_windows,
                          iters=recipe.latency_iters, threads=recipe.threads, execution=execution, images=images)

    first = once()
    if not first["busy"]:
        return {**first, "attempts": 1}
    second = once()
    best = min((first, second), key=lambda lat: (lat["p90_over_p50"] or 0) + (lat["spread"] or 0))
    return {**best, "attempts": 2}


def throughput(model: nn.Module, input_shape, *, batch_size=256, warmup=2, windows=3, iters=3, threads=0,
               execution=None, images: torch.Tensor | None = None) -> dict:
    """Images per second at ``batch_size``, on a random batch or on the first ``batch_size`` ``images``."""
    device = _device_of(model)
    was_training = model.training
    model.eval()
    with torch_threads(threads) as used, _autocast(execution):
        if images is not None:
            batch_size = min(batch_size, len(images))
            x = _input(execution, images[:batch_size].to(device))
        else:
            x = _input(execution, torch.randn((batch_size, *input_shape), device=device))
        per_call = timed_windows(model, x, warmup, windows, iters)
    model.train(was_training)
    return {
        "images_per_s": round(batch_size / statistics.median(per_call), 2),
        "batch_size": batch_size,
        "threads": used,
        "device": device.type,
    }


def exit_flops(model: EarlyExitNet, input_shape: tuple[int, ...]) -> list[int]:
    """FLOPs an image spends when it leaves an :class:`EarlyExitNet` at each exit (1..N): the stem and
    blocks up to that exit plus every exit evaluated on the way, its own included. Counted in one pass
    through every block and exit, by the flop counter's per-module totals; when those do not add up to
    the pass's total (work outside the stem, blocks and exits), on the network cut at each exit instead."""
    from torch.utils.flop_counter import FlopCounterMode

    device = _device_of(model)
    every = model.with_threshold(2.0)  # no image is that confident: the pass runs every block and exit
    was_training = model.training
    every.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        every(torch.zeros((1, *input_shape), device=device))
    model.train(was_training)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__

    def part(name: str) -> int:
        return int(per_module.get(f"{root}.{name}", 0))

    stem = part("stem")
    blocks = [part(f"blocks.{i}") for i in range(model.depth)]
    exits = [part(f"exits.{i}") for i in range(model.depth)]
    if stem + sum(blocks) + sum(exits) == counter.get_total_flops():
        return [stem + sum(blocks[:k]) + sum(exits[:k]) for k in range(1, model.depth + 1)]
    heads = [count_flops(head, (width,)) for head, width in zip(model.exits, model.widths)]
    return [count_flops(model.cut(k), input_shape) + sum(heads[: k - 1]) for k in range(1, model.depth + 1)]


@torch.inference_mode()
def exit_counts(model: EarlyExitNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512, *,
                execution=None) -> tuple[int, list[int]]:
    """(images classified correctly, images that left at each exit) of an early-exit network."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    counts = torch.zeros(model.depth, dtype=torch.int64, device=y.device)
    with _autocast(execution):
        for start in range(0, len(y), batch_size):
            logits, where = model.run_exits(_input(execution, x[start:start + batch_size]))
            correct += (logits.argmax(1) == y[start:start + batch_size]).sum()
            counts += torch.bincount(where.to(counts.device), minlength=model.depth)
    model.train(was_training)
    return int(correct), [int(c) for c in counts.tolist()]


def _early_exit_point(model: EarlyExitNet, splits, recipe, shape, execution) -> dict:
    """measure_point's accuracy and compute for an early-exit network: where each test (and
    validation) image left, and the mean of what the test images spent."""
    per_exit = exit_flops(model, shape)
    batch = recipe.eval_batch_size
    out: dict = {}
    shares = {}
    for split in ("val", "test"):
        s = getattr(splits, split)
        correct, counts = exit_counts(model, s.x, s.y, batch, execution=execution)
        n = max(1, len(s.y))
        out[split] = (100.0 * correct / n, sum(c * f for c, f in zip(counts, per_exit)) / n)
        shares[split] = [round(c / n, 6) for c in counts]
    mean_flops = round(out["test"][1])
    return {"top1": round(out["test"][0], 4), "val_top1": round(out["val"][0], 4), "flops": mean_flops,
            "exits": {"threshold": model.threshold, "macs": [f // 2 for f in per_exit], "shares": shares["test"],
                      "val_shares": shares["val"], "mean_macs": round(out["test"][1] / 2, 3),
                      "val_mean_macs": round(out["val"][1] / 2, 3)}}


def spent_flops(model: nn.Module, splits, recipe, *, execution=None) -> int:
    """``metrics.flops`` of a model as :func:`measure` stores it: one forward pass on one image, or for
    an early-exit network the mean over the test images (for re-measuring a stored model)."""
    info = splits.info
    shape = (info.channels, info.image_size, info.image_size)
    if isinstance(model, EarlyExitNet):
        return int(_early_exit_point(model, splits, recipe, shape, execution)["flops"])
    return count_flops(model, shape)


def measure_point(model: nn.Module, splits, recipe, *, execution=None) -> dict:
    """What the harness measures on a method's further models (``MethodOutput.curve``): the accuracy
    and footprint parts of :func:`measure`, exactly as it measures them, without latency. An
    early-exit network's point also has its ``exits`` record and its batch-1 latency on test images
    (the point of such a network is what each threshold costs)."""
    info = splits.info
    shape = (info.channels, info.image_size, info.image_size)
    if isinstance(model, EarlyExitNet):
        point = _early_exit_point(model, splits, recipe, shape, execution)
        return {"top1": point["top1"], "val_top1": point["val_top1"], "params": count_params(model),
                "size_mb": round(saved_size_mb(model), 6), "size_mib": round(tensor_size_mib(model), 6),
                "flops": point["flops"], "macs": point["flops"] // 2, "exits": point["exits"],
                "latency_ms": measured_latency(model, shape, recipe, execution, images=splits.test.x)}
    flops = count_flops(model, shape)
    ex = {"execution": execution}
    return {
        "top1": round(top1(model, splits.test.x, splits.test.y, recipe.eval_batch_size, **ex), 4),
        "val_top1": round(top1(model, splits.val.x, splits.val.y, recipe.eval_batch_size, **ex), 4),
        "params": count_params(model),
        "size_mb": round(saved_size_mb(model), 6),
        "size_mib": round(tensor_size_mib(model), 6),
        "flops": flops,
        "macs": flops // 2,
    }


def measure(model: nn.Module, splits, recipe, *, execution=None) -> dict:
    """All metrics of one exported model, as stored under ``metrics`` in result.json. ``execution``:
    top-1, latency and throughput in the precision and memory format the model was trained in."""
    info = splits.info
    shape = (info.channels, info.image_size, info.image_size)
    ex = {"execution": execution}
    # The accuracy and footprint part is measure_point's, so curve points and exported models agree.
    out = {
        **measure_point(model, splits, recipe, execution=execution),
        "flop_counter": FLOP_COUNTER,
        "input_shape": list(shape),
        "test_examples": len(splits.test),
    }
    # An early-exit network's cost depends on the image: timed on test images (measure_point did its latency).
    images = splits.test.x if isinstance(model, EarlyExitNet) else None
    if "latency_ms" not in out:
        out["latency_ms"] = measured_latency(model, shape, recipe, **ex)
    out["throughput"] = throughput(
        model, shape, batch_size=recipe.throughput_batch, windows=max(3, recipe.latency_windows // 2),
        threads=recipe.threads, images=images, **ex,
    )
    return out

"""What the speed benchmarks run: the harness's training loop and the bare PyTorch loop it is
compared with, the real digits they train on, and this CPU's matmul peak.

Both loops train the same model (the same initial weights) on the same data (real digits from the
offline mnist5k, already in memory on the device), with the same optimiser (SGD, momentum, weight
decay), batch size, shuffling and number of steps, and run one validation pass per epoch:

- harness: ``odnbench.Trainer.fit`` (what the ``full`` method calls), with its cost accounting,
  epoch lines (to an in-memory stream, as in a log), best-epoch checkpoint and the recipe's
  execution settings (precision, memory format, compile);
- bare: the loop a careful PyTorch user writes by hand: shuffle, index, forward, backward, step;
  then top-1 on validation, read once.

On CPU in fp32 both do exactly the same arithmetic (tests/test_speed.py checks the final weights are
identical). Used by benchmarks/test_bench_training.py and by tests/test_speed.py.
"""

from __future__ import annotations

import io
import time

QUICK_WIDTH = "16,32,64,128"


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


def build_net(recipe, backbone: str = "resnet18"):
    """The full-depth network a cell of ``recipe`` trains on mnist5k (the harness's builder and init)."""
    from odnbench.registry import get_registry
    from odnbench.runtime import backbone_builder

    registry = get_registry()
    info = registry.dataset("mnist5k").load(None, download=False, seed=0).info
    return backbone_builder(registry, backbone, info, recipe)()


def harness_run(model, splits, recipe, device, epochs: int, seed: int) -> None:
    """``epochs`` epochs through the harness's Trainer.fit (as the ``full`` method calls it)."""
    from odnbench.progress import Progress
    from odnbench.trainer import CostMeter, Trainer

    trainer = Trainer(splits, recipe, device, Progress(stream=io.StringIO()), CostMeter(), seed)
    with trainer.execution.activate():  # as run_cell does: TF32 and cuDNN switches for the cell
        trainer.fit(model, label="full", epochs=epochs, patience=None)


def bare_run(model, splits, recipe, device, epochs: int, seed: int) -> None:
    """The same work written as a plain PyTorch loop."""
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


def matmul_peak(dtype, size: int = 1024, repeats: int = 3, min_seconds: float = 0.2, device="cpu",
                clock=time.perf_counter) -> float:
    """GFLOP/s of ``size``² x ``size``² matmuls in ``dtype`` on ``device`` (best of ``repeats`` timed
    windows of ``clock``: wall time, or ``time.process_time`` for this process's CPU time)."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(device, dtype)
    b = torch.randn(size, size, generator=g).to(device, dtype)
    out = torch.empty(size, size, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    torch.mm(a, b, out=out)  # warm-up (oneDNN or cuBLAS picks its kernel)
    sync()
    best = 0.0
    for _ in range(repeats):
        calls, start = 0, clock()
        while True:
            torch.mm(a, b, out=out)
            sync()
            calls += 1
            elapsed = clock() - start
            if elapsed >= min_seconds:
                break
        best = max(best, 2 * size**3 * calls / elapsed / 1e9)
    return best

"""Training and evaluation speed of the harness's own code path, per backbone width.

Measures, on 28x28 single-channel inputs (MNIST-sized, the offline default mnist5k's real
digits), for each width:
  - training images/s: the Trainer's step (in-memory batches, SGD momentum, cross-entropy,
    backward, step) after warm-up steps;
  - evaluation images/s: odnbench.metrics.throughput (eval + inference_mode) at --eval-batch;
  - batch-1 latency p50/p90: odnbench.metrics.latency_ms.

Speed targets live here, never as wall-clock asserts in unit tests. Run:

    python benchmarks/train_throughput.py                      # resnet18, CPU, default threads
    python benchmarks/train_throughput.py --threads 1 --json   # machine-readable
    python benchmarks/train_throughput.py --device cuda --steps 50
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

WIDTHS = ["8,16,16,32", "16,32,64,128", "32,64,128,256", "full"]  # smoke, quick, x2, paper


def load_digits(n: int):
    """Real digits from the offline default dataset (pixel values do not change the speed, but
    real data keeps the loss and BN statistics realistic)."""
    from odnbench.registry import get_registry

    splits = get_registry().dataset("mnist5k").load(None, download=False, seed=0)
    return splits.train.subset(n, 0)


def train_images_per_s(net, split, batch_size, steps, warmup, device, seed=0) -> float:
    import torch
    import torch.nn.functional as F

    from odnbench.data import batches

    net.to(device).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(seed)
    split = split.to(device)

    def stream():
        while True:
            yield from batches(split, batch_size, shuffle=True, generator=generator)

    it = stream()

    def step():
        x, y = next(it)
        while len(y) < batch_size:  # a short last batch would flatter the rate
            x, y = next(it)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    windows = []
    per_window = max(1, steps // 3)
    for _ in range(3):  # median of three timed windows, as for latency
        start = time.perf_counter()
        for _ in range(per_window):
            loss = step()
        loss.item()  # waits for the device
        windows.append(per_window * batch_size / (time.perf_counter() - start))
    return statistics.median(windows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--widths", default=";".join(WIDTHS), help="';'-separated widths, e.g. '16,32,64,128;full'")
    parser.add_argument("--batch-size", type=int, default=128, help="training batch (the paper's 128)")
    parser.add_argument("--eval-batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=12, help="timed training steps (3 windows)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's default")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)

    os.environ.setdefault("ODNBENCH_LOAD_PLUGINS", "datasets,timm-resnet")
    import torch

    from odnbench import metrics
    from odnbench.envinfo import device_name
    from odnbench.harness import pick_device
    from odnbench.recipes import make_recipe
    from odnbench.registry import get_registry

    device = pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    split = load_digits(max(args.batch_size * 4, 512))
    backbone = get_registry().backbone(args.backbone)
    shape = (1, 28, 28)
    rows = []
    for width in args.widths.split(";"):
        widths = make_recipe("paper", {"width": width}).widths
        net = backbone.build(in_chans=1, num_classes=10, stem="cifar", width=widths).to(device)
        row = {
            "backbone": args.backbone, "width": width, "params": metrics.count_params(net),
            "macs": metrics.count_macs(net, shape),
            "train_img_s": round(train_images_per_s(net, split, args.batch_size, args.steps, args.warmup, device), 1),
        }
        row["eval_img_s"] = metrics.throughput(net, shape, batch_size=args.eval_batch, warmup=2, windows=3,
                                               iters=3)["images_per_s"]
        lat = metrics.latency_ms(net, shape, warmup=10, windows=5, iters=20)
        row["latency_p50_ms"], row["latency_p90_ms"] = lat["p50"], lat["p90"]
        rows.append(row)
        if not args.json:
            print(f"  measured {width} ...", file=sys.stderr, flush=True)

    meta = {"device": device.type, "device_name": device_name(device), "threads": torch.get_num_threads(),
            "input": list(shape), "train_batch": args.batch_size, "eval_batch": args.eval_batch,
            "torch": torch.__version__}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return 0
    print(f"{args.backbone} on {'x'.join(map(str, shape))}, {meta['device_name']} ({device.type}), "
          f"{meta['threads']} threads, train batch {args.batch_size}, eval batch {args.eval_batch}")
    header = f"{'width':<16} {'params':>11} {'MACs':>10} {'train img/s':>12} {'eval img/s':>11} {'b1 p50 ms':>10} {'b1 p90 ms':>10}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['width']:<16} {r['params']:>11,} {r['macs'] / 1e6:>9.1f}M {r['train_img_s']:>12,.0f} "
              f"{r['eval_img_s']:>11,.0f} {r['latency_p50_ms']:>10.2f} {r['latency_p90_ms']:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

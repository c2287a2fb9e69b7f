"""Inference speed of exported models: the quick-width ResNet-18 cut after 1, 4 and 8 blocks (what
ODN exports at those depths), stored and reloaded as a cell stores it, timed with
``odnbench.testing.check_latency`` at batch 1 (the boards' latency) and batch 64 (throughput)."""

from __future__ import annotations

import pytest
import torch
from loops import QUICK_WIDTH, build_net

from odnbench import modelio
from odnbench.metrics import count_macs, count_params
from odnbench.recipes import make_recipe
from odnbench.testing import check_latency

SHAPE = (1, 28, 28)
pytestmark = pytest.mark.benchmark(group="inference")


@pytest.fixture(scope="module")
def exported():
    """depth -> the model as a result stores it (model.safetensors bytes, reloaded without its code)."""
    torch.manual_seed(0)
    net = build_net(make_recipe("quick", {"width": QUICK_WIDTH}))
    example = torch.randn(2, *SHAPE)
    return {depth: modelio.from_bytes(modelio.to_bytes(net.truncated(depth).eval(), example))
            for depth in (1, 4, 8)}


@pytest.mark.parametrize("batch", [1, 64], ids=lambda b: f"batch{b}")
@pytest.mark.parametrize("depth", [1, 4, 8], ids=lambda d: f"depth{d}")
def test_exported_model_latency(benchmark, smoke, exported, depth, batch):
    """``ms_per_image``: the median round's time per image (the table's median / batch)."""
    model = exported[depth]
    ms = check_latency(benchmark, model, SHAPE, batch=batch, rounds=1 if smoke else 10,
                       round_seconds=0.001 if smoke else 0.02)
    benchmark.extra_info.update({"depth": depth, "params": count_params(model), "macs": count_macs(model, SHAPE)})
    assert ms > 0

"""recipe.init: how every backbone starts (issue 10). ``torch`` = the ODN authors' networks (PyTorch's
default layer init, every BatchNorm weight 1); ``timm`` = timm's own init, zero_init_last included."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import odnbench
from odnbench import OdnbenchError, plan, runtime
from odnbench.data import DatasetInfo
from odnbench.initialization import apply_init
from odnbench.recipes import PRESETS, Recipe, make_recipe

MNIST = DatasetInfo("mnist", channels=1, image_size=28, num_classes=10, mean=(0.1307,), std=(0.3081,))


def built(reg, preset="paper", init=None, seed=0):
    recipe = make_recipe(preset, {"init": init} if init else {})
    torch.manual_seed(seed)
    return runtime.backbone_builder(reg, "resnet18", MNIST, recipe)()


def fan_in(w: torch.Tensor) -> int:
    return w[0].numel()


def test_paper_preset_builds_the_authors_networks(reg):
    assert PRESETS["paper"].init == "torch"
    net = built(reg, "paper")
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 1 + 8 * 2 + 3  # stem, two per BasicBlock, three downsamples
    for bn in norms:
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    # PyTorch's default conv/linear init is kaiming_uniform(a=sqrt(5)): U(-b, b) with b = 1/sqrt(fan_in),
    # std b/sqrt(3). timm's kaiming_normal(fan_out, relu) has std sqrt(2/fan_out): 2.4x larger for a 3x3
    # 64->64 conv, and unbounded. Wide tolerance: a statistical check, not exact values.
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 1 + 16 + 3 + 1
    for m in layers:
        bound = 1 / math.sqrt(fan_in(m.weight))
        w = m.weight.detach()
        assert w.abs().max() <= bound * (1 + 1e-5), m
        if w.numel() >= 500:
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.2), m
            assert w.abs().max() >= 0.9 * bound, m  # uniform: it reaches its bound


def test_timm_policy_keeps_timms_behaviour(reg):
    net = built(reg, "paper", init="timm")
    for block in net.blocks:  # zero_init_last: every residual branch starts at zero (identity block)
        assert torch.all(block.bn2.weight == 0) and torch.all(block.bn1.weight == 1)
        w = block.conv2.weight.detach()
        fan_out = w.shape[0] * w[0, 0].numel()
        assert w.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.2)  # kaiming_normal, fan_out
    # "as built": the policy leaves a backbone exactly as its plugin made it
    torch.manual_seed(0)
    plain = reg.backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=None)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), net.state_dict().values()))


def test_the_policy_applies_at_every_width_and_to_any_module(reg):
    net = built(reg, "quick")  # narrow stages are rebuilt by timm's make_blocks + init_weights
    assert make_recipe("quick").init == "torch"
    assert all(torch.all(m.weight == 1) for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    # any third-party network: whatever defines reset_parameters gets it; norms end at weight 1, bias 0
    other = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.BatchNorm2d(8), nn.LayerNorm(8),
                          nn.Linear(8, 4))
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    assert apply_init(other, "torch") is other
    assert other[0].weight.abs().sum() > 0 and other[4].weight.abs().sum() > 0
    for norm in other[1:4]:
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)
    with pytest.raises(ValueError, match="torch, timm"):
        apply_init(other, "kaiming")


def test_init_is_part_of_the_cell_key_and_stored_config(reg):
    def cell(*sets):
        return plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke", list(sets)).cells[0]

    default = cell()
    assert default.config["recipe"]["init"] == PRESETS["smoke"].init
    assert default.config["protocol"] == odnbench.PROTOCOL_VERSION == 2
    other = "timm" if PRESETS["smoke"].init == "torch" else "torch"
    assert cell(f"recipe.init={other}").key != default.key
    assert cell(f"recipe.init={PRESETS['smoke'].init}").key == default.key
    with pytest.raises(OdnbenchError, match="torch, timm"):
        cell("recipe.init=xavier")


def test_recipe_of_a_protocol_1_config_without_init_is_timms(reg):
    config = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "paper").cells[0].config
    assert Recipe.from_dict(config["recipe"]).init == "torch"
    old = {k: v for k, v in config["recipe"].items() if k != "init"}
    assert Recipe.from_dict(old).init == "timm"  # what protocol-1 results ran with
    assert Recipe.from_dict({**config["recipe"], "init": "timm"}).init == "timm"
    assert Recipe.from_dict({"preset": "paper"}).init == "timm"  # other missing fields: the preset's
    assert Recipe.from_dict({"preset": "paper"}).width == "full"


@pytest.mark.slow
def test_one_warm_up_epoch_trains_the_deepest_head_far_better_from_the_authors_init(reg):
    """mnist5k at quick width, one joint warm-up epoch at the authors' warm-up LR (0.001): the deepest
    head is far ahead under the authors' init. Measured (heads 1..8, seeds 0, 1, 2):
    torch 11.0 18.2 12.2 19.4 19.2 31.0 43.6 45.8 / 9.4 13.2 12.8 21.0 35.8 36.2 43.6 43.2 /
          14.2 12.8 19.2 15.6 23.0 22.0 29.8 38.2;
    timm   7.6 16.4  7.0 12.6 12.8 12.2 15.4 14.8 / 10.0 8.0 18.0 9.8 9.8 12.0 11.2 9.0 /
          11.0 8.4 10.0 10.8 9.6 9.0 13.2 12.6,
    so head 8 is 26-34 points ahead; the margin asked for is 15 (this test runs seed 0). At the quick
    preset's own warm-up LR, 0.05, one epoch is too noisy to rank them (head 8: 28.0 vs 35.6 and
    61.6 vs 28.8); after its two epochs the authors' init leads there too (heads 8: 96.0, 88.2, 86.8
    against 68.0, 24.6, 34.0 on the quick ODN runs)."""
    from odnbench.progress import Progress
    from odnbench.trainer import CostMeter, Trainer
    from odnbench_plugins.odn.search import MultiExitNet, warm_up

    lr = plan.resolve_params(reg, "odn", "paper", "mnist", {})["warmup_lr"]
    assert lr == 0.001
    deepest = {}
    for init in ("torch", "timm"):
        recipe = make_recipe("quick", {"init": init, "precision": "fp32", "memory_format": "contiguous"})  # as measured
        splits = runtime.DATA_CACHE.get(reg, "mnist5k", Path("."), False, 0, recipe, torch.device("cpu"))
        runtime.seed_everything(0)
        net = MultiExitNet(runtime.backbone_builder(reg, "resnet18", splits.info, recipe)())
        trainer = Trainer(splits, recipe, torch.device("cpu"), Progress(quiet=True), CostMeter(), 0)
        deepest[init] = warm_up(net, trainer, epochs=1, lr=lr)["val_per_depth"][-1]
    assert deepest["torch"] >= deepest["timm"] + 15, deepest

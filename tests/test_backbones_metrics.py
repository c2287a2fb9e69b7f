"""Backbones and metrics against independent computations: published parameter counts, MACs
counted by hand with forward hooks, checkpoint bytes measured with torch.save on a real file."""

from __future__ import annotations

import copy
import json
import os

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from odnbench import metrics


@pytest.fixture(autouse=True)
def builtin_only(monkeypatch):
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "datasets,timm-resnet,full")  # compare needs a method


class HookMacs:
    """Multiply-accumulates of every Conv2d and Linear, from the shapes they really see during a
    forward pass: Cin/groups * Cout * kh * kw * Hout * Wout for a conv, in * out for a linear."""

    def __init__(self, model: nn.Module):
        self.total = 0
        self.handles = [m.register_forward_hook(self.conv if isinstance(m, nn.Conv2d) else self.linear)
                        for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]

    def conv(self, m, inp, out):
        self.total += (m.in_channels // m.groups) * m.out_channels * m.kernel_size[0] * m.kernel_size[1] \
            * out.shape[2] * out.shape[3]

    def linear(self, m, inp, out):
        self.total += m.in_features * m.out_features

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()


def hook_macs(model: nn.Module, input_shape) -> int:
    with HookMacs(model) as hooks, torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    return hooks.total


@pytest.mark.slow
@pytest.mark.parametrize("name, params, gmacs", [
    ("resnet18", 11_689_512, 1.81),
    ("resnet50", 25_557_032, 4.09),
])
def test_imagenet_reference_points(reg, name, params, gmacs):
    import torchvision

    # Counting needs shapes, not values: on the meta device a 224x224 ResNet-50 costs nothing to
    # build or run. (test_profile_cli_reports_the_same_numbers runs ResNet-18 for real on the CPU.)
    with torch.device("meta"):
        net = reg.backbone(name).build(in_chans=3, num_classes=1000, stem="imagenet")
        reference = getattr(torchvision.models, name)()  # torchvision's independent implementation
    assert metrics.count_params(net) == params
    assert sum(p.numel() for p in reference.parameters()) == params
    with HookMacs(net) as hooks:  # the hooks see the very forward pass count_macs makes
        macs = metrics.count_macs(net, (3, 224, 224))
    assert macs == hooks.total
    assert macs == pytest.approx(gmacs * 1e9, rel=0.01)


@pytest.mark.slow
def test_resnet18_cut_after_two_blocks(reg):
    net = reg.backbone("resnet18").build(in_chans=1, num_classes=10)  # cifar stem, full width
    assert net.depth == 8 and net.widths == [64, 64, 128, 128, 256, 256, 512, 512]
    assert metrics.count_params(net) == 11_172_810  # ../shared/odn-method.md section 8
    cut = net.truncated(2)
    assert metrics.count_params(cut) == 149_322
    full_macs, cut_macs = metrics.count_macs(net, (1, 28, 28)), metrics.count_macs(cut, (1, 28, 28))
    assert cut_macs == hook_macs(cut, (1, 28, 28))
    # Compute falls much less than size: the first blocks run at full resolution (about 74 %).
    assert 1 - cut_macs / full_macs == pytest.approx(0.74, abs=0.02)


def test_macs_of_single_layers_by_hand():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    # 17x17 input, stride 2, padding 1 -> 9x9 output.
    assert metrics.count_macs(conv, (3, 17, 17)) == 3 * 8 * 3 * 3 * 9 * 9
    assert metrics.count_flops(conv, (3, 17, 17)) == 2 * 3 * 8 * 3 * 3 * 9 * 9
    grouped = nn.Conv2d(8, 16, kernel_size=3, padding=1, groups=4, bias=False)
    assert metrics.count_macs(grouped, (8, 10, 10)) == (8 // 4) * 16 * 9 * 10 * 10
    linear = nn.Linear(20, 7)
    assert metrics.count_macs(linear, (20,)) == 20 * 7
    assert metrics.count_flops(linear, (20,)) == 2 * 20 * 7


def small_net(reg, width=(8, 16, 16, 32)):
    torch.manual_seed(0)
    return reg.backbone("resnet18").build(in_chans=1, num_classes=10, width=width)


def test_sizes_match_independent_measures(reg, tmp_path):
    net = small_net(reg)
    # Saved through a file object, as torch.save to a path names its zip records after the file
    # ("model/data/0" for model.pt) and so changes the size by a few bytes per tensor.
    path = tmp_path / "sd.pt"
    with open(path, "wb") as f:
        torch.save(net.state_dict(), f)
    assert metrics.saved_size_mb(net) == pytest.approx(os.path.getsize(path) / 1e6, abs=1e-9)
    state = net.state_dict()  # parameters and buffers (BN running stats, counters)
    expected_mib = sum(t.numel() * t.element_size() for t in state.values()) / 2**20
    assert metrics.tensor_size_mib(net) == pytest.approx(expected_mib, rel=1e-12)
    assert metrics.tensor_size_mib(net) > metrics.count_params(net) * 4 / 2**20  # buffers count too


def test_latency_and_throughput(reg):
    net = small_net(reg)
    lat = metrics.latency_ms(net, (1, 28, 28), warmup=1, windows=4, iters=2, threads=1)
    assert 0 < lat["p50"] <= lat["p90"]
    assert (lat["batch_size"], lat["threads"], lat["windows"], lat["iters_per_window"]) == (1, 1, 4, 2)
    assert net.training  # measuring puts the model back in the mode it was in
    tp = metrics.throughput(net, (1, 28, 28), batch_size=16, warmup=1, windows=3, iters=1, threads=1)
    assert tp["batch_size"] == 16 and tp["images_per_s"] > 0


def test_latency_at_a_larger_batch_runs_that_many_images_per_call_and_reports_per_image(reg):
    """batch_size N: every timed call runs the model on N images (a forward hook sees each batch), and
    the result gives ms per image = ms per call / N; batch 1 keeps exactly the keys it always had."""
    net = small_net(reg)
    seen: list[int] = []
    handle = net.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[0]))
    try:
        lat = metrics.latency_ms(net, (1, 28, 28), warmup=1, windows=3, iters=2, threads=1, batch_size=8)
        assert seen == [8] * (1 + 3 * 2)  # warm-up + windows x iterations, each on 8 images
        assert lat["batch_size"] == 8 and 0 < lat["p50"] <= lat["p90"]
        assert lat["ms_per_image_p50"] == pytest.approx(lat["p50"] / 8, abs=1e-4)
        assert lat["ms_per_image_p90"] == pytest.approx(lat["p90"] / 8, abs=1e-4)
        seen.clear()
        one = metrics.latency_ms(net, (1, 28, 28), warmup=1, windows=3, iters=2, threads=1)
        assert seen == [1] * 7 and one["batch_size"] == 1
        assert not {"ms_per_image_p50", "ms_per_image_p90"} & set(one)  # stored records keep their bytes
        assert set(lat) - set(one) == {"ms_per_image_p50", "ms_per_image_p90"}
        # on images: N of them per call, taken in turn
        seen.clear()
        images = torch.randn(20, 1, 28, 28)
        on_images = metrics.latency_ms(net, (1, 28, 28), warmup=0, windows=2, iters=2, threads=1, batch_size=8,
                                       images=images)
        assert seen == [8] * 4 and on_images["input"] == "images"
    finally:
        handle.remove()
    with pytest.raises(ValueError, match="batch_size 0 is not allowed"):
        metrics.latency_ms(net, (1, 28, 28), batch_size=0)


def test_narrow_width_builds_a_consistent_net(reg):
    net = small_net(reg, (16, 32, 64, 128))
    assert net.stem[0].out_channels == 16
    assert net.widths == [16, 16, 32, 32, 64, 64, 128, 128]
    assert net.blocks[0].downsample is None  # 16 -> 16: the first block needs no projection
    assert net.blocks[2].downsample is not None  # 16 -> 32, stride 2
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert [f.shape[1] for f in net.block_outputs(torch.randn(2, 1, 28, 28))] == net.widths
    # Bottlenecks expand 4x: the same stage widths give 64..512 channels out.
    wide = reg.backbone("resnet50").build(in_chans=3, num_classes=5, width=(16, 32, 64, 128))
    assert wide.stem[0].out_channels == 16 and wide.widths[0] == 64 and wide.widths[-1] == 512
    assert wide(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_truncated_is_the_forward_prefix(reg, k):
    net = small_net(reg).eval()
    x = torch.randn(4, 1, 28, 28)
    head = nn.Linear(net.widths[k - 1], 10)
    cut = net.truncated(k, head).eval()
    assert cut.depth == k and len(list(cut.blocks)) == k and cut.widths == net.widths[:k]
    with torch.no_grad():
        assert torch.allclose(cut(x), head(net.features(x, k)), atol=1e-6)
        assert torch.allclose(cut.features(x), net.block_outputs(x)[k - 1], atol=1e-6)
    # No dead blocks: every parameter of the cut model takes part in its forward pass.
    cut.train()
    cut(torch.randn(2, 1, 28, 28)).sum().backward()
    dead = [n for n, p in cut.named_parameters() if p.grad is None]
    assert not dead
    # A standalone copy: training it leaves the original untouched.
    before = copy.deepcopy(net.state_dict())
    with torch.no_grad():
        for p in cut.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[n], t) for n, t in net.state_dict().items())


def test_truncated_rejects_bad_depth_and_head(reg):
    net = small_net(reg)
    for bad in (0, 9):
        with pytest.raises(ValueError, match="depth must be between 1 and 8"):
            net.truncated(bad)
    with pytest.raises(ValueError, match="head takes"):
        net.truncated(2, nn.Linear(99, 10))


@pytest.mark.slow
def test_profile_cli_reports_the_same_numbers():
    from odnbench.cli import cli

    runner = CliRunner()
    out = runner.invoke(cli, ["profile", "-b", "resnet18", "--stem", "imagenet", "--input-size", "224",
                              "--in-chans", "3", "--num-classes", "1000", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert data["params"] == 11_689_512 and data["depth"] == 8
    assert data["macs"] == pytest.approx(1.81e9, rel=0.01) and data["flops"] == 2 * data["macs"]
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p90"] and data["latency_ms"]["threads"] == 1

    out = runner.invoke(cli, ["profile", "-b", "resnet18", "-k", "2", "--json"])
    data = json.loads(out.stdout)
    assert data["params"] == 149_322 and data["depth"] == 2 and data["input_shape"] == [1, 28, 28]
    import timm

    reference = timm.create_model("resnet18", num_classes=10, in_chans=1)  # size of an independent build
    assert 0 < data["size_mb"] < metrics.saved_size_mb(reference)

    out = runner.invoke(cli, ["profile", "-b", "resnet18", "-k", "9"])
    assert out.exit_code == 2 and "blocks 1..8" in out.stderr


@pytest.mark.parametrize("args", [
    ["compare", "--method", "full", "--preset", "smoke", "--set", "recipe.width=8,16,16"],
    ["profile", "--backbone", "resnet18", "--width", "8,16,16"],
])
def test_widths_a_backbone_cannot_take_fail_at_plan_time(args, tmp_path):
    from odnbench.cli import cli

    out = CliRunner().invoke(cli, [*args, *(["--results", str(tmp_path)] if args[0] == "compare" else [])])
    assert out.exit_code == 2
    assert out.stderr.startswith("Error: backbone 'resnet18' cannot be built at ")
    assert out.stderr.strip().endswith("resnet18 takes 4 stage widths (e.g. 16,32,64,128) or full, got 3")
    assert len(out.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())  # nothing ran


def test_stage_widths_are_what_build_takes(reg):
    """ctx.stage_widths hands back the widths build(width=) takes, for Bottleneck ResNets too
    (whose stages put out 4x their channels)."""
    from odnbench.contract import MethodContext
    from odnbench.data import DatasetInfo
    from odnbench.recipes import make_recipe
    from odnbench.runtime import backbone_builder

    info = DatasetInfo("x", channels=1, image_size=28, num_classes=10, mean=(0.0,), std=(1.0,), split_rule="-")
    for preset, expected in (("paper", (64, 128, 256, 512)), ("smoke", (8, 16, 16, 32))):
        recipe = make_recipe(preset)
        build = backbone_builder(reg, "resnet50", info, recipe)
        ctx = MethodContext(method="m", params={}, splits=None, build_backbone=build, recipe=recipe, seed=0,
                            device=torch.device("cpu"), progress=None, trainer=None, cost=None, workdir=None)
        assert ctx.stage_widths == expected
        half = build(width=tuple(w // 2 for w in ctx.stage_widths))
        assert half.stage_widths == [4 * w // 2 for w in expected]  # a Bottleneck puts out 4x its channels

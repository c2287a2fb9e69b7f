"""Early exits (issue 31): a multi-exit network measured as an anytime classifier, each image leaving at
the first exit whose softmax confidence reaches τ; the ``early-exit`` method (heads trained jointly, or
ODN's warm-up heads) whose τ sweep is a curve of measured points."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from odnbench import OdnbenchError
from odnbench.data import DatasetInfo, Split, Splits
from odnbench.depthnet import EarlyExitNet, first_exits
from odnbench.metrics import count_macs, exit_flops, measure, measure_point
from odnbench.recipes import make_recipe
from odnbench.registry import load_registry
from odnbench_plugins.early_exit import DEFAULT_THRESHOLDS, choose, parse_thresholds

pytest_plugins = ["odnbench.testing"]

SHAPE = (1, 28, 28)
WIDTH = (8, 8, 16, 16)


@pytest.fixture
def reg():
    return load_registry()


def splits(n=96, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    # images at scales from e^-2 to e^2, so that a random network is sure of some and unsure of others
    x = torch.randn(n, *SHAPE, generator=g) * torch.empty(n, 1, 1, 1).uniform_(-2, 2, generator=g).exp()
    y = torch.randint(0, classes, (n,), generator=g)
    info = DatasetInfo("tiny", 1, 28, classes, (0.0,), (1.0,))
    return Splits(info, Split(x[:32], y[:32]), Split(x[32:64], y[32:64]), Split(x[64:], y[64:]))


def early_exit_net(reg, sharpen=6.0) -> EarlyExitNet:
    """A resnet18 at a narrow width with an exit after each of its 8 blocks; the exits' weights scaled up
    so that confidences spread over (0, 1) and a τ sweep sends images out at different exits."""
    torch.manual_seed(0)
    backbone = reg.backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=WIDTH)
    exits = [nn.Linear(w, 10) for w in backbone.widths]
    with torch.no_grad():
        for head in exits:
            head.weight.mul_(sharpen)
    return EarlyExitNet.from_depthnet(backbone, exits).eval()


def test_each_image_leaves_at_the_first_confident_exit_with_that_exits_logits(reg):
    net = early_exit_net(reg)
    x = splits().test.x
    with torch.no_grad():
        every = net.exit_logits(x)
        confidence = torch.stack([torch.softmax(out, 1).amax(1) for out in every], 1)
        for tau in (0.0, 0.5, 0.9, 1.5):
            logits, where = net.with_threshold(tau).run_exits(x)
            for i in range(len(x)):  # the rule, image by image
                hits = [k for k in range(net.depth - 1) if confidence[i, k] >= tau]
                assert where[i] == (hits[0] if hits else net.depth - 1)
                torch.testing.assert_close(logits[i], every[int(where[i])][i])
            assert torch.equal(where, first_exits(every, tau))  # the sweep's rule is the forward's


def test_tau_zero_exits_every_image_at_the_first_head_and_above_one_at_the_last(reg):
    net = early_exit_net(reg)
    data, recipe = splits(), make_recipe("smoke")
    first = measure_point(net.with_threshold(0.0), data, recipe)
    last = measure_point(net.with_threshold(1.5), data, recipe)
    n = net.depth
    assert first["exits"]["shares"] == [1.0] + [0.0] * (n - 1) == first["exits"]["val_shares"]
    assert last["exits"]["shares"] == [0.0] * (n - 1) + [1.0] == last["exits"]["val_shares"]
    # Counted independently: the flop counter on the network cut at that exit (its head that exit)
    # plus, for the last exit, every earlier head it evaluated on the way ...
    heads = [count_macs(head, (w,)) for head, w in zip(net.exits, net.widths)]
    assert first["macs"] == count_macs(net.cut(1), SHAPE)
    assert last["macs"] == count_macs(net.cut(n), SHAPE) + sum(heads[:-1])
    # ... and the flop counter on the early-exit forward itself, which takes that path for any input.
    assert first["macs"] == count_macs(net.with_threshold(0.0), SHAPE)
    assert last["macs"] == count_macs(net.with_threshold(1.5), SHAPE)
    assert first["exits"]["mean_macs"] == first["macs"] and last["exits"]["val_mean_macs"] == last["macs"]
    # top-1 is that head's: the cut network's
    assert first["top1"] == measure_point(net.cut(1), data, recipe)["top1"]
    assert last["top1"] == measure_point(net.cut(n), data, recipe)["top1"]
    # the whole network is what is stored, whatever the threshold
    assert first["params"] == last["params"] == sum(p.numel() for p in net.parameters())


def test_a_sweep_spends_more_as_tau_rises_and_its_shares_sum_to_one(reg):
    net = early_exit_net(reg)
    data, recipe = splits(), make_recipe("smoke")
    per_exit = [f // 2 for f in exit_flops(net, SHAPE)]
    assert per_exit == sorted(per_exit) and len(set(per_exit)) == net.depth
    points = [measure_point(net.with_threshold(t), data, recipe) for t in (0.0, 0.3, 0.5, 0.7, 0.9, 0.99, 1.5)]
    mixed = 0
    for p in points:
        e = p["exits"]
        assert e["macs"] == per_exit
        assert sum(e["shares"]) == pytest.approx(1.0, abs=1e-5) and sum(e["val_shares"]) == pytest.approx(1.0, abs=1e-5)
        assert e["mean_macs"] == pytest.approx(sum(s * m for s, m in zip(e["shares"], per_exit)), rel=1e-4)
        assert abs(p["macs"] - e["mean_macs"]) <= 1  # an integer, the mean to the nearest FLOP, halved
        assert p["latency_ms"]["p50"] > 0 and p["latency_ms"]["input"] == "images"
        mixed += sum(s > 0 for s in e["shares"]) > 1
    assert mixed >= 4, "the sweep never split the images between exits: the test would check nothing"
    means = [p["exits"]["mean_macs"] for p in points]
    assert means == sorted(means)  # an image confident at a higher τ is confident at a lower one


def test_an_early_exit_network_is_stored_and_measured_as_its_mean(reg, tmp_path):
    from odnbench.result import _curve_problems  # the checker verify runs on curve points
    from odnbench.store import load_model, save_model

    net = early_exit_net(reg).with_threshold(0.6)
    x = splits().test.x[:8]
    save_model(net, tmp_path / "m.safetensors", example=x)
    back = load_model(tmp_path / "m.safetensors").eval()
    assert isinstance(back, EarlyExitNet) and back.threshold == 0.6
    with torch.no_grad():
        assert torch.equal(back(x), net(x))
    m = measure(back, splits(), make_recipe("smoke"))
    assert m["macs"] == m["flops"] // 2 and abs(m["macs"] - m["exits"]["mean_macs"]) <= 1
    assert m["latency_ms"]["input"] == "images"
    point = measure_point(back, splits(), make_recipe("smoke"))
    assert _curve_problems([point]) == []
    assert any("exits.threshold" in p for p in _curve_problems([{**point, "exits": {**point["exits"], "threshold": -1}}]))


def test_thresholds_are_checked_with_one_line_each():
    assert parse_thresholds("0.9, 0,1.01") == [0.0, 0.9, 1.01]
    assert parse_thresholds(DEFAULT_THRESHOLDS)[0] == 0 and parse_thresholds(DEFAULT_THRESHOLDS)[-1] > 1
    for text, needle in [("", "names no threshold"), ("0.5,high", "'high' is not a number"),
                         ("-0.1", "'-0.1' is not a finite number >= 0"), ("nan", "'nan' is not a finite"),
                         ("inf", "'inf' is not a finite"), ("0.5,0.9,0.5", "names 0.5 more than once"),
                         (",".join(str(i / 100) for i in range(60)), "at most 50")]:
        with pytest.raises(OdnbenchError) as err:
            parse_thresholds(text)
        assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


@pytest.mark.parametrize("sets, needle", [
    (["early-exit.thresholds=0.5,abc"], "'abc' is not a number"),
    (["early-exit.thresholds=-1"], "'-1' is not a finite number >= 0"),
    (["early-exit.source=odn", "early-exit.loss_weights=linear"], "applies to source=joint"),
    (["early-exit.source=hydra"], "choose one of: joint, odn"),
    (["early-exit.tolerance=-1"], "allowed: 0 <= early-exit.tolerance <= 100"),
])
def test_bad_parameters_fail_at_plan_time_with_one_line(reg, sets, needle):
    from odnbench.plan import plan_grid

    with pytest.raises(OdnbenchError) as err:
        plan_grid(reg, ["early-exit"], ["mnist5k"], ["resnet18"], [0], "smoke", sets)
    assert needle in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_cli_lists_the_method_and_refuses_bad_thresholds_before_running(tmp_path):
    from _errors import says
    from click.testing import CliRunner

    from odnbench import cli

    out = CliRunner().invoke(cli.cli, ["list", "methods"])
    assert out.exit_code == 0 and "early-exit" in out.output
    out = CliRunner().invoke(cli.cli, ["compare", "--method", "early-exit", "--dataset", "mnist5k", "--backbone", "resnet18",
                                       "--preset", "smoke",
                                       "--results", str(tmp_path / "r"), "--set", "early-exit.thresholds=0.9,2,x"])
    assert out.exit_code == 2 and says(out.output.strip().splitlines()[-1], "early-exit.thresholds", "'x'")
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").rglob("result.json"))


def test_the_exported_threshold_is_the_cheapest_near_the_best_on_validation():
    sweep = [{"threshold": 0.0, "val_top1": 90.0, "val_mean_macs": 10.0},
             {"threshold": 0.8, "val_top1": 97.6, "val_mean_macs": 30.0},
             {"threshold": 0.9, "val_top1": 98.0, "val_mean_macs": 40.0},
             {"threshold": 1.01, "val_top1": 97.9, "val_mean_macs": 80.0}]
    assert choose(sweep, 0.5)["threshold"] == 0.8
    assert choose(sweep, 0.0)["threshold"] == 0.9
    assert choose(sweep, 10.0)["threshold"] == 0.0


def _tau_points(result):
    points = [p for p in result.curve if p["depth"] is None]
    return sorted(points, key=lambda p: p["exits"]["threshold"])


@pytest.mark.slow
def test_the_method_runs_through_the_harness_and_its_curve_is_consistent(check_method):
    check = check_method("early-exit", preset="smoke", sets=["early-exit.thresholds=0,0.2,0.5,0.9,1.01"])
    r = check.result
    assert r.ok and r.facts.depth == 8 and isinstance(check.model, EarlyExitNet)
    taus = _tau_points(r)
    static = {p["depth"]: p for p in r.curve if p["depth"] is not None}
    assert [p["exits"]["threshold"] for p in taus] == [0, 0.2, 0.5, 0.9, 1.01] and sorted(static) == list(range(1, 9))
    for p in taus:
        assert sum(p["exits"]["shares"]) == pytest.approx(1.0, abs=1e-5)
        assert p["size_mb"] == r.metrics["size_mb"] and p["latency_ms"]["p50"] > 0  # the whole network each time
    macs = [p["macs"] for p in taus]
    assert macs == sorted(macs)
    # τ = 0 is the static exit 1 (measured by the harness as an ordinary cut network); τ > 1 the last exit plus
    # every head before it (a linear head: width x classes MACs)
    assert taus[0]["macs"] == static[1]["macs"] and taus[0]["top1"] == static[1]["top1"]
    heads = sum(w * 10 for w in check.model.widths[:-1])
    assert taus[-1]["macs"] == static[8]["macs"] + heads and taus[-1]["top1"] == static[8]["top1"]
    # the exported model is the validation-chosen τ, measured as that point was
    chosen = [p for p in taus if p["info"]["chosen"]]
    assert len(chosen) == 1 and chosen[0]["exits"]["threshold"] == r.method_info["threshold"] == check.model.threshold
    assert r.metrics["macs"] == chosen[0]["macs"] and r.metrics["top1"] == chosen[0]["top1"]
    assert [s["threshold"] for s in r.method_info["sweep"]] == [0, 0.2, 0.5, 0.9, 1.01]


@pytest.mark.slow
def test_odn_warm_up_heads_are_read_from_the_odn_cell(check_method):
    check = check_method("early-exit", preset="smoke", sets=["early-exit.source=odn", "early-exit.static=false",
                                                              "early-exit.thresholds=0,0.9,1.01"])
    odn = next(r for r in check.results if r.method == "odn")
    assert "warmup-exits" in odn.artifacts and check.result.requires == {"odn": odn.key}
    assert check.info["source"] == "odn" and check.info["odn_key"] == odn.key
    assert check.info["warmup_epochs"] == odn.method_info["warmup"]["epochs"] == 1
    assert all(p["depth"] is None for p in check.result.curve)  # static=false: the τ points only
    # ODN's warm-up accuracies per head are what the early-exit network's exits give on validation
    assert check.info["val_top1_per_exit"] == pytest.approx(odn.method_info["warmup"]["val_per_depth"], abs=1e-3)

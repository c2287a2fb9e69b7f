"""The depth baselines a reviewer of ODN asks for (issue 31): AutoGrow (``autogrow``) and the full model
trained with stochastic depth (``full.survival``), which ``truncate`` and ``blockdrop`` can start from.

AutoGrow's decisions are a pure state machine, tested on scripted validation curves as ODN's are; its
new-block initialisations and stochastic depth's block skip on real timm blocks; each method once
through the real harness (``odnbench.testing.check_method``, smoke preset)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from odnbench import OdnbenchError
from odnbench.progress import Progress
from odnbench.recipes import make_recipe
from odnbench.trainer import CostMeter, Trainer
from odnbench_plugins.autogrow import (
    PUBLISHED,
    AutoGrow,
    GrowthSchedule,
    assemble,
    carry_optimizer,
    init_new_block,
    last_branch_norm,
)
from odnbench_plugins.stochastic_depth import StochasticDepth, linear_survival

pytest_plugins = ["odnbench.testing"]

TINY = (8, 16, 16, 32)  # stage widths: real ResNet-18 blocks, small enough for milliseconds


def feed(sched: GrowthSchedule, values):
    return [sched.observe(v) for v in values]


# ---------------------------------------------------------------------------------------------
# Growth and stop on scripted curves


def test_all_stages_grow_every_interval_until_a_growth_gains_less_than_tau():
    sched = GrowthSchedule([1, 1, 1, 1], [4, 4, 4, 4], interval=2, threshold=0.5)
    steps = feed(sched, [80.0, 85.0])  # no growth to judge yet: grow
    assert steps[0].grow == [] and steps[1].grow == [0, 1, 2, 3] and sched.blocks == [2, 2, 2, 2]
    steps = feed(sched, [88.0, 90.0])  # best 90 vs 85 before the growth: +5 >= 0.5, grow again
    assert steps[1].gain == 5.0 and steps[1].grow == [0, 1, 2, 3] and sched.blocks == [3, 3, 3, 3]
    steps = feed(sched, [90.2, 90.1])  # +0.2 < 0.5: every stage it grew stops, and growth is over
    assert steps[1].gain == pytest.approx(0.2) and steps[1].stopped == [0, 1, 2, 3] and steps[1].grow == []
    assert sched.done == steps[1].done == "saturated" and sched.epoch == 6 and sched.blocks == [3, 3, 3, 3]
    assert [s["blocks"] for s in sched.steps] == [[2, 2, 2, 2], [3, 3, 3, 3]]
    assert sched.reached_target is None  # no target in this mode
    with pytest.raises(RuntimeError):
        sched.observe(91.0)


def test_the_gain_is_the_best_reading_since_the_growth_over_the_best_before():
    sched = GrowthSchedule([1, 1], [5, 5], interval=3, threshold=1.0)
    feed(sched, [70.0, 75.0, 72.0])  # grows; best before = 75
    steps = feed(sched, [76.5, 70.0, 71.0])  # a peak of 76.5 counts, not the last reading: +1.5
    assert steps[-1].gain == pytest.approx(1.5) and steps[-1].grow == [0, 1]


def test_round_robin_stops_only_the_stage_whose_growth_did_not_pay():
    sched = GrowthSchedule([1, 1, 1], [5, 5, 5], interval=1, threshold=1.0, growth="stage")
    assert feed(sched, [50.0])[0].grow == [0]
    step = feed(sched, [50.5])[0]  # stage 1's growth gained 0.5: stage 1 stops, stage 2 grows
    assert step.stopped == [0] and step.grow == [1]
    step = feed(sched, [60.0])[0]  # stage 2's growth paid: stage 3 grows next (stage 1 is out)
    assert step.stopped == [] and step.grow == [2]
    step = feed(sched, [65.0])[0]
    assert step.grow == [1]  # round robin over the stages still growing
    assert sched.blocks == [2, 3, 2] and sched.growing == [1, 2]


def test_target_rule_grows_whatever_the_gain_and_stops_in_the_epoch_it_is_reached():
    sched = GrowthSchedule([1, 1], [4, 4], interval=2, threshold=0.5, stop="target", target=95.0, digits=1)
    steps = feed(sched, [90.0, 90.0, 90.0, 90.0])  # no gain at all: saturation would stop, the target rule grows
    assert sched.blocks == [3, 3] and not any(s.stopped for s in steps) and sched.done is None
    step = sched.observe(94.96)  # rounds to 95.0: reached, mid-interval
    assert step.done == sched.done == "target" and sched.reached_target is True and sched.epoch == 5


def test_target_never_reached_ends_at_the_caps_or_the_epoch_cap():
    sched = GrowthSchedule([1, 1], [2, 2], interval=1, stop="target", target=99.0)
    feed(sched, [50.0])
    step = sched.observe(60.0)
    assert step.done == "max_blocks" and sched.reached_target is False and sched.blocks == [2, 2]
    capped = GrowthSchedule([1], [9], interval=5, max_epochs=3)
    assert [s.done for s in feed(capped, [10.0, 20.0, 30.0])] == [None, None, "max_epochs"]


def test_schedule_refuses_inconsistent_settings():
    with pytest.raises(ValueError):
        GrowthSchedule([1], [1], interval=1, stop="target")  # no target
    with pytest.raises(ValueError):
        GrowthSchedule([3], [2], interval=1)  # starts above its cap
    with pytest.raises(ValueError):
        GrowthSchedule([1], [2], interval=1, growth="random")


# ---------------------------------------------------------------------------------------------
# New blocks: each init's property, on real ResNet-18 blocks


def build(reg, width=TINY):
    return reg.backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=width)


def grown_pair(reg, stage: int, mode: str, **kw):
    """(network before, network after) adding the backbone's second block of ``stage`` with ``mode``."""
    torch.manual_seed(0)
    net = build(reg)
    own = [[net.blocks[2 * s], net.blocks[2 * s + 1]] for s in range(4)]  # ResNet-18: 2 blocks per stage
    stages = [[blocks[0]] for blocks in own]
    widths = net.stage_widths

    def network():
        return assemble(net.stem, stages, widths, net.head, net.pool, {}, 10).eval()

    before = network()
    did = init_new_block(own[stage][1], mode, stages[stage][-1], **kw)
    stages[stage].append(own[stage][1])
    return before, network(), own[stage][1], did


@pytest.mark.parametrize("stage", [0, 2])
def test_zero_init_starts_the_new_block_as_an_identity(reg, stage):
    before, after, block, _ = grown_pair(reg, stage, "zero")
    norm = last_branch_norm(block)
    assert norm is block.bn2 and not norm.weight.any() and not norm.bias.any()
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        assert after.depth == before.depth + 1
        assert torch.allclose(after(x), before(x), atol=1e-6)  # the grown network computes what it did


def test_gauss_init_draws_the_last_norm_from_the_generator_and_keeps_shapes(reg):
    _, after, block, _ = grown_pair(reg, 1, "gauss", std=0.5, generator=torch.Generator().manual_seed(3))
    _, _, again, _ = grown_pair(reg, 1, "gauss", std=0.5, generator=torch.Generator().manual_seed(3))
    w = block.bn2.weight.detach()
    assert torch.equal(w, again.bn2.weight) and torch.equal(block.bn2.bias, again.bn2.bias)  # repeatable
    assert 0.2 < float(w.std()) < 1.0 and not torch.equal(w, torch.ones_like(w))
    with torch.no_grad():
        assert tuple(after(torch.randn(2, 1, 28, 28)).shape) == (2, 10)


def test_copy_init_copies_the_previous_block_where_shapes_match(reg):
    # Stage 1's first block keeps its shape (stem and stage 1 are as wide): every tensor is copied.
    before, after, block, did = grown_pair(reg, 0, "copy")
    previous = before.blocks[0]
    assert did["copied_tensors"] == did["of"]
    assert all(torch.equal(v, previous.state_dict()[k]) for k, v in block.state_dict().items())
    x = torch.randn(2, 8, 28, 28)
    with torch.no_grad():
        previous.eval(), block.eval()
        assert torch.equal(block(x), previous(x))  # the same function, applied once more
    # Stage 2's first block widens (8 -> 16) and strides: its first conv cannot be copied, the rest is.
    before, after, block, did = grown_pair(reg, 1, "copy")
    assert 0 < did["copied_tensors"] < did["of"]
    assert block.conv1.weight.shape != before.blocks[1].conv1.weight.shape  # 16 -> 16 here, 8 -> 16 there
    assert torch.equal(block.conv2.weight, before.blocks[1].conv2.weight)
    with torch.no_grad():
        assert tuple(after(torch.randn(2, 1, 28, 28)).shape) == (2, 10)


def test_optimizer_state_is_carried_for_every_parameter_that_was_there(reg):
    before, after, block, _ = grown_pair(reg, 1, "zero")
    trainer = Trainer(None, make_recipe("smoke"), torch.device("cpu"), Progress(quiet=True), CostMeter(), 0)
    opt = trainer.make_optimizer(before.parameters(), 0.1)
    before.train()
    torch.nn.functional.cross_entropy(before(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    opt.step()
    new, kept = carry_optimizer(trainer, opt, after, 0.1)
    old = list(before.parameters())
    assert kept == len(old) and all(new.state[p] is opt.state[p] for p in old)
    assert all(p not in new.state for p in block.parameters())  # the new block starts without momentum


# ---------------------------------------------------------------------------------------------
# Parameters, presets, published numbers


@pytest.mark.parametrize("sets, needle", [
    (["autogrow.stop=target", "autogrow.target_mode=fixed"], "autogrow.target_mode=fixed needs autogrow.target"),
    (["autogrow.init=net2net"], "choose one of: zero, gauss, copy"),
    (["autogrow.interval=0"], "allowed: autogrow.interval >= 1"),
    (["autogrow.threshold=-1"], "allowed: autogrow.threshold >= 0"),
    (["full.survival=0"], "allowed: 0 < full.survival <= 1"),
    (["truncate.full_survival=1.5", "truncate.depth=2"], "full_survival"),
])
def test_bad_parameters_fail_at_plan_time_with_one_line(reg, sets, needle):
    from odnbench.plan import plan_grid

    method = sets[0].split(".")[0]
    with pytest.raises(OdnbenchError) as err:
        plan_grid(reg, [method], ["mnist5k"], ["resnet18"], [0], "smoke", sets)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_every_numeric_parameter_declares_its_range(reg):
    for name, params in (("autogrow", AutoGrow.params), ("full", reg.method("full").params),
                         ("truncate", reg.method("truncate").params), ("blockdrop", reg.method("blockdrop").params)):
        assert [p.name for p in params if p.type in (int, float) and not p.range_text()] == [], name


def test_target_mode_takes_odns_presets_and_needs_full_only_when_relative(reg):
    from odnbench.plan import plan_grid, resolve_params

    paper = resolve_params(reg, "autogrow", "paper", "mnist", {"stop": "target"})
    assert paper["target"] == 99.5 and paper["tolerance"] == 0.5  # ODN's paper target for mnist
    assert resolve_params(reg, "autogrow", "quick", "mnist5k", {})["relative_tolerance"] == 0.75
    own = plan_grid(reg, ["autogrow"], ["mnist5k"], ["resnet18"], [0], "smoke", [])
    assert [c.config["method"] for c in own.cells] == ["autogrow"]  # saturation needs nothing
    relative = plan_grid(reg, ["autogrow"], ["mnist5k"], ["resnet18"], [0], "smoke", ["autogrow.stop=target"])
    assert [c.config["method"] for c in relative.cells] == ["full", "autogrow"]


def test_published_numbers_are_the_papers_and_compared_on_paper_boards():
    from odnbench.result import normalise_reference

    m = AutoGrow()
    assert PUBLISHED == {"mnist": 99.66, "fashion-mnist": 94.62, "svhn": 97.32, "cifar10": 95.49}
    ref = normalise_reference(m.reference_results("cifar10", "resnet50"))
    assert ref["top1"] == 95.49 and ref["preset"] == "paper" and "1906.02909" in ref["source"]
    assert m.reference_results("mnist5k", "resnet18") is None


def test_default_parameters_keep_the_stored_cell_keys(reg):
    """survival / full_survival at their defaults are left out of the config, so every committed cell keeps its
    key; set, they make cells of their own, and truncate's full dependency is the stochastic-depth one."""
    from odnbench.plan import plan_grid

    plain = plan_grid(reg, ["truncate"], ["mnist5k"], ["resnet18"], [0], "smoke", ["truncate.depth=2"])
    full, trunc = plain.cells
    assert "survival" not in full.config["params"] and "full_survival" not in trunc.config["params"]
    sd = plan_grid(reg, ["truncate"], ["mnist5k"], ["resnet18"], [0], "smoke",
                   ["truncate.depth=2", "truncate.full_survival=0.5"])
    sd_full, sd_trunc = sd.cells
    assert sd_full.config["params"]["survival"] == 0.5 and sd_full.key != full.key
    assert sd_trunc.requires["full"] == sd_full.key and sd_trunc.key != trunc.key


def test_list_methods_shows_autogrow():
    out = subprocess.run([sys.executable, "-c", "import sys; from odnbench.cli import main; sys.exit(main())",
                          "list", "methods"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("autogrow ") and "AutoGrow" in line for line in out.stdout.splitlines())


# ---------------------------------------------------------------------------------------------
# Stochastic depth: a dropped block is not run, and its compute is not counted


def test_survival_decays_linearly_to_the_last_block():
    assert linear_survival(8, 0.5) == pytest.approx([1 - block / 8 * 0.5 for block in range(1, 9)])
    assert linear_survival(4, 1.0) == [1.0] * 4


def test_a_dropped_block_is_not_run_and_its_macs_are_tallied(reg):
    torch.manual_seed(0)
    net = build(reg).train()
    drops = StochasticDepth.for_model(net, 0.3, (1, 28, 28), seed=0)
    assert drops.droppable == [True, True, False, True, False, True, False, True]  # stride/width changes stay
    assert all(p == 1.0 for p, d in zip(drops.survival, drops.droppable) if not d)
    calls = [0] * net.depth
    for i, block in enumerate(net.blocks):
        block.register_forward_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    x, y = torch.randn(5, 1, 28, 28), torch.randint(0, 10, (5,))
    for _ in range(40):
        drops.loss(net, x, y).backward()
    assert drops.batches == 40 and sum(calls) == drops.blocks_run == 40 * 8 - drops.blocks_skipped
    assert all(c == 40 for c, d in zip(calls, drops.droppable) if not d)  # never dropped
    assert calls[-1] < 30  # survival 0.3 at the last block: run about 12 times in 40
    skipped = [40 - c for c in calls]
    assert drops.unspent_macs == sum(s * m * 5 for s, m in zip(skipped, drops.block_macs))
    # the same seed draws the same blocks
    a, b = (StochasticDepth.for_model(net, 0.3, (1, 28, 28), seed=7) for _ in range(2))
    assert [a.draw() for _ in range(10)] == [b.draw() for _ in range(10)]


def test_block_macs_add_up_to_the_networks(reg):
    from odnbench.metrics import count_macs

    net = build(reg)
    drops = StochasticDepth.for_model(net, 0.5, (1, 28, 28), seed=0)
    stem = count_macs(net.stem, (1, 28, 28))
    head = net.head.in_features * net.head.out_features
    assert stem + sum(drops.block_macs) + head == count_macs(net, (1, 28, 28))


# ---------------------------------------------------------------------------------------------
# Through the real harness


@pytest.mark.slow
def test_stochastic_depth_full_counts_less_compute_and_truncate_starts_from_it(check_method):
    full = check_method("full")
    check = check_method("truncate", sets=["truncate.depth=2", "truncate.full_survival=0.5"])
    sd = next(r for r in check.results if r.method == "full")
    assert sd.config["params"] == {"survival": 0.5} and check.result.requires["full"] == sd.key
    record = sd.method_info["stochastic_depth"]
    assert record["blocks_skipped"] > 0 and record["droppable"] == [1, 2, 4, 6, 8]
    # the same epochs and images as the plain full model, less compute: exactly what the dropped blocks did not spend
    assert sd.cost["own"]["epochs"] == full.result.cost["own"]["epochs"]
    assert sd.cost["own"]["sample_steps"] == full.result.cost["own"]["sample_steps"]
    assert sd.cost["own"]["train_macs"] == full.result.cost["own"]["train_macs"] - record["train_macs_not_spent"]
    assert sd.cost["own"]["train_macs"] < full.result.cost["own"]["train_macs"]
    assert check.info["full_survival"] == 0.5 and check.result.facts.depth == 2
    assert sd.key in check.result.cost["dependencies"]  # the stochastic-depth training is in truncate's cost


@pytest.mark.slow
def test_blockdrop_starts_from_the_stochastic_depth_full(check_method):
    check = check_method("blockdrop", sets=["blockdrop.keep=5", "blockdrop.full_survival=0.5"])
    sd = next(r for r in check.results if r.method == "full")
    assert sd.config["params"] == {"survival": 0.5} and check.info["full_survival"] == 0.5
    assert check.result.facts.depth == 5


@pytest.mark.slow
def test_autogrow_end_to_end(check_method):
    check = check_method("autogrow")
    info = check.info
    # smoke: one epoch per interval; ResNet-18's stages hold 2 blocks each, so one growth step fills them
    assert info["blocks_per_stage"] == [2, 2, 2, 2] and info["growth_stopped"] == "max_blocks"
    assert info["growth_steps"][0]["blocks"] == [2, 2, 2, 2] and info["optimizer_state_carried"][0] > 0
    assert check.result.facts.depth == 8 and check.model.depth == 8
    # every epoch of the growth and of the final training is in the cost, each at the network it trained
    own = check.result.cost["own"]
    assert own["epochs"] == info["growth_epochs"] + info["final"]["epochs"]
    parts = check.result.cost["parts"]
    assert parts["growth"]["epochs"] == info["growth_epochs"] and parts["final training"]["epochs"] == 1
    assert [p["depth"] for p in check.result.curve] == [4, 8]  # the growth steps, measured by the harness
    assert all(0 <= p["top1"] <= 100 and p["macs"] > 0 for p in check.result.curve)
    assert check.result.curve[0]["macs"] < check.result.curve[1]["macs"]  # the grown network costs more


@pytest.mark.slow
def test_autogrow_on_odns_target_rule(check_method):
    check = check_method("autogrow", sets=["autogrow.stop=target", "autogrow.target=100", "autogrow.init=copy",
                                           "autogrow.growth=stage", "autogrow.max_growth_epochs=3"])
    info = check.info
    assert info["target_mode"] == "fixed" and info["threshold"] == 99.5
    assert check.result.facts.reached_target is False and check.result.facts.threshold == 99.5
    assert info["growth_stopped"] == "max_epochs" and check.result.facts.converged is False
    assert sum(info["blocks_per_stage"]) == 4 + 2  # one stage per step, round robin: stages 1 and 2 grew
    assert [b["stage"] for b in info["new_blocks"]] == [1, 2] and info["new_blocks"][0]["copied_tensors"] > 0


@pytest.mark.slow
def test_autogrow_grows_past_the_backbone_with_fresh_copies_of_a_stages_last_block(check_method):
    check = check_method("autogrow", sets=["autogrow.max_blocks=3", "autogrow.stop=target", "autogrow.target=100",
                                           "autogrow.init=zero"])
    info = check.info
    # 1-1-1-1 -> 2-2-2-2 (the backbone's own second blocks) -> 3-3-3-3 (fresh blocks), then smoke's epoch cap
    assert info["blocks_per_stage"] == [3, 3, 3, 3] and info["growth_stopped"] == "max_epochs"
    assert check.model.depth == 12 and check.model.stages == [3, 3, 3, 3]  # reloaded from its file
    assert [p["depth"] for p in check.result.curve] == [4, 8, 12]

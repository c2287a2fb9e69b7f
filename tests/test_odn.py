"""The ODN method plugin: its decisions on scripted validation curves, the multi-exit network,
warm-up, the exported cut model, targets, and real smoke runs through the harness and the CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from odnbench import OdnbenchError, Requirement
from odnbench.contract import Param
from odnbench.data import DatasetInfo, Split, Splits
from odnbench.metrics import count_params
from odnbench.progress import Progress
from odnbench.recipes import make_recipe
from odnbench.trainer import CostMeter, Trainer
from odnbench_plugins.odn import ODN, paper
from odnbench_plugins.odn.search import MultiExitNet, OdnSchedule, warm_up

TINY = (8, 16, 16, 32)


def feed(sched: OdnSchedule, values):
    """Feed validation values until the schedule asks for the next phase; return the steps."""
    steps = []
    for v in values:
        steps.append(sched.observe(v))
        if steps[-1].finished:
            break
    return steps


def schedule(**kw):
    base = dict(first_depth=1, last_depth=4, threshold=95.0, base_lr=0.1, next_depth_lr_factor=0.5, patience=3,
                decay_factor=0.5, decay_patience=2, best_reading="carry", finetune=False, stop_rule="patience")
    base.update(kw)
    return OdnSchedule(**base)


# ---------------------------------------------------------------------------------------------
# Decisions on scripted curves


RULES = ["first", "patience"]


@pytest.mark.parametrize("rule", RULES)
def test_stops_at_first_depth_reaching_threshold(rule):
    s = schedule(stop_rule=rule)
    assert s.fresh and s.depth == 1
    steps = feed(s, [80, 85, 84, 85, 85, 99])  # best 85 at epoch 2, then 3 flat epochs
    assert [st.finished for st in steps] == [None, None, None, None, "depth"]
    assert s.depths[0]["best_val"] == 85 and s.depths[0]["epochs"] == 5 and s.depths[0]["stopped"] == "patience"
    assert s.depth == 2 and s.fresh
    feed(s, [90, 94.9, 94.9, 94.9, 94.9])  # 94.9 < 95.0: not enough
    assert s.depth == 3 and s.depths[1]["best_val"] == 94.9 and not s.depths[1]["reached_threshold"]
    steps = feed(s, [96.0, 95.5, 95.5, 95.5])
    assert steps[-1].finished == "search" and s.done
    assert s.optimal_depth == 3 and s.reached_target is True
    # first: depth 3 ends in its first epoch (96.0 >= 95.0); patience: 3 flat epochs later
    assert (len(steps), s.depths[-1]["stopped"]) == ((1, "threshold") if rule == "first" else (4, "patience"))
    assert [d["depth"] for d in s.depths] == [1, 2, 3]  # depth 4 never tried


@pytest.mark.parametrize("rule", RULES)
def test_threshold_uses_rounded_value_and_rounding_defines_improvement(rule):
    s = schedule(threshold=99.0, patience=2, stop_rule=rule)
    steps = feed(s, [98.01, 98.04, 98.03])  # all round to 98.0: only the first improves
    assert [st.improved for st in steps] == [True, False, False]
    assert s.depth == 2
    steps = feed(s, [98.96, 98.0, 98.0])  # 98.96 rounds to 99.0 >= 99.0
    assert len(steps) == (1 if rule == "first" else 3)
    assert s.optimal_depth == 2 and s.depths[-1]["best_val"] == 99.0 and s.depths[-1]["best_val_raw"] == 98.96


@pytest.mark.parametrize("rule", RULES)  # the curve stays below the threshold: both rules alike
def test_lr_decay_and_half_lr_for_deeper_depths(rule):
    s = schedule(stop_rule=rule, patience=6, decay_patience=2, decay_factor=0.5, base_lr=0.1, next_depth_lr_factor=0.5)
    assert s.lr == pytest.approx(0.1)
    steps = feed(s, [50, 50, 50])  # 2 flat epochs -> decay
    assert [st.decayed for st in steps] == [False, False, True] and s.lr == pytest.approx(0.05)
    steps = feed(s, [60, 60, 60])  # improvement resets the flat count; 2 more flat -> decay again
    assert [st.decayed for st in steps] == [False, False, True] and s.lr == pytest.approx(0.025)
    steps = feed(s, [60, 60, 60, 60, 60])  # the 6th flat epoch since 60 converges (decaying at flat 4 and 6)
    assert len(steps) == 4 and steps[-1].finished == "depth" and s.depths[0]["lr_decays"] == 4
    assert s.depths[0]["lr_end"] == pytest.approx(0.1 / 16) and s.depths[0]["epochs"] == 10
    assert s.depth == 2 and s.lr == pytest.approx(0.05)  # fresh LR for depth 2: base x 0.5, not decayed


@pytest.mark.parametrize("rule", RULES)
def test_max_epochs_per_depth_caps_a_depth(rule):
    s = schedule(max_epochs_per_depth=3, patience=10, stop_rule=rule)
    steps = feed(s, [10, 20, 30, 40])
    assert len(steps) == 3 and steps[-1].finished == "depth" and s.depths[0]["stopped"] == "max_epochs"


@pytest.mark.parametrize("rule", RULES)
def test_carry_reading_needs_deeper_depths_to_beat_shallower_ones(rule):
    curve_d1 = [90, 90, 90, 90]
    curve_d2 = [85, 88, 89, 91, 92, 92, 92, 92]
    carry = schedule(best_reading="carry", stop_rule=rule)
    feed(carry, curve_d1)
    steps = feed(carry, curve_d2)
    # 85, 88, 89 do not beat the carried 90: patience runs out after 3 epochs
    assert [st.improved for st in steps] == [False, False, False] and steps[-1].finished == "depth"
    assert [st.decayed for st in steps] == [False, True, False]  # LR decay counts the same epochs
    d2 = carry.depths[1]
    assert d2["best_val"] == 89 and d2["epochs"] == 3 and d2["carried_best"] == 90  # own best is kept
    assert [st.checkpoint for st in steps] == [True, True, True]  # own-best weights still checkpointed

    reset = schedule(best_reading="reset", stop_rule=rule)
    feed(reset, curve_d1)
    steps = feed(reset, curve_d2)
    assert [st.improved for st in steps[:5]] == [True, True, True, True, True]
    assert reset.depths[1]["best_val"] == 92 and reset.depths[1]["epochs"] == 8 and reset.depths[1]["carried_best"] is None


def test_cosine_finetune_anneals_the_decayed_lr():
    s = schedule(last_depth=1, patience=2, finetune=True, finetune_max_epochs=4, finetune_schedule="cosine")
    feed(s, [96.0, 96.0, 96.0])  # one plateau decay (0.1 -> 0.05), then converged
    start = s.lr
    assert s.phase == "fine-tune" and start == pytest.approx(0.05)
    lrs = []
    for v in [96.1, 96.2, 96.3, 96.4]:  # improving every epoch: no plateau decay would happen
        lrs.append(s.lr)
        step = s.observe(v)
    assert lrs == pytest.approx([start * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    assert step.finished == "fine-tune" and s.finetune_record["stopped"] == "max_epochs"
    assert s.finetune_record["schedule"] == "cosine" and s.finetune_record["best_val"] == 96.4


@pytest.mark.parametrize("rule", RULES)
def test_last_depth_without_reaching_the_threshold(rule):
    s = schedule(last_depth=2, patience=1, stop_rule=rule)
    feed(s, [50, 40])
    feed(s, [60, 50])
    assert s.done and s.optimal_depth == 2 and s.reached_target is False


def test_finetune_continues_with_decayed_lr_and_finer_rounding():
    s = schedule(patience=3, decay_patience=2, decay_factor=0.5, finetune=True, finetune_max_epochs=50,
                 threshold=95.0, last_depth=1)
    feed(s, [95.04, 95.0, 95.0, 95.0])  # decays once at epoch 3, converges at epoch 4
    assert s.phase == "fine-tune" and s.optimal_depth == 1 and not s.fresh
    lr_after_search = s.lr
    assert lr_after_search == pytest.approx(0.05)
    # 95.04 -> 95.06 is an improvement at 0.01 precision (it was not at 0.1)
    steps = feed(s, [95.06, 95.03, 95.06, 95.05])
    assert [st.improved for st in steps] == [True, False, False, False]
    assert steps[1].decayed is False and steps[2].decayed is True and s.lr == pytest.approx(0.025)
    assert steps[-1].finished == "fine-tune" and s.done
    ft = s.finetune_record
    assert ft["start_val"] == 95.04 and ft["best_val"] == 95.06 and ft["epochs"] == 4 and ft["improved"]
    assert ft["lr_start"] == pytest.approx(lr_after_search)
    with pytest.raises(RuntimeError):
        s.observe(99.0)


# Depth 1 converges below the threshold; depth 2 (LR 0.05) decays twice, then reaches 95.0 in its 7th
# epoch, 2 flat epochs into a 6-epoch patience; the patience rule keeps training it until 6 flat epochs.
D1 = [90, 90, 90, 90, 90, 90, 90]
D2 = [92, 92, 92, 94, 94, 94, 95.0, 95.0, 95.0, 95.0, 95.0, 95.0, 95.0]


def crossing_schedule(rule, **kw):
    return schedule(stop_rule=rule, patience=6, decay_patience=2, decay_factor=0.5, last_depth=3, finetune=True,
                    finetune_max_epochs=50, **kw)


@pytest.mark.parametrize("reading", ["carry", "reset"])
def test_first_rule_fine_tunes_in_the_epoch_the_threshold_is_reached(reading):
    s = crossing_schedule("first", best_reading=reading)
    feed(s, D1)
    assert s.depth == 2 and s.lr == pytest.approx(0.05)
    lrs, steps = [], []
    for v in D2:
        lrs.append(s.lr)  # the LR this epoch trains with
        steps.append(s.observe(v))
        if steps[-1].finished:
            break
    e = 7
    assert len(steps) == e and steps[-1].finished == "search" and steps[-1].improved
    assert [st.decayed for st in steps] == [False, False, True, False, False, True, False]
    assert lrs[e - 1] == pytest.approx(0.05 / 4)  # two decays happened before e
    rec = s.depths[-1]
    assert (rec["depth"], rec["epochs"], rec["best_epoch"], rec["stopped"]) == (2, e, e, "threshold")
    assert rec["lr_decays"] == 2 and rec["lr_end"] == pytest.approx(lrs[e - 1])
    # fine-tuning starts now, at the LR epoch e trained with, from epoch e's reading
    assert s.phase == "fine-tune" and s.optimal_depth == 2 and s.reached_target is True
    assert s.lr == pytest.approx(lrs[e - 1])
    ft = feed(s, [95.1] + [95.1] * 6)
    assert ft[-1].finished == "fine-tune"
    assert s.finetune_record["lr_start"] == pytest.approx(0.05 / 4) and s.finetune_record["start_val"] == 95.0


def test_patience_rule_fine_tunes_a_patience_window_later_at_a_decayed_lr():
    s = crossing_schedule("patience")
    feed(s, D1)
    steps = feed(s, D2)
    rec = s.depths[-1]
    assert len(steps) == 7 + 6 and rec["stopped"] == "patience" and rec["best_epoch"] == 7
    assert rec["lr_decays"] == 2 + 3  # three more decays while waiting out the patience
    assert s.phase == "fine-tune" and s.lr == pytest.approx(0.05 / 32)


def test_first_rule_at_the_epoch_cap_counts_as_reaching_not_as_cut_short():
    s = schedule(stop_rule="first", max_epochs_per_depth=3, patience=10)
    steps = feed(s, [90, 93, 95.2])
    assert steps[-1].finished == "search" and s.depths[0]["stopped"] == "threshold"


def test_first_rule_still_waits_out_patience_at_depths_below_the_threshold():
    s = schedule(stop_rule="first", patience=2)
    steps = feed(s, [94, 94.9, 94.9, 94.9])  # 94.9 < 95.0 never reaches it
    assert len(steps) == 4 and s.depths[0]["stopped"] == "patience" and s.depth == 2


def test_schedule_refuses_an_unknown_stop_rule():
    with pytest.raises(ValueError, match="stop_rule must be first or patience, got 'early'"):
        schedule(stop_rule="early")


# ---------------------------------------------------------------------------------------------
# The network, warm-up and the cut model


def tiny_splits(n=64, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    info = DatasetInfo("tiny", 1, 28, classes, (0.0,), (1.0,))
    return Splits(info, Split(x, y), Split(x[:32], y[:32]), Split(x[:32], y[:32]))


def build(reg, width=TINY, classes=10):
    return reg.backbone("resnet18").build(in_chans=1, num_classes=classes, stem="cifar", width=width)


def test_warm_up_trains_every_head(reg):
    torch.manual_seed(0)
    net = MultiExitNet(build(reg))
    before = [h.weight.detach().clone() for h in net.heads]
    unused = net.backbone.head.weight.detach().clone()
    cost = CostMeter()
    trainer = Trainer(tiny_splits(), make_recipe("smoke", {"batch_size": "32"}), torch.device("cpu"),
                      Progress(quiet=True), cost, 0)
    out = warm_up(net, trainer, epochs=1, lr=0.05)
    assert all(not torch.equal(b, h.weight) for b, h in zip(before, net.heads)), "a head was not trained"
    assert torch.equal(unused, net.backbone.head.weight)  # the backbone's own head is not an exit
    assert out["epochs"] == 1 and len(out["val_per_depth"]) == 8
    assert cost.parts["warm-up"]["epochs"] == 1 and cost.parts["warm-up"]["sample_steps"] == 64


def test_cut_model_has_stem_k_blocks_and_one_head(reg):
    net = MultiExitNet(build(reg, width=None))  # full-width ResNet-18, 1x28x28, 10 classes
    cut = net.cut(2)
    assert count_params(cut) == 149_322  # odn-method.md section 8
    assert count_params(cut) == count_params(build(reg, width=None).truncated(2))
    assert cut.depth == 2 and cut.meta["depth"] == 2
    assert not any(isinstance(m, torch.nn.ModuleList) for m in cut.modules())  # no other heads


@pytest.mark.parametrize("k", [1, 3, 8])
def test_cut_model_matches_the_multi_exit_net_at_depth_k(reg, k):
    torch.manual_seed(1)
    net = MultiExitNet(build(reg)).eval()
    net.active = k
    x = torch.randn(4, 1, 28, 28)
    cut = net.cut(k).eval()
    with torch.no_grad():
        assert torch.allclose(net(x), cut(x), atol=1e-6)
        assert torch.allclose(net.exit_logits(x)[k - 1], cut(x), atol=1e-6)


def test_load_shallower_takes_stem_and_blocks_of_the_cut_only(reg):
    from odnbench_plugins.odn.search import load_shallower

    torch.manual_seed(0)
    net = MultiExitNet(build(reg))
    trained = MultiExitNet(build(reg))  # other weights: stands for depth 2 after its training
    cut = trained.cut(2)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    load_shallower(net, cut)
    after = net.state_dict()
    for name, value in after.items():
        from_cut = name.startswith(("backbone.stem.", "backbone.blocks.0.", "backbone.blocks.1."))
        expected = trained.state_dict()[name] if from_cut else before[name]
        assert torch.equal(value, expected), name  # block 3.., every head: as they were


# ---------------------------------------------------------------------------------------------
# Parameters, presets, targets, published numbers


def test_presets_and_target_modes(reg):
    from odnbench.plan import plan_grid, resolve_params

    p = resolve_params(reg, "odn", "paper", "mnist", {})
    assert p["target"] == 99.5 and p["tolerance"] == 0.5 and p["warmup_epochs"] == 3 and p["warmup_lr"] == 0.001
    assert ODN().requires(p) == []
    svhn = resolve_params(reg, "odn", "paper", "svhn", {})
    assert svhn["lr"] == 0.1 and svhn["warmup_lr"] == 0.01 and svhn["target"] == 96.0
    c10 = resolve_params(reg, "odn", "paper", "cifar10", {})
    assert c10["warmup_epochs"] == 0 and c10["next_depth_lr_factor"] == 1.0 and c10["target"] == 94.5
    # a dataset without a paper target, and the scaled-down presets, are relative to `full`
    assert ODN().requires(resolve_params(reg, "odn", "paper", "mnist5k", {})) == [Requirement("full")]
    quick = resolve_params(reg, "odn", "quick", "mnist", {})
    assert ODN().requires(quick) == [Requirement("full")] and quick["target"] is None
    assert p["best_reading"] == "carry" and p["finetune_schedule"] == "plateau"  # the published logs
    assert quick["best_reading"] == "reset" and quick["finetune_schedule"] == "cosine"  # see preset_defaults
    assert ODN().requires(resolve_params(reg, "odn", "paper", "mnist", {"target_mode": "relative"})) == [
        Requirement("full")]
    # the relative grid runs `full` first; a fixed target needs nothing
    grid = plan_grid(reg, ["odn"], ["mnist5k"], ["resnet18"], [0], "smoke")
    assert [c.config["method"] for c in grid.cells] == ["full", "odn"] and "full" in grid.cells[1].requires
    grid = plan_grid(reg, ["odn"], ["mnist5k"], ["resnet18"], [0], "smoke", ["odn.target=90"])
    assert [c.config["method"] for c in grid.cells] == ["odn"]


@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_every_preset_stops_the_authors_way_and_the_rule_is_in_the_cell_key(reg, preset):
    from odnbench.plan import plan_grid

    def odn_cell(*sets):
        grid = plan_grid(reg, ["odn"], ["mnist"], ["resnet18"], [0], preset, list(sets))
        return next(c for c in grid.cells if c.config["method"] == "odn")

    first, patience = odn_cell(), odn_cell("odn.stop_rule=patience")
    assert first.config["params"]["stop_rule"] == "first" and odn_cell("odn.stop_rule=first").key == first.key
    assert patience.key != first.key
    # patience is the declared default, left out of the config: the key such a cell had before the rule existed
    assert "stop_rule" not in patience.config["params"]
    assert resolve_default("stop_rule") == "patience"


def test_a_stored_config_without_stop_rule_ran_under_patience(reg):
    from conftest import REPO

    from odnbench.plan import method_params, plan_grid

    # A record made before the rule existed has no stop_rule in its params: it ran under patience, and patience
    # (the declared default, left out of the config) plans exactly its key again.
    legacy = plan_grid(reg, ["odn"], ["mnist5k"], ["resnet18"], [0], "quick", ["odn.stop_rule=patience"]).cells[-1]
    assert "stop_rule" not in legacy.config["params"]
    assert method_params(ODN(), legacy.config["params"])["stop_rule"] == "patience"
    assert method_params(ODN(), {"best_reading": "reset"})["stop_rule"] == "patience"
    assert method_params(ODN(), {"stop_rule": "first"})["stop_rule"] == "first"
    # The committed quick cells are their grid file's odn cells, run with quick's defaults: the authors' rule,
    # stored in the config.
    committed = REPO / "leaderboards" / "results"
    if committed.is_dir():
        from odnbench.gridfile import load_grid, merge_cli

        grid = merge_cli(load_grid(REPO / "leaderboards" / "grids" / "mnist5k-quick.toml", reg), methods=(),
                         datasets=(), backbones=(), seeds=(), preset="quick", sets=(), data_dir=None, download=True,
                         jobs=2, given=set())
        cells = plan_grid(reg, grid.methods, grid.datasets, grid.backbones, grid.seeds, grid.preset, grid.sets,
                          entries=grid.entries).cells
        planned = {c.dirname for c in cells if c.config["method"] == "odn"}
        assert len(planned) == 2 * len(grid.seeds)  # relative and fixed target, each seed
        assert {p.name for p in committed.glob("odn-mnist5k-resnet18-s*")} == planned
        for folder in committed.glob("odn-mnist5k-resnet18-s*"):
            assert json.loads((folder / "result.json").read_text())["config"]["params"]["stop_rule"] == "first"


def test_reference_cost_counts_each_epoch_once():
    assert paper.reference_cost("mnist") == {"warmup": 3, "search": 105, "finetune": 57, "after_warmup": 162,
                                             "total": 165}
    assert paper.reference_cost_text("mnist") == "165 (3+105+57)"
    fm, svhn = paper.reference_cost("fashion-mnist"), paper.reference_cost("svhn")
    assert (fm["total"], fm["finetune"], svhn["total"]) == (383, None, 498)  # fine-tune split not stated
    assert paper.reference_cost_text("fashion-mnist") == "383 (3+380 search and fine-tune)"
    assert paper.reference_cost("cifar10") is None and paper.reference_cost_text("cifar10") == "-"


@pytest.mark.parametrize("sets, needle", [
    (["odn.target_mode=fixed"], "needs odn.target"),
    (["odn.patience=0"], "odn.patience=0 is out of range; allowed: odn.patience >= 1"),
    (["odn.target=150"], "odn.target=150.0 is out of range; allowed: 0 < odn.target <= 100 (or none)"),
    (["odn.best_reading=best"], "choose one of: carry, reset"),
    (["odn.max_depth=1", "odn.start_depth=2"], "below odn.start_depth"),
    (["odn.tolerance=-1", "odn.target=99"], "allowed: odn.tolerance >= 0"),
    (["odn.targt=99"], "Did you mean: target"),
    (["odn.start_from=best"], "choose one of: warmup, previous"),
    (["odn.stop_rule=early"], "choose one of: first, patience"),
])
def test_bad_parameters_fail_at_plan_time_with_one_line(reg, sets, needle):
    from odnbench.plan import plan_grid

    with pytest.raises(OdnbenchError) as err:
        plan_grid(reg, ["odn"], ["mnist5k"], ["resnet18"], [0], "smoke", sets)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_every_param_is_declared_and_typed():
    names = [p.name for p in ODN.params]
    assert len(names) == len(set(names)) and all(isinstance(p, Param) for p in ODN.params)
    for needed in ("target", "tolerance", "patience", "warmup_epochs", "warmup_lr", "lr", "max_epochs_per_depth",
                   "next_depth_lr_factor", "finetune", "best_reading", "target_mode", "relative_tolerance",
                   "max_depth"):
        assert needed in names


def test_reference_results_are_the_published_numbers():
    m = ODN()
    ref = m.reference_results("mnist", "resnet18")
    assert {k: ref[k] for k in ("optimal_depth", "top1", "size_reduction_pct", "size_mb_full", "size_mb")} == {
        "optimal_depth": 2, "top1": 99.31, "size_reduction_pct": 98.64, "size_mb_full": 44.78, "size_mb": 0.61}
    assert m.reference_results("cifar10", "resnet50")["optimal_depth"] == 11
    assert ref["preset"] == "paper"  # compared on paper-preset boards only
    assert m.reference_results("emnist", "resnet18")["size_mb"] is None
    assert m.reference_results("mnist5k", "resnet18") is None
    assert m.reference_results("mnist", "resnet50") is None
    for ref in paper.PUBLISHED.values():  # the stated reductions follow from the stated MB (to rounding)
        if ref["size_mb"] is not None:
            assert 100 * (1 - ref["size_mb"] / ref["size_mb_full"]) == pytest.approx(ref["size_reduction_pct"],
                                                                                     abs=0.05)


# ---------------------------------------------------------------------------------------------
# Real smoke runs through the harness and the CLI


def run_smoke(reg, tmp_path, sets):
    from odnbench.harness import run_grid
    from odnbench.plan import plan_grid

    grid = plan_grid(reg, ["odn"], ["mnist5k"], ["resnet18"], [0], "smoke", sets)
    report = run_grid(reg, grid, tmp_path / "results", data_dir=tmp_path / "data", device=torch.device("cpu"),
                      progress=Progress(quiet=True))
    assert not report.failed, report.failed[0].error if report.failed else ""
    return grid, [r.to_dict() for r in report.results]


@pytest.mark.slow
def test_smoke_run_end_to_end_fixed_target(reg, tmp_path):
    from click.testing import CliRunner

    from odnbench import cli
    from odnbench.store import load_model

    grid, results = run_smoke(reg, tmp_path, ["odn.target=100", "odn.max_depth=3"])
    (result,) = results
    info, cell_dir = result["method_info"], tmp_path / "results" / grid.cells[-1].dirname
    # 100 % is out of reach: every depth 1..3 is tried, the search stops at the last one, then fine-tunes
    assert info["target_mode"] == "fixed" and info["threshold"] == 99.5 and info["reached_target"] is False
    assert info["optimal_depth"] == 3 and info["max_depth"] == 3 and info["blocks"] == 8
    facts = result["facts"]
    assert (facts["depth"], facts["reached_target"], facts["threshold"]) == (3, False, 99.5)
    assert facts["depth_curve"] == [{"depth": r["depth"], "val": r["best_val"]} for r in info["depth_curve"]]
    assert [r["depth"] for r in info["depth_curve"]] == [1, 2, 3]
    assert info["warmup_epochs"] == 1 and info["search_epochs"] == 3 and info["finetune_epochs"] == 1
    assert info["search_cost"]["total"]["epochs"] == 5 == result["cost"]["epochs"]
    assert set(result["cost"]["parts"]) == {"warm-up", "search", "fine-tune"}
    for r in info["depth_curve"]:
        assert r["epochs"] == 1 and r["sample_steps"] == 256 and r["params"] > 0 and r["size_mb"] > 0
        saved = load_model(cell_dir / r["model_file"])
        assert saved.depth == r["depth"] and count_params(saved) == r["params"]
    sizes = [r["params"] for r in info["depth_curve"]]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3

    model = load_model(cell_dir / "model.safetensors")
    fresh = build(reg).truncated(3)
    assert model.depth == 3 and count_params(model) == count_params(fresh) == result["metrics"]["params"]
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in fresh.named_parameters()]
    # every stored file has its checksum in result.json; verify reloads each (never unpickled) and re-measures
    assert set(result["files"]) == {"model.safetensors", "depth-1.safetensors", "depth-2.safetensors",
                                    "depth-3.safetensors", "warmup-exits.safetensors"}
    # ... each depth model an artifact of the record (ctx.save_model), with what was measured of it
    # (and the warmed-up network with all its heads, which early-exit reads)
    assert {name: a["file"] for name, a in result["artifacts"].items()} == {
        **{f"depth-{k}": f"depth-{k}.safetensors" for k in (1, 2, 3)}, "warmup-exits": "warmup-exits.safetensors"}
    warm = load_model(cell_dir / "warmup-exits.safetensors")
    assert warm.depth == 8 and count_params(warm) == result["artifacts"]["warmup-exits"]["params"]
    assert [result["artifacts"][f"depth-{r['depth']}"]["params"] for r in info["depth_curve"]] == sizes
    from odnbench.verify import verify

    [check] = verify(tmp_path / "results", data_dir=tmp_path / "data", download=False).cells
    assert check.ok and check.reevaluated, check.line()
    assert "4 other model file(s) reloaded and match" in check.notes

    cli._add_plugin_commands()
    png = tmp_path / "curve.png"
    out = CliRunner().invoke(cli.cli, ["odn-curve", str(cell_dir), "--png", str(png)])
    assert out.exit_code == 0, out.output
    assert "<- optimal" in out.output and "threshold not reached" in out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(cli.cli, ["odn-curve", str(tmp_path)])
    assert bad.exit_code == 2 and "no result.json" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize("start_from", ["warmup", "previous"])
def test_start_from_decides_where_deeper_depths_start(reg, tmp_path, monkeypatch, start_from):
    from odnbench_plugins.odn import search

    loaded = []
    real = search.load_shallower
    monkeypatch.setattr(search, "load_shallower", lambda net, cut: loaded.append(cut.depth) or real(net, cut))
    assert resolve_default("start_from") == "warmup"  # the authors' released code
    _, (result,) = run_smoke(reg, tmp_path, ["odn.target=100", "odn.max_depth=3", f"odn.start_from={start_from}"])
    info = result["method_info"]
    assert info["start_from"] == start_from and [r["depth"] for r in info["depth_curve"]] == [1, 2, 3]
    # depth 2 starts from depth 1's best, depth 3 from depth 2's; with warmup all start from the warm-up
    assert loaded == ([1, 2] if start_from == "previous" else [])
    assert len(info["warmup"]["val_per_depth"]) == 8  # the warm-up's accuracy of every head is kept


@pytest.mark.parametrize("rule", ["first", "patience"])
@pytest.mark.slow
def test_stop_rule_end_to_end(reg, tmp_path, rule):
    # threshold 0.5 %: depth 1 reaches it in its first epoch; patience 2 keeps it 3 epochs (its cap)
    sets = ["odn.target=1", "odn.max_epochs_per_depth=3", "odn.patience=2", "odn.lr_decay_patience=1",
            "odn.max_depth=2"] + (["odn.stop_rule=patience"] if rule == "patience" else [])
    grid, (result,) = run_smoke(reg, tmp_path, sets)
    info = result["method_info"]
    assert info["stop_rule"] == rule and ("stop_rule" in result["config"]["params"]) == (rule == "first")
    (d1,) = info["depth_curve"]
    assert info["optimal_depth"] == 1 and d1["reached_threshold"]
    if rule == "first":
        assert (d1["epochs"], d1["stopped"], d1["lr_decays"]) == (1, "threshold", 0)
        assert info["finetune"]["lr_start"] == pytest.approx(info["base_lr"])  # the LR depth 1 trained with
        assert "max_epochs_per_depth" not in (info["cut_short"] or "")  # a threshold stop is not cut short
    else:
        assert d1["epochs"] == 3 and d1["stopped"] in ("patience", "max_epochs")
    assert info["search_epochs"] == d1["epochs"]


def resolve_default(name):
    return next(p.default for p in ODN.params if p.name == name)


@pytest.mark.slow
def test_smoke_run_relative_target_uses_full_validation(reg, tmp_path):
    grid, results = run_smoke(reg, tmp_path, ["odn.max_depth=2"])
    full, odn = results
    assert full["config"]["method"] == "full" and odn["config"]["method"] == "odn"
    info = odn["method_info"]
    assert info["target_mode"] == "relative" and info["tolerance"] == 1.75
    assert info["full_val_top1"] == full["metrics"]["val_top1"]
    assert info["threshold"] == pytest.approx(full["metrics"]["val_top1"] - 1.75)
    stopped = info["depth_curve"][-1]
    assert info["reached_target"] == (stopped["best_val"] >= info["threshold"])
    assert info["reached_target"] or info["optimal_depth"] == 2


def test_plot_is_deterministic(tmp_path):
    from odnbench.report.plots import plot_depth_curves

    curves = [("a", [{"depth": 1, "val": 80.0}, {"depth": 2, "val": 90.5}]),
              ("b", [{"depth": 2, "val": 85.0}, {"depth": 3, "val": None}])]
    one = plot_depth_curves(curves, tmp_path / "1.png", "t", hlines=[("threshold", 88.0)], marks=[("a", 2, 90.5)])
    two = plot_depth_curves(curves, tmp_path / "2.png", "t", hlines=[("threshold", 88.0)], marks=[("a", 2, 90.5)])
    assert one.read_bytes() == two.read_bytes()
    assert b"Software" not in one.read_bytes()
    assert one.read_bytes() != plot_depth_curves(curves[:1], tmp_path / "3.png", "t").read_bytes()


def test_registration_module_is_light():
    import subprocess
    import sys

    code = ("import sys, odnbench_plugins.odn as m; m.ODN().preset_defaults('paper', 'mnist'); "
            "print(json.dumps(['torch' in sys.modules, 'matplotlib' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json; " + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == [False, False]


@pytest.mark.slow
def test_compute_cost_of_an_odn_cell_is_the_sum_over_its_phases(reg, tmp_path):
    """cost.train_macs = Σ over phases of (forward MACs of the network trained then) × samples × 3: the
    warm-up through every block, each searched depth k (stem + blocks 1..k + head k), the fine-tune at
    the chosen depth, and the full-depth run the relative target needed (a dependency)."""
    from odnbench.metrics import count_macs

    grid, results = run_smoke(reg, tmp_path, ["odn.max_depth=2"])
    full, odn = results
    widths = tuple(int(w) for w in grid.cells[-1].config["recipe"]["width"].split(","))
    net = MultiExitNet(build(reg, width=widths))
    shape = tuple(full["metrics"]["input_shape"])

    def macs_at(k):
        net.active = k
        return count_macs(net, shape)

    assert macs_at(1) < macs_at(2) < macs_at(net.depth)
    info, parts = odn["method_info"], odn["cost"]["parts"]
    warm = info["warmup"]["sample_steps"] * macs_at(net.depth) * 3
    search = sum(r["sample_steps"] * macs_at(r["depth"]) * 3 for r in info["depth_curve"])
    assert sum(r["sample_steps"] for r in info["depth_curve"]) == parts["search"]["sample_steps"]
    fine = parts["fine-tune"]["sample_steps"] * macs_at(info["optimal_depth"]) * 3 if "fine-tune" in parts else 0
    full_own = full["cost"]["sample_steps"] * full["metrics"]["macs"] * 3
    assert full["cost"]["train_macs"] == full["cost"]["own"]["train_macs"] == full_own > 0
    assert parts["warm-up"]["train_macs"] == warm > 0 and parts["search"]["train_macs"] == search > 0
    assert parts.get("fine-tune", {}).get("train_macs", 0) == fine
    assert parts["full (dependency)"]["train_macs"] == full_own
    assert odn["cost"]["own"]["train_macs"] == warm + search + fine
    assert odn["cost"]["train_macs"] == warm + search + fine + full_own
    [dep] = odn["cost"]["dependencies"].values()
    assert dep["train_macs"] == full_own

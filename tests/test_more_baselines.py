"""The baselines a reviewer asks for (issue 14): slim (width), blockdrop (inner-block removal), kd
(distillation), and prune's sparse-training pruners and iterative pruning. Unit tests on the
building blocks, then one smoke grid on mnist5k (one thread) whose results the later tests read."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from _plugin_helpers import install_plugin
from click.testing import CliRunner

from odnbench import metrics, plan
from odnbench.errors import OdnbenchError

REPO = Path(__file__).resolve().parents[1]
SMALL = (8, 16, 16, 32)
QUICK = (16, 32, 64, 128)
SHAPE = (1, 28, 28)
SMOKE = ["recipe.threads=1"]


@pytest.fixture
def build(reg):
    def make(width=SMALL, name="resnet18"):
        return reg.backbone(name).build(in_chans=1, num_classes=10, stem="cifar", width=width)

    return make


# ---------------------------------------------------------------------------------------------
# slim: choosing the widths


@pytest.mark.parametrize("axis,depth", [("size", 5), ("macs", 5), ("macs", 2), ("params", 3)])
def test_slim_widths_land_within_5_percent_of_a_depth_cut(build, axis, depth):
    from odnbench_plugins.match_rule import measure_fn
    from odnbench_plugins.slim import fit_widths

    measure = measure_fn(axis, SHAPE)
    target = measure(build(QUICK).truncated(depth))  # what ODN's model of that depth measures
    m, widths, value, _ = fit_widths(lambda width: build(width), QUICK, SHAPE, axis, target, 0.05)
    assert 0.95 * target <= value <= target
    assert value == measure(build(widths))  # measured as the harness will measure it
    assert 0 < m < 1 and all(abs(w - q * m) <= 1 for w, q in zip(widths, QUICK))  # one multiplier, rounded


def test_slim_cannot_reach_below_the_narrowest_network(build):
    from odnbench_plugins.slim import fit_widths

    target = metrics.saved_size_mb(build(SMALL).truncated(1))
    with pytest.raises(OdnbenchError, match=r"cannot reach .* narrowest network \(stage widths 1,1,1,1"):
        fit_widths(lambda width: build(width), SMALL, SHAPE, "size", target, 0.05)


# ---------------------------------------------------------------------------------------------
# blockdrop: which blocks can go, and the network without them


def test_removable_blocks_are_those_that_keep_their_input_shape(build):
    from odnbench_plugins.blockdrop import removable_blocks

    example = torch.zeros(1, *SHAPE)
    assert removable_blocks(build(), example) == [0, 1, 3, 5, 7]  # 2, 4, 6 downsample
    # A bottleneck's first block widens 4x even without a stride: it stays.
    assert removable_blocks(build((4, 8, 8, 8), "resnet26"), example) == [1, 3, 5, 7]


def test_without_keeps_the_trained_modules_and_head(build):
    from odnbench_plugins.blockdrop import without

    net = build()
    cut = without(net, [0, 1, 5])
    assert cut.depth == 5 and cut.meta["blocks_kept"] == [3, 4, 5, 7, 8]
    assert cut.stages == [2, 1, 2]  # stage 1 emptied, one of stage 3's two blocks left
    assert cut.widths == [16, 16, 16, 32, 32] and cut.head is net.head and cut.blocks[0] is net.blocks[2]
    assert cut(torch.randn(2, *SHAPE)).shape == (2, 10)


def test_removal_order_least_useful_first():
    from odnbench_plugins.blockdrop import removal_order

    drop = {0: 0.5, 1: 0.0, 3: 2.0, 5: 0.0}
    probe = {0: 3.0, 1: 0.1, 3: 0.2, 5: 5.0}
    assert removal_order({"drop": drop}) == [5, 1, 0, 3]  # ties: the deeper block first
    assert removal_order({"probe": probe}) == [1, 3, 0, 5]
    assert removal_order({"drop": drop, "probe": probe})[0] == 1


# ---------------------------------------------------------------------------------------------
# prune: sparse training and iterative pruning


def _trainer(epochs=2, seed=0):
    from odnbench.data import DatasetInfo, Split, Splits
    from odnbench.progress import Progress
    from odnbench.recipes import make_recipe
    from odnbench.trainer import CostMeter, Trainer

    g = torch.Generator().manual_seed(seed)
    split = Split(torch.randn(128, *SHAPE, generator=g), torch.randint(0, 10, (128,), generator=g))
    splits = Splits(DatasetInfo("random", 1, 28, 10, (0.0,), (1.0,)), split, split, split)
    recipe = make_recipe("smoke", {"epochs": str(epochs), "patience": str(epochs)})
    return Trainer(splits, recipe, torch.device("cpu"), Progress(quiet=True), CostMeter(), seed)


def _group_norm(net) -> float:
    return float(sum(m.weight.detach().pow(2).sum() for m in net.modules() if isinstance(m, torch.nn.Conv2d)))


@pytest.mark.parametrize("pruner,coefficient,measure", [("bn-scale", 0.05, "bn"), ("group-norm", 0.05, "conv"),
                                                        ("growing-reg", 0.05, "conv")])
def test_sparse_training_shrinks_what_its_regulariser_penalises(build, pruner, coefficient, measure):
    from odnbench_plugins.prune import core

    size = {}
    for r in (0.0, coefficient):
        torch.manual_seed(0)
        net = build()
        trainer = _trainer()
        info = core.sparse_train(trainer, net, torch.zeros(1, *SHAPE), pruner, reg=r,
                                 delta_reg=r if pruner == "growing-reg" else None)
        assert info["regulariser"] == core.SPARSE_PRUNERS[pruner] and info["sparse_epochs"] == 2
        assert trainer.cost.parts["sparse training"]["epochs"] == 2
        size[r] = core.mean_bn_scale(net) if measure == "bn" else _group_norm(net)
    assert size[coefficient] < size[0.0]


def test_prune_by_ratio_fine_tunes_between_steps(build):
    from odnbench_plugins.prune import core

    torch.manual_seed(0)
    calls = []
    report = core.prune_by_ratio(build(), torch.zeros(1, *SHAPE), "l2", ratio=0.4, steps=3,
                                 between=lambda m, step: calls.append((step, metrics.count_params(m))))
    assert [c[0] for c in calls] == [1, 2]
    assert calls[0][1] > calls[1][1] > report.after["params"]  # each call saw the model pruned so far


def test_prune_in_stages_reaches_the_target_through_intermediate_ones(build):
    from odnbench_plugins.prune import core

    torch.manual_seed(0)
    net = build()
    with torch.no_grad():  # trained-like BN scales (timm zero-initialises each block's last one)
        for block in net.blocks:
            block.bn2.weight.uniform_(0.5, 1.5)
    target = metrics.count_macs(net.truncated(3), SHAPE)
    seen = []
    report = core.prune_in_stages(net, torch.zeros(1, *SHAPE), "l2", axis="macs", target=target, stages=3,
                                  between=lambda m, stage: seen.append(metrics.count_macs(m, SHAPE)))
    assert 0.95 * target <= report.after["macs"] <= target
    assert len(seen) == 2 and seen[0] > seen[1] > target  # geometric stages on the way down
    assert {h["stage"] for h in report.history} == {1, 2, 3}


def test_forward_only_passes_cost_a_third_of_a_sample_step():
    from odnbench.trainer import CostMeter

    cost = CostMeter()
    cost.add_forward("teacher forward", 256)
    cost.add_forward("teacher forward", 3)
    assert cost.parts["teacher forward"] == {"epochs": 0, "sample_steps": 86 + 1, "train_seconds": 0.0,
                                             "train_macs": 0}  # no MACs declared: no compute counted
    assert cost.sample_steps == cost.own["sample_steps"] == 87 and cost.epochs == 0
    cost.add_forward("teacher forward", 10, macs=1_000)  # forward-only: samples x MACs, no factor 3
    assert cost.parts["teacher forward"]["train_macs"] == cost.train_macs == cost.own["train_macs"] == 10_000


# ---------------------------------------------------------------------------------------------
# Parameters: plan-time errors, help, and prune's unchanged cell keys


@pytest.mark.parametrize("method,bad,message", [
    ("slim", "slim.width=0", r"slim.width=0.0 is out of range; allowed: 0 < slim.width <= 8"),
    ("slim", "slim.match=odn:depth", "METHOD:AXIS"),
    ("slim", "slim.tolerance=1", r"allowed: 0 < slim.tolerance < 1"),
    ("slim", "slim.target=0.1", "needs slim.match"),
    ("slim", "slim.match=size", "needs slim.target"),
    ("blockdrop", "blockdrop.keep=0", r"allowed: blockdrop.keep >= 1 \(or none\)"),
    ("blockdrop", "blockdrop.score=random", "choose one of: drop, probe, both"),
    ("blockdrop", "blockdrop.probe_epochs=0", "out of range"),
    ("kd", "kd.temperature=0", r"allowed: kd.temperature > 0"),
    ("kd", "kd.weight=1.5", r"allowed: 0 <= kd.weight <= 1"),
    ("kd", "kd.init=imagenet", "choose one of: scratch, full"),
    ("prune", "prune.reg=0.001", "applies to the sparse-training pruners"),
    ("prune", "prune.pruner=l1", "choose one of: base, group-norm, bn-scale, growing-reg"),
    ("prune", "prune.finetune_between=-1", r"allowed: prune.finetune_between >= 0"),
])
def test_bad_parameters_fail_at_planning(reg, method, bad, message):
    with pytest.raises(OdnbenchError, match=message):
        plan.plan_grid(reg, [method], ["mnist5k"], ["resnet18"], [0], "smoke", [bad])


@pytest.mark.parametrize("sets,message", [
    (["blockdrop.keep=3", "blockdrop.match=odn:size"], "set one of them"),
    (["prune.pruner=bn-scale", "prune.criterion=taylor"], "ranks channels by the importance it sparsified"),
    (["prune.pruner=group-norm", "prune.delta_reg=0.1"], "growing-reg only"),
    (["prune.finetune_between=2", "prune.steps=1"], "steps of at least 2"),
])
def test_bad_combinations_fail_at_planning(reg, sets, message):
    method = sets[0].split(".")[0]
    with pytest.raises(OdnbenchError, match=message):
        plan.plan_grid(reg, [method], ["mnist5k"], ["resnet18"], [0], "smoke", sets)


def test_a_bad_value_is_one_line_and_exit_status_2(tmp_path):
    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["compare", "--method", "kd", "--set", "kd.weight=2", "--preset", "smoke",
                                   "--results", str(tmp_path)])
    assert out.exit_code == 2 and "kd.weight=2.0 is out of range; allowed: 0 <= kd.weight <= 1" in out.output
    assert not any(tmp_path.iterdir())


def test_every_parameter_is_described_by_odnbench_params(reg):
    from odnbench.cli import cli

    for method in ("slim", "blockdrop", "kd", "prune"):
        out = CliRunner().invoke(cli, ["params", method, "--preset", "smoke"])
        assert out.exit_code == 0, out.output
        for p in reg.method(method).params:
            assert len(p.help) > 20, f"{method}.{p.name} has no help"
            assert f"{method}.{p.name}" in out.output and p.help[:40] in out.output


def test_prune_params_added_later_leave_stored_cell_keys_alone(reg):
    """pruner, sparse_epochs, reg, delta_reg and finetune_between stay out of the config at their
    defaults: a prune configuration from before they existed keeps its key (and its stored result)."""
    from odnbench import store
    from odnbench.harness import method_params

    def prune_cell(*sets):
        return plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "quick", list(sets)).cells[-1]

    old = ["criterion", "scope", "ratio", "match", "target", "tolerance", "steps", "max_step", "round_to",
           "grad_batches", "finetune_epochs", "finetune_lr"]
    cell = prune_cell("prune.match=odn:size")
    assert sorted(cell.config["params"]) == sorted(old)
    # The config (and key) a prune without the new parameters would have had.
    before = {k: v for k, v in plan.resolve_params(reg, "prune", "quick", "mnist5k", {"match": "odn:size"}).items()
              if k in old}
    assert cell.key == store.cell_key({**cell.config, "params": before})
    committed = REPO / "leaderboards" / "results"
    matched = 0
    for folder in committed.glob("prune-mnist5k-resnet18-s0-*"):  # the committed base-pruner cell keeps that config
        stored = json.loads((folder / "result.json").read_text())["config"]["params"]
        if (stored.get("match") == "odn:size" and "pruner" not in stored
                and stored.get("criterion") == "l2" and stored.get("scope") == "local"):  # not the random/global rows
            assert cell.config["params"] == stored
            matched += 1
    assert matched == (1 if committed.is_dir() else 0)
    full = method_params(reg.method("prune"), cell.config["params"])
    assert full["pruner"] == "base" and full["finetune_between"] == 0 and full["reg"] is None
    sparse = prune_cell("prune.match=odn:size", "prune.pruner=group-norm")
    assert sparse.config["params"]["pruner"] == "group-norm" and sparse.key != cell.key
    assert prune_cell("prune.match=odn:size", "prune.pruner=base").key == cell.key  # the default, spelt out


@pytest.mark.parametrize("preset", ["smoke", "quick", "paper"])
def test_every_new_method_plans_under_every_preset(reg, preset):
    for sets in ([], ["slim.match=odn:size", "blockdrop.match=odn:macs", "prune.pruner=growing-reg",
                      "prune.match=odn:size", "prune.finetune_between=1"]):
        grid = plan.plan_grid(reg, ["slim", "blockdrop", "kd", "prune"], ["mnist"], ["resnet18"], [0], preset, sets)
        assert not [c.error for c in grid.cells if c.error]
        assert {c.config["method"] for c in grid.cells} >= {"slim", "blockdrop", "kd", "prune", "full"}


def test_kd_and_blockdrop_plan_after_full_and_odn(reg):
    for method in ("kd", "blockdrop"):
        grid = plan.plan_grid(reg, [method], ["mnist5k"], ["resnet18"], [0], "smoke")
        methods = [c.config["method"] for c in grid.cells]
        assert methods == ["full", "odn", method]  # odn's relative target needs full too
        assert set(grid.cells[-1].requires) == {"full", "odn"}
    assert [c.config["method"] for c in plan.plan_grid(reg, ["kd"], ["mnist5k"], ["resnet18"], [0], "smoke",
                                                         ["kd.depth=2"]).cells] == ["full", "kd"]
    assert [c.config["method"] for c in plan.plan_grid(reg, ["slim"], ["mnist5k"], ["resnet18"], [0], "smoke",
                                                         ["slim.width=0.25"]).cells] == ["slim"]


# ---------------------------------------------------------------------------------------------
# Whole cells through the harness (smoke preset, mnist5k)


@pytest.fixture(scope="module")
def cells(tmp_path_factory):
    import os

    from odnbench import harness
    from odnbench.registry import get_registry

    env_before = os.environ.get("ODNBENCH_LOAD_PLUGINS")
    if env_before is None:  # module-scoped, so conftest's per-test monkeypatch does not apply here
        os.environ["ODNBENCH_LOAD_PLUGINS"] = "odnbench"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    reg = get_registry(reload=True)
    results = tmp_path_factory.mktemp("results")
    out = {}

    def run(name, methods, sets):
        grid = plan.plan_grid(reg, methods, ["mnist5k"], ["resnet18"], [0], "smoke", SMOKE + sets)
        report = harness.run_grid(reg, grid, results, data_dir=results, download=False, device=torch.device("cpu"))
        out[name] = {r.method: r.to_dict() for r in report.results}

    try:
        run("main", ["full", "odn", "slim", "blockdrop", "kd", "prune"],
            ["slim.match=odn:macs", "prune.pruner=group-norm", "prune.match=odn:macs", "prune.reg=0.01"])
        run("slim-size", ["slim"], ["slim.match=odn:size"])
        run("blockdrop-size", ["blockdrop"], ["blockdrop.match=odn:size"])
        run("blockdrop-keep", ["blockdrop"], ["blockdrop.keep=5", "blockdrop.score=both", "blockdrop.probe_epochs=1"])
        run("iterative", ["prune"], ["prune.pruner=bn-scale", "prune.finetune_between=1", "prune.steps=2",
                                     "prune.ratio=0.3"])
    finally:
        torch.set_num_threads(threads)
        if env_before is None:
            os.environ.pop("ODNBENCH_LOAD_PLUGINS", None)
    out["results"] = results
    return out


def _model(cells, result):
    from odnbench.store import ResultStore, load_model

    store = ResultStore(cells["results"])
    return load_model(store.model_path(store.find(result["key"])))


@pytest.mark.slow
def test_every_new_cell_ran(cells):
    for name in ("main", "blockdrop-size", "blockdrop-keep", "iterative"):
        for method, r in cells[name].items():
            assert r["status"] == "ok", (name, method, r["error"])


@pytest.mark.slow
def test_slim_is_matched_on_macs_with_every_block_and_the_stated_widths(cells):
    r, odn = cells["main"]["slim"], cells["main"]["odn"]
    info, target = r["method_info"], odn["metrics"]["macs"]
    assert info["target"] == target and info["within_tolerance"] and info["match"] == "odn:macs"
    assert 0.95 * target <= r["metrics"]["macs"] <= target and r["metrics"]["macs"] == info["achieved"]
    model = _model(cells, r)
    assert model.depth == 8 == r["facts"]["depth"]
    assert model.stage_widths == info["widths"] and info["full_widths"] == list(SMALL)
    assert all(w < s for w, s in zip(info["widths"], SMALL))


@pytest.mark.slow
def test_slim_matched_on_size_says_it_cannot_reach(cells):
    r = cells["slim-size"]["slim"]
    assert r["status"] == "failed"
    assert "slim cannot reach" in r["error"] and "narrowest network" in r["error"]
    assert r["error"].count("\n") == 0 and not r.get("traceback")  # a clear one-line reason, not a crash


@pytest.mark.slow
def test_blockdrop_keeps_odns_block_count_where_it_can(cells):
    r, odn = cells["main"]["blockdrop"], cells["main"]["odn"]
    info, k = r["method_info"], odn["facts"]["depth"]
    fewest = 8 - len(info["removable"])
    assert info["keep_source"] == "odn" and info["removable"] == [1, 2, 4, 6, 8]
    assert r["facts"]["depth"] == max(k, fewest) == len(info["blocks_kept"])
    assert {3, 5, 7} <= set(info["blocks_kept"])  # the downsampling blocks stay
    assert ("why_not" in info) == (k < fewest)
    model = _model(cells, r)
    assert model.depth == r["facts"]["depth"] and model.meta["blocks_kept"] == info["blocks_kept"]
    assert model.head.in_features == 32  # the trained head still fits: removed blocks kept the width


@pytest.mark.slow
def test_blockdrop_keep_count_with_both_scores(cells):
    r = cells["blockdrop-keep"]["blockdrop"]
    info = r["method_info"]
    assert info["keep_source"] == "set" and r["facts"]["depth"] == 5 and len(info["blocks_kept"]) == 5
    assert set(info["scores"]) == {"drop", "probe"} and len(info["probe_accuracy"]) == 9
    removed = sorted(set(range(1, 9)) - set(info["blocks_kept"]))
    assert removed == info["blocks_removed"] == sorted(info["removal_order"][:3])
    assert r["cost"]["parts"]["block scoring"]["sample_steps"] == math.ceil(256 / 3)  # one pass over train
    assert _model(cells, r).depth == 5


@pytest.mark.slow
def test_blockdrop_matched_on_size_says_why_not(cells):
    r, odn = cells["blockdrop-size"]["blockdrop"], cells["main"]["odn"]
    info = r["method_info"]
    assert info["target"] == odn["metrics"]["size_mb"] and info["achieved"] == r["metrics"]["size_mb"]
    if info["within_tolerance"]:
        assert "why_not" not in info
    else:
        assert info["why_not"].startswith(("cannot reach", "blocks go whole"))
    path = [step["value"] for step in info["removal_path"]]
    assert path == sorted(path, reverse=True) and path[-1] == info["achieved"]


@pytest.mark.slow
def test_kd_trains_odns_depth_and_counts_the_teacher(cells):
    r, odn = cells["main"]["kd"], cells["main"]["odn"]
    info, k = r["method_info"], odn["facts"]["depth"]
    assert r["facts"]["depth"] == k == _model(cells, r).depth and info["depth_source"] == "odn"
    assert info["teacher_forward_samples"] == info["epochs"] * 256  # every training image, every epoch
    assert r["cost"]["parts"]["teacher forward"]["sample_steps"] == math.ceil(info["teacher_forward_samples"] / 3)
    assert r["cost"]["parts"]["distillation"]["epochs"] == info["epochs"]
    assert r["metrics"]["params"] == odn["metrics"]["params"]  # the same architecture as ODN's model


@pytest.mark.slow
def test_prune_with_group_norm_sparse_learning_lands_on_odns_macs(cells):
    r, odn = cells["main"]["prune"], cells["main"]["odn"]
    info = r["method_info"]
    assert info["pruner"] == "group-norm" and info["regulariser"] == "GroupNormPruner" and info["reg"] == 0.01
    assert r["config"]["params"]["pruner"] == "group-norm"
    target = odn["metrics"]["macs"]
    assert 0.95 * target <= r["metrics"]["macs"] <= target
    assert r["cost"]["parts"]["sparse training"]["epochs"] == info["sparse_epochs"] == 1
    assert info["mean_bn_scale_after"] != info["mean_bn_scale_before"]


@pytest.mark.slow
def test_iterative_prune_fine_tunes_between_steps(cells):
    r = cells["iterative"]["prune"]
    info = r["method_info"]
    assert info["pruner"] == "bn-scale" and info["criterion"] == "bn-scale"
    assert [s["step"] for s in info["between_steps"]] == [1] and info["finetune_between"] == 1
    assert r["cost"]["parts"]["fine-tune between steps"]["epochs"] == 1
    assert r["metrics"]["params"] < cells["main"]["full"]["metrics"]["params"]


def _closure(key, by_key):
    out = set()
    for dep in by_key[key]["requires"].values():
        out |= {dep} | _closure(dep, by_key)
    return out


@pytest.mark.slow
def test_costs_add_up_own_plus_each_dependency_once(cells):
    by_key = {r["key"]: r for name, runs in cells.items() if name != "results" for r in runs.values()}
    checked = 0
    for r in by_key.values():
        if r["status"] != "ok":
            continue
        cost = r["cost"]
        for field in ("epochs", "sample_steps", "train_seconds", "train_macs"):
            parts = sum(p[field] for p in cost["parts"].values())
            assert parts == pytest.approx(cost[field], abs=0.01)
            deps = sum(d[field] for d in cost["dependencies"].values())
            assert cost[field] == pytest.approx(cost["own"][field] + deps, abs=0.01)
        assert set(cost["dependencies"]) == _closure(r["key"], by_key)  # every dependency, once
        for key, entry in cost["dependencies"].items():
            assert entry["epochs"] == by_key[key]["cost"]["own"]["epochs"]
        checked += 1
    assert checked >= 8


COMBO = """
from odnbench import Method, MethodOutput, Requirement, hookimpl


class Combo(Method):
    name = "combo"
    description = "test: the smaller of slim's and blockdrop's models"

    def requires(self, params):
        return [Requirement("slim", {"match": "odn:macs"}), Requirement("blockdrop")]

    def run(self, ctx):
        slim, drop = ctx.dependency("slim"), ctx.dependency("blockdrop")
        pick = min((slim, drop), key=lambda d: d.metrics["size_mb"])
        return MethodOutput(pick.load_model(ctx.device), {"picked": pick.result.method})


@hookimpl
def register_methods(register):
    register(Combo())
"""


@pytest.mark.slow
def test_a_method_needing_slim_and_blockdrop_runs_after_them_counting_each_cost_once(cells, monkeypatch, tmp_path):
    from odnbench import harness
    from odnbench.registry import get_registry

    install_plugin(monkeypatch, tmp_path, "combo", COMBO)
    reg = get_registry(reload=True)
    grid = plan.plan_grid(reg, ["combo"], ["mnist5k"], ["resnet18"], [0], "smoke", SMOKE)
    order = [c.config["method"] for c in grid.cells]
    assert order[-1] == "combo" and sorted(order) == ["blockdrop", "combo", "full", "odn", "slim"]
    assert order.index("full") < order.index("odn") < min(order.index("slim"), order.index("blockdrop"))
    main = cells["main"]
    assert {c.key for c in grid.cells[:-1]} == {main[m]["key"] for m in ("full", "odn", "slim", "blockdrop")}
    report = harness.run_grid(reg, grid, cells["results"], data_dir=cells["results"], download=False,
                              device=torch.device("cpu"))
    assert report.skipped == 4 and not report.failed  # the stored results were reused, none retrained
    combo = report.results[-1].to_dict()
    cost = combo["cost"]
    assert set(cost["dependencies"]) == {main[m]["key"] for m in ("full", "odn", "slim", "blockdrop")}
    assert cost["own"]["epochs"] == 0
    own = {m: main[m]["cost"]["own"]["epochs"] for m in ("full", "odn", "slim", "blockdrop")}
    assert cost["epochs"] == sum(own.values())  # full counted once, though odn, slim and blockdrop need it
    assert combo["method_info"]["picked"] in ("slim", "blockdrop")
    assert json.loads(json.dumps(combo["requires"])) == {"slim": main["slim"]["key"],
                                                         "blockdrop": main["blockdrop"]["key"]}

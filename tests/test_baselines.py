"""The baseline methods: prune (torch-pruning), scratch and truncate, and the dependency ordering
that gives prune/truncate their trained full-depth model. Tiny widths, the smoke preset, 1 thread."""

from __future__ import annotations

import copy
import json
import re

import pytest
import torch

from odnbench import metrics, plan
from odnbench.errors import OdnbenchError

WIDTH = (8, 16, 16, 32)
SHAPE = (1, 28, 28)
# One thread: on a shared 2-core machine torch's default thread pool is many times slower.
SMOKE = ["recipe.threads=1"]


@pytest.fixture
def core():
    from odnbench_plugins.prune import core

    return core


@pytest.fixture
def tiny(reg):
    def build(seed=0):
        torch.manual_seed(seed)
        net = reg.backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=WIDTH)
        # timm zero-initialises each block's last BN scale, which leaves the residual branches with
        # no gradient (Taylor importance 0/0); a trained network has non-zero scales.
        with torch.no_grad():
            for block in net.blocks:
                block.bn2.weight.uniform_(0.5, 1.5)
        return net

    return build


def example():
    return torch.zeros((1, *SHAPE))


def _random_splits(n=128, seed=0):
    from odnbench.data import DatasetInfo, Split, Splits

    g = torch.Generator().manual_seed(seed)
    split = Split(torch.randn(n, *SHAPE, generator=g), torch.randint(0, 10, (n,), generator=g))
    return Splits(DatasetInfo("random", 1, 28, 10, (0.0,), (1.0,)), split, split, split)


def _kill_channels(net, idx):
    """Zero four of block 1's inner channels everywhere they appear (conv1 out, bn1, conv2 in)."""
    block = net.blocks[0]
    with torch.no_grad():
        block.conv1.weight[idx] = 0
        block.bn1.weight[idx] = 0
        block.bn1.bias[idx] = 0
        block.conv2.weight[:, idx] = 0


# ---------------------------------------------------------------------------------------------
# The pruning routines, on real torch-pruning


@pytest.mark.parametrize("criterion", ["l1", "l2", "taylor", "lamp", "bn-scale", "fpgm", "random"])
def test_each_criterion_shrinks_the_model_and_keeps_the_classifier(core, tiny, criterion):
    net = tiny()
    dead = [0, 2, 4, 6]
    _kill_channels(net, dead)
    grad_fn = core.gradient_fn(_random_splits(), 64, 1, 0) if core.needs_gradients(criterion) else None
    before = core.footprint(net, SHAPE)
    report = core.prune_by_ratio(net, example(), criterion, ratio=0.5, steps=2 if criterion == "taylor" else 1,
                                 grad_fn=grad_fn)
    assert report.model is net
    after = core.footprint(net, SHAPE)
    assert after == report.after and after["params"] < 0.5 * before["params"] and after["macs"] < 0.5 * before["macs"]
    assert net.head.out_features == 10  # the classifier's outputs are never pruned
    assert net(torch.randn(2, *SHAPE)).shape == (2, 10)
    widths = core.refresh_widths(net, example())
    assert widths == net.widths == [o.shape[1] for o in net.block_outputs(example())]
    assert net.head.in_features == widths[-1] < WIDTH[-1]
    block = net.blocks[0]
    assert block.conv1.out_channels == 4
    alive = block.conv1.weight.detach().abs().sum((1, 2, 3)) > 0
    if criterion in ("l1", "l2", "taylor", "lamp", "bn-scale"):
        assert alive.all(), f"{criterion} kept a dead channel"  # the zeroed channels rank lowest


def test_random_importance_differs_from_magnitude(core, tiny):
    kept = {}
    for criterion in ("l2", "random"):
        net = tiny()
        _kill_channels(net, [0, 2, 4, 6])
        torch.manual_seed(1)
        core.prune_by_ratio(net, example(), criterion, ratio=0.5)
        kept[criterion] = (net.blocks[0].conv1.weight.detach().abs().sum((1, 2, 3)) > 0).sum().item()
    assert kept["l2"] == 4 and kept["random"] < 4


def test_global_scope_and_round_to(core, tiny):
    net = tiny()
    core.prune_by_ratio(net, example(), "l1", ratio=0.3, scope="global")
    assert core.footprint(net, SHAPE)["params"] < core.footprint(tiny(), SHAPE)["params"]
    net = tiny()
    core.prune_by_ratio(net, example(), "l2", ratio=0.3, round_to=4)
    assert all(w % 4 == 0 for w in core.refresh_widths(net, example()))


def test_nothing_removed_fails_loudly(core, tiny):
    net = tiny()
    for p in net.parameters():
        p.requires_grad_(False)  # torch-pruning silently skips frozen parameters
    with pytest.raises(OdnbenchError, match="removed nothing"):
        core.prune_by_ratio(net, example(), "l2", ratio=0.5)


@pytest.mark.parametrize("axis,depth,scope", [("size", 4, "local"), ("size", 6, "global"), ("macs", 2, "local"),
                                              ("macs", 3, "global")])
def test_matching_hits_a_depth_cut_target_within_5_percent(core, tiny, axis, depth, scope):
    net = tiny()
    measure = core.measure_fn(axis, SHAPE)
    target = measure(net.truncated(depth))  # what a depth-k cut of the same network measures
    report = core.prune_to_target(copy.deepcopy(net), example(), "l2", axis=axis, target=target, scope=scope,
                                  tolerance=0.05)
    achieved = metrics.saved_size_mb(report.model) if axis == "size" else metrics.count_macs(report.model, SHAPE)
    assert 0.95 * target <= achieved <= target
    assert report.steps >= 1 and report.after["params"] < report.before["params"]
    assert report.model.head.out_features == 10


def test_size_and_macs_matching_give_different_models(core, tiny):
    """Against a depth cut, a size match prunes far deeper than a MACs match (early blocks are costly)."""
    net = tiny()
    cut = net.truncated(4)
    by_size = core.prune_to_target(copy.deepcopy(net), example(), "l2", axis="size",
                                   target=metrics.saved_size_mb(cut)).model
    by_macs = core.prune_to_target(copy.deepcopy(net), example(), "l2", axis="macs",
                                   target=metrics.count_macs(cut, SHAPE)).model
    assert metrics.count_params(by_size) < 0.6 * metrics.count_params(by_macs)


def test_matching_errors_are_clear(core, tiny):
    net = tiny()
    with pytest.raises(OdnbenchError, match="nothing to prune"):
        core.prune_to_target(net, example(), "l2", axis="size", target=10.0)
    with pytest.raises(OdnbenchError, match="stalled.*per tensor") as stalled:
        core.prune_to_target(net, example(), "l2", axis="size", target=metrics.saved_size_mb(net.truncated(1)))
    # the message says what is true of the stalled model: local pruning ends at one channel a layer,
    # a global ranking can stop with channels left (the message once claimed the former for both)
    assert "(local scope, criterion l2); every layer is down to its last channels (" in str(stalled.value)
    fresh = tiny()
    with pytest.raises(OdnbenchError, match="stalled") as stalled:
        core.prune_to_target(fresh, example(), "l2", axis="size", target=metrics.saved_size_mb(fresh.truncated(1)),
                             scope="global")
    assert re.search(r"\(global scope, criterion l2\); its convolutions keep 1-[2-9]\d* channels \(", str(stalled.value))


def test_bad_parameters_fail_at_planning(reg):

    def cells(*sets):
        return plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "smoke", list(sets))

    for bad, message in [("prune.match=odn:depth", "METHOD:AXIS"), ("prune.ratio=1.5", r"allowed: 0 < prune.ratio < 1"),
                         ("prune.criterion=l3", "choose one of"), ("prune.match=size", "needs prune.target"),
                         ("prune.target=3", "needs prune.match"), ("prune.finetune_epochs=0", r"prune.finetune_epochs >= 1 \(or none\)")]:
        with pytest.raises(OdnbenchError, match=message):
            cells(bad)
    grid = cells("prune.match=odn:macs")
    assert [c.config["method"] for c in grid.cells][-1] == "prune"
    assert set(grid.cells[-1].requires) == {"full", "odn"}
    assert set(cells("prune.match=size", "prune.target=0.1").cells[-1].requires) == {"full"}


# ---------------------------------------------------------------------------------------------
# Dependency ordering and whole cells through the harness


def test_plan_grid_has_one_full_cell_first(reg):

    grid = plan.plan_grid(reg, ["full", "prune", "truncate"], ["mnist5k"], ["resnet18"], [0], "smoke",
                             ["truncate.depth=2"])
    methods = [c.config["method"] for c in grid.cells]
    assert methods == ["full", "prune", "truncate"]
    full = grid.cells[0]
    assert not full.added_as_dependency
    assert grid.cells[1].requires == {"full": full.key} == grid.cells[2].requires
    alone = plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "smoke")
    assert [c.config["method"] for c in alone.cells] == ["full", "prune"]
    assert alone.cells[0].added_as_dependency and alone.cells[0].key == full.key
    scratch = plan.plan_grid(reg, ["scratch"], ["mnist5k"], ["resnet18"], [0], "smoke", ["scratch.depth=2"])
    assert [c.config["method"] for c in scratch.cells] == ["scratch"]


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """One smoke grid: full, prune, truncate (depth 2) and scratch (depth 2); full trains once."""
    import os

    from odnbench import harness
    from odnbench.registry import get_registry
    from odnbench_plugins import full as full_plugin

    env_before = os.environ.get("ODNBENCH_LOAD_PLUGINS")
    if env_before is None:  # module-scoped, so conftest's per-test monkeypatch does not apply here
        os.environ["ODNBENCH_LOAD_PLUGINS"] = "odnbench"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    reg = get_registry(reload=True)
    calls = []
    original = full_plugin.FullDepth.run

    def counting(self, ctx):
        calls.append(ctx.config["method"])
        return original(self, ctx)

    full_plugin.FullDepth.run = counting
    results = tmp_path_factory.mktemp("results")
    try:
        grid = plan.plan_grid(reg, ["full", "prune", "truncate", "scratch"], ["mnist5k"], ["resnet18"], [0],
                                 "smoke", SMOKE + ["truncate.depth=2", "scratch.depth=2", "prune.steps=2"])
        report = harness.run_grid(reg, grid, results, data_dir=results, download=False,
                                  device=torch.device("cpu"))
        again = harness.run_grid(reg, grid, results, data_dir=results, download=False,
                                 device=torch.device("cpu"))
    finally:
        full_plugin.FullDepth.run = original
        torch.set_num_threads(before)
        if env_before is None:
            os.environ.pop("ODNBENCH_LOAD_PLUGINS", None)
    by_method = {r.method: r.to_dict() for r in report.results}
    return {"report": report, "again": again, "calls": calls, "results": results, "by": by_method, "grid": grid}


@pytest.mark.slow
def test_grid_trains_full_once_and_prune_counts_its_cost(grid_run):
    report = grid_run["report"]
    assert not report.failed, [r.error for r in report.failed]
    assert grid_run["calls"] == ["full"]  # trained once, though prune and truncate both need it
    assert grid_run["again"].skipped == 4  # a rerun resumes everything
    full, prune, trunc = (grid_run["by"][m] for m in ("full", "prune", "truncate"))
    assert prune["requires"] == {"full": full["key"]} == trunc["requires"]
    for r in (prune, trunc):
        part = r["cost"]["parts"]["full (dependency)"]
        assert part["epochs"] == full["cost"]["epochs"] and part["sample_steps"] == full["cost"]["sample_steps"]
        assert r["cost"]["epochs"] == full["cost"]["epochs"] + r["method_info"]["finetune_epochs"]
    assert len(list(grid_run["results"].glob("full-*"))) == 1


@pytest.mark.slow
def test_prune_cell_result(grid_run):
    full, prune = grid_run["by"]["full"], grid_run["by"]["prune"]
    info, m = prune["method_info"], prune["metrics"]
    assert m["params"] == info["achieved"]["params"] < full["metrics"]["params"]
    assert m["macs"] == info["achieved"]["macs"] < full["metrics"]["macs"]
    assert m["size_mb"] == info["achieved"]["size_mb"] < full["metrics"]["size_mb"]
    assert info["before"]["params"] == full["metrics"]["params"]
    assert info["criterion"] == "l2" and info["scope"] == "local" and info["ratio"] == 0.5 and info["steps"] == 2
    assert info["finetune_epochs"] == 1  # the smoke recipe's epochs
    for key in ("val_full_depth", "val_after_pruning", "val_after_finetune"):
        assert 0.0 <= info[key] <= 100.0
    assert info["library"].startswith("torch-pruning ")


@pytest.mark.slow
def test_pruned_model_reloads_with_the_stored_accuracy(grid_run, reg):
    from odnbench.depthnet import DepthNet
    from odnbench.recipes import make_recipe
    from odnbench.store import load_model

    prune = grid_run["by"]["prune"]
    folder = next(grid_run["results"].glob("prune-*"))
    model = load_model(folder / "model.safetensors")
    assert isinstance(model, DepthNet) and model.depth == 8
    assert model.widths == [o.shape[1] for o in model.block_outputs(example())] == prune["method_info"]["widths"]
    assert model.widths[-1] < WIDTH[-1] and model.meta["pruned"]["criterion"] == "l2"
    recipe = make_recipe("smoke")
    splits = reg.dataset("mnist5k").load(grid_run["results"], download=False, seed=0)
    test = splits.test.subset(recipe.test_limit, 0)  # the same test images the harness used
    assert len(test) == prune["metrics"]["test_examples"]
    assert metrics.top1(model, test.x, test.y) == pytest.approx(prune["metrics"]["top1"], abs=1e-3)


@pytest.mark.slow
def test_every_stored_model_reevaluates_in_verify(grid_run, reg):
    """full, prune (pruned shapes), truncate and scratch reload from model.safetensors (rebuilt from the
    allowlist, never unpickled) and re-measure to what result.json says."""
    from odnbench.verify import verify

    report = verify(grid_run["results"], data_dir=grid_run["results"], download=False)
    assert {c.folder.split("-")[0] for c in report.cells} == {"full", "prune", "truncate", "scratch"}
    assert not report.problems, [c.line() for c in report.problems]
    assert all(c.reevaluated for c in report.cells)


@pytest.mark.slow
def test_truncate_and_scratch_build_stem_two_blocks_and_head(grid_run, tiny):
    from odnbench.store import load_model

    reference = tiny().truncated(2)
    for method in ("truncate", "scratch"):
        r = grid_run["by"][method]
        assert r["facts"]["depth"] == 2 and r["method_info"]["depth_source"] == "set"
        model = load_model(next(grid_run["results"].glob(f"{method}-*")) / "model.safetensors")
        assert model.depth == 2 and len(model.blocks) == 2 and model.widths == [WIDTH[0]] * 2
        assert model.head.in_features == WIDTH[0] and model.head.out_features == 10
        assert [n for n, _ in model.named_children()] == ["stem", "blocks", "pool", "head"]
        assert r["metrics"]["params"] == metrics.count_params(reference)
    assert "full (dependency)" in grid_run["by"]["truncate"]["cost"]["parts"]
    assert "full (dependency)" not in grid_run["by"]["scratch"]["cost"]["parts"]


def test_prune_without_a_full_result_fails_clearly(tmp_path):
    from click.testing import CliRunner

    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["run", "--method", "prune", "--preset", "smoke", "--results", str(tmp_path),
                                   "--set", "recipe.threads=1", "-q"])
    assert out.exit_code == 1
    text = out.output
    assert "MissingDependencyError: prune needs a finished 'full' result" in text
    assert "odnbench compare --method full --method prune" in text
    stored = json.loads(next(tmp_path.glob("prune-*/result.json")).read_text())
    assert stored["status"] == "failed" and "has no stored result" in stored["error"]

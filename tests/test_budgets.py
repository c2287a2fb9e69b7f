"""Equal budgets (issue 30, point 2): ``oracle.schedule=odn`` trains each depth from scratch with ODN's
per-depth budget and schedule (its cap, base LR, plateau decay, patience, stop rule and reading), by
ODN's own :class:`OdnSchedule`; the default (``recipe``) keeps every stored oracle cell's key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from odnbench import OdnbenchError, plan
from odnbench.data import DatasetInfo, Split, Splits
from odnbench.gridfile import load_grid, merge_cli
from odnbench.progress import Progress
from odnbench.recipes import make_recipe
from odnbench.trainer import CostMeter, Trainer
from odnbench_plugins.odn import ODN
from odnbench_plugins.odn.search import DEPTH_BUDGET, train_depth_alone
from odnbench_plugins.oracle import BUDGET, Oracle, odn_budget

REPO = Path(__file__).resolve().parents[1]
BOARDS = REPO / "leaderboards"
TINY = (8, 16, 16, 32)


def planned(reg, name):
    grid = load_grid(BOARDS / "grids" / name, reg)
    merged = merge_cli(grid, methods=(), datasets=(), backbones=(), seeds=(), preset="quick", sets=(),
                       data_dir=None, download=True, jobs=2, given=set())
    return plan.plan_grid(reg, merged.methods, merged.datasets, merged.backbones, merged.seeds, merged.preset,
                          merged.sets, entries=merged.entries).cells


def oracle_cell(reg, sets=(), preset="quick"):
    cells = plan.plan_grid(reg, ["oracle"], ["mnist5k"], ["resnet18"], [0], preset, list(sets)).cells
    return next(c for c in cells if c.config["method"] == "oracle")


def test_the_oracle_shares_odns_per_depth_budget_names():
    assert BUDGET == DEPTH_BUDGET  # named twice so that the oracle's import stays torch-free
    declared = {p.name: p for p in Oracle.params}
    assert all(declared[n].default is None and declared[n].omit_default for n in BUDGET)
    assert declared["schedule"].default == "recipe" and declared["schedule"].omit_default


@pytest.mark.skipif(not (BOARDS / "results").is_dir(), reason="no committed results")
def test_the_committed_grids_still_plan_every_stored_oracle_and_odn_key(reg):
    stored: dict[str, set[str]] = {}
    for path in (BOARDS / "results").glob("*/result.json"):
        record = json.loads(path.read_text())
        if record["config"]["method"] in ("oracle", "odn"):
            stored.setdefault(record["provenance"]["grid"], set()).add(record["key"])
    assert stored, "the committed boards hold oracle and odn cells"
    for grid, keys in stored.items():
        cells = planned(reg, grid)
        oracle = [c for c in cells if c.config["method"] == "oracle"]
        assert oracle
        if grid == "mnist5k-quick.toml":  # regenerated under equal budgets: the oracle runs ODN's per-depth schedule
            assert all(c.config["params"].get("schedule") == "odn" for c in oracle)
        assert keys == {c.key for c in cells if c.config["method"] in ("oracle", "odn")}, grid


def test_schedule_odn_is_a_cell_of_its_own_that_reads_odns_preset_budget(reg):
    default, odn = oracle_cell(reg), oracle_cell(reg, ["oracle.schedule=odn"])
    assert odn.key != default.key and odn.config["params"]["schedule"] == "odn"
    assert not set(BUDGET) & set(odn.config["params"])  # unset: ODN's values for the preset
    assert oracle_cell(reg, ["oracle.schedule=recipe"]).key == default.key
    quick = ODN().preset_defaults("quick", "mnist5k")
    budget = odn_budget(plan.method_params(Oracle(), odn.config["params"]), "quick", "mnist5k")
    assert budget == {"lr": quick["lr"], "max_epochs_per_depth": quick["max_epochs_per_depth"],
                      "lr_decay_factor": 0.6, "lr_decay_patience": quick["lr_decay_patience"],
                      "patience": quick["patience"], "stop_rule": "first", "search_digits": 1}
    assert budget["max_epochs_per_depth"] == 10 and budget["lr_decay_patience"] == 2  # quick's, not the recipe's 12
    # a value set on the oracle wins over ODN's, and enters the key
    capped = oracle_cell(reg, ["oracle.schedule=odn", "oracle.max_epochs_per_depth=20"])
    assert capped.key != odn.key
    assert odn_budget(plan.method_params(Oracle(), capped.config["params"]), "quick", "mnist5k")[
        "max_epochs_per_depth"] == 20


@pytest.mark.parametrize("sets, needle", [
    (["oracle.schedule=odm"], "choose one of: recipe, odn"),
    (["oracle.max_epochs_per_depth=20"], "applies to oracle.schedule=odn only"),
    (["oracle.schedule=odn", "oracle.max_epochs_per_depth=0"], "oracle.max_epochs_per_depth >= 1"),
])
def test_bad_schedule_settings_fail_at_plan_time_with_one_line(reg, sets, needle):
    with pytest.raises(OdnbenchError) as err:
        plan.plan_grid(reg, ["oracle"], ["mnist5k"], ["resnet18"], [0], "quick", sets)
    assert needle in str(err.value) and "\n" not in str(err.value)


def tiny_trainer(cost):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 1, 28, 28, generator=g), torch.randint(0, 10, (32,), generator=g)
    splits = Splits(DatasetInfo("tiny", 1, 28, 10, (0.0,), (1.0,)), Split(x, y), Split(x, y), Split(x, y))
    return Trainer(splits, make_recipe("smoke", {"batch_size": "32"}), torch.device("cpu"), Progress(quiet=True),
                   cost, 0)


def scripted(trainer, values):
    """Validation readings from a script, so the schedule's decisions are known; training is real."""
    readings = iter(values)
    trainer.evaluate = lambda model, split="val": next(readings)
    return trainer


def tiny_depth(reg):
    torch.manual_seed(0)
    return reg.backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=TINY).truncated(1)


def quick_budget():
    return odn_budget({"search_digits": 1}, "quick", "mnist5k")


def test_a_depth_that_keeps_improving_trains_exactly_odns_cap(reg):
    cost = CostMeter()
    budget = quick_budget()
    model = tiny_depth(reg)
    before = [p.detach().clone() for p in model.parameters()]
    trainer = scripted(tiny_trainer(cost), [10.0 + i for i in range(50)])  # rising: never converges
    ran = train_depth_alone(trainer, model, budget, depth=1, threshold=99.0, base_lr=budget["lr"], label="oracle depth 1")
    assert ran["epochs"] == budget["max_epochs_per_depth"] == ODN().preset_defaults("quick", "x")["max_epochs_per_depth"]
    assert ran["stopped"] == "max_epochs" and ran["lr_decays"] == 0 and ran["best_epoch"] == ran["epochs"]
    assert cost.parts["oracle depth 1"]["epochs"] == ran["epochs"]  # every epoch counted under the depth
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # it really trained


def test_the_lr_decays_after_odns_flat_epochs_and_patience_ends_the_depth(reg):
    budget = quick_budget()
    trainer = scripted(tiny_trainer(CostMeter()), [50.0] * 20)  # one improvement, then flat
    ran = train_depth_alone(trainer, tiny_depth(reg), budget, depth=1, threshold=99.0, base_lr=0.1,
                            label="oracle depth 1")
    lrs = [h["lr"] for h in ran["history"]]
    flat = budget["lr_decay_patience"]  # quick: 2 epochs without improvement, then LR x 0.6
    assert lrs[:flat + 1] == [0.1] * (flat + 1)
    assert lrs[flat + 1] == pytest.approx(0.1 * budget["lr_decay_factor"])
    assert ran["stopped"] == "patience" and ran["epochs"] == 1 + budget["patience"]


def test_the_first_epoch_reaching_the_threshold_ends_the_depth_as_in_odns_search(reg):
    trainer = scripted(tiny_trainer(CostMeter()), [90.0, 97.04, 97.06, 99.0])
    ran = train_depth_alone(trainer, tiny_depth(reg), quick_budget(), depth=1, threshold=97.1, base_lr=0.1,
                            label="oracle depth 1")
    # 97.06 reads as 97.1 at search_digits=1, as ODN reads it: the depth ends there (stop_rule=first)
    assert ran["stopped"] == "threshold" and ran["epochs"] == 3 and ran["best_val_raw"] == 97.06


@pytest.mark.slow
def test_a_real_oracle_cell_with_schedule_odn_records_the_budget_it_ran(tmp_path):
    from odnbench import harness
    from odnbench.registry import get_registry

    reg = get_registry(reload=True)
    grid = plan.plan_grid(reg, ["oracle"], ["mnist5k"], ["resnet18"], [0], "smoke",
                          ["oracle.schedule=odn", "oracle.max_depth=2", "oracle.target=99.9"])
    done = harness.run_grid(reg, grid, tmp_path, data_dir=tmp_path / "data", progress=Progress(quiet=True))
    assert not done.failed, [r.error for r in done.failed]
    r = next(r for r in done.results if r.method == "oracle")
    info = r.method_info
    smoke = ODN().preset_defaults("smoke", "mnist5k")
    assert info["schedule"] == "odn" and info["budget"]["max_epochs_per_depth"] == smoke["max_epochs_per_depth"]
    assert info["budget"]["lr"] == r.config["recipe"]["lr"]  # smoke sets no odn.lr: the recipe's, as ODN
    # an unreachable target: both depths train, each to ODN's cap, and the cell says it was cut short
    assert [(d["depth"], d["epochs"], d["stopped"]) for d in info["depths"]] == [(1, 1, "max_epochs"), (2, 1, "max_epochs")]
    assert r.facts.converged is False and "depth(s) 1, 2 hit max_epochs_per_depth" in r.facts.cut_short
    assert r.cost["own"]["epochs"] == 2 and r.facts.reached_target is False and r.facts.depth == 2

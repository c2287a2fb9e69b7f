"""Board labels show only the parameters that shaped the model (issue 33): a method states in
``Facts.unused_params`` which parameters of its config it did not use (prune's ratio when match
chose how far to prune), and the board's label leaves them out; records without the field are
labelled as before."""

from __future__ import annotations

import json

import pytest
from conftest import copy_cells

from odnbench import PROTOCOL_VERSION, Facts, Result
from odnbench.report import boards as lb
from odnbench.result import schema_problems

PRUNE_DEFAULTS = {"ratio": 0.5, "match": None, "target": None, "steps": 5}


def result(method, seed, top1, params=None, unused=None, defaults=None):
    config = {"protocol": PROTOCOL_VERSION, "method": method, "params": params or {}, "dataset": "d",
              "backbone": "b", "input": {}, "seed": seed, "preset": "quick", "recipe": {"epochs": 1}}
    return Result(status="ok", key=f"{method}{json.dumps(params)}{seed}", config=config,
                  metrics={"top1": top1, "size_mb": 1.0, "macs": 1000, "params": 100},
                  facts=Facts(unused_params=unused), defaults=defaults or {},
                  cost={"own": {"epochs": 1, "sample_steps": 10, "train_seconds": 1.0}}, env={"device": "cpu"})


def prune(seed, ratio, match=None, unused=None):
    return result("prune", seed, 95.0 + ratio, {**PRUNE_DEFAULTS, "ratio": ratio, "match": match}, unused,
                  PRUNE_DEFAULTS)


def labels(results):
    (board,) = lb.build_boards(results)
    return sorted(row.label for row in board.rows)


def sweep_and_matched(unused_by_seed):
    """full, a prune ratio sweep (0.3, 0.5, 0.7) and a prune row matched to a size, seeds 0 and 1."""
    rs = []
    for seed in (0, 1):
        rs.append(result("full", seed, 98.0))
        rs += [prune(seed, ratio) for ratio in (0.3, 0.5, 0.7)]
        rs.append(prune(seed, 0.5, "odn:size", unused_by_seed[seed]))
    return rs


def test_a_matched_row_leaves_out_the_ratio_matching_did_not_use():
    assert labels(sweep_and_matched({0: ["ratio"], 1: ["ratio"]})) == sorted([
        "full", "prune (match=odn:size)", "prune (match=none, ratio=0.3)", "prune (match=none, ratio=0.5)",
        "prune (match=none, ratio=0.7)"])


def test_records_without_the_field_keep_todays_label():
    assert labels(sweep_and_matched({0: None, 1: None})) == sorted([
        "full", "prune (match=none, ratio=0.3)", "prune (match=none, ratio=0.5)", "prune (match=none, ratio=0.7)",
        "prune (match=odn:size, ratio=0.5)"])


@pytest.mark.parametrize("unused", [{0: ["ratio"], 1: None}, {0: ["ratio"], 1: ["steps"]}, {0: None, 1: ["ratio"]}])
def test_seeds_that_disagree_keep_the_parameter(unused):
    assert "prune (match=odn:size, ratio=0.5)" in labels(sweep_and_matched(unused))


def test_a_ratio_only_matched_rows_carry_does_not_make_the_sweep_rows_vary():
    """One ratio row at the default and a matched row set to another ratio it did not use: the
    ratio row stays plain, as if the matched row had left ratio at its default."""
    rs = [result("full", 0, 98.0), prune(0, 0.5), prune(0, 0.3, "odn:size", ["ratio"])]
    assert labels(rs) == ["full", "prune (match=none)", "prune (match=odn:size)"]
    rs[-1].facts.unused_params = None
    assert labels(rs) == ["full", "prune (match=none, ratio=0.5)", "prune (match=odn:size, ratio=0.3)"]


def test_rows_that_would_share_a_label_keep_the_parameters_that_tell_them_apart():
    """A grid sweeping ratio and match makes matched cells that differ only by the unused ratio."""
    rs = [result("full", 0, 98.0), prune(0, 0.3, "odn:size", ["ratio"]), prune(0, 0.7, "odn:size", ["ratio"])]
    assert labels(rs) == ["full", "prune (match=odn:size, ratio=0.3)", "prune (match=odn:size, ratio=0.7)"]


def test_unused_params_is_checked_when_present(tmp_path):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "results.md").read_text()
    example = json.loads(re.findall(r"```json\n(.*?)```", doc, re.S)[0])
    assert schema_problems(example) == []  # null: a record without the statement
    example["facts"]["unused_params"] = ["ratio"]
    assert schema_problems(example) == []
    example["facts"]["unused_params"] = "ratio"
    assert any("facts.unused_params is str" in p for p in schema_problems(example))
    example["facts"]["unused_params"] = ["ratio", 3]
    assert any("facts.unused_params" in p and "parameter names" in p for p in schema_problems(example))


@pytest.mark.slow
def test_prune_matched_on_the_smoke_preset_stores_ratio_as_unused(smoke_full_results, tmp_path, reg):
    """A real prune cell (mnist5k, resnet18, smoke preset) matched to an explicit parameter count
    (half of full's): its stored facts say ratio did not shape the model, and its board label
    leaves ratio out."""
    from odnbench import harness, plan
    from odnbench.progress import Progress

    results = copy_cells(smoke_full_results, tmp_path / "results", seeds=(0,))
    [full] = [json.loads((p / "result.json").read_text()) for p in results.iterdir()]
    target = full["metrics"]["params"] // 2
    grid = plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "smoke",
                          ["prune.match=params", f"prune.target={target}"])
    report = harness.run_grid(reg, grid, results, data_dir=smoke_full_results / "data", download=False,
                              progress=Progress(quiet=True))
    assert not report.failed
    [stored] = [json.loads((p / "result.json").read_text()) for p in results.glob("prune-*")]
    assert stored["status"] == "ok" and stored["config"]["params"]["match"] == "params"
    assert "ratio" in stored["facts"]["unused_params"]
    assert schema_problems(stored) == []
    assert stored["metrics"]["params"] <= target  # matching, not the ratio, set how far it pruned
    labels = [row.label for board in lb.build_boards(lb.load_results(results)) for row in board.rows
              if row.method == "prune"]
    assert len(labels) == 1 and "match=params" in labels[0] and "ratio=" not in labels[0]


@pytest.mark.slow
def test_slim_and_blockdrop_matched_on_the_smoke_preset_store_what_matching_overrode(smoke_full_results, tmp_path,
                                                                                      reg):
    """slim's width and blockdrop's keep do not shape a matched model; unmatched, nothing is unused."""
    from odnbench import harness, plan
    from odnbench.progress import Progress

    results = copy_cells(smoke_full_results, tmp_path / "results", seeds=(0,))
    [full] = [json.loads((p / "result.json").read_text()) for p in results.iterdir()]
    params = full["metrics"]["params"]
    for sets in (["slim.match=params", f"slim.target={params // 2}", "blockdrop.match=params",
                  f"blockdrop.target={params * 9 // 10}"], ["slim.width=0.5", "blockdrop.keep=6"]):
        grid = plan.plan_grid(reg, ["slim", "blockdrop"], ["mnist5k"], ["resnet18"], [0], "smoke", sets)
        report = harness.run_grid(reg, grid, results, data_dir=smoke_full_results / "data", download=False,
                                  progress=Progress(quiet=True))
        assert not report.failed, [r.error for r in report.failed]
    stored = {}
    for p in results.glob("*/result.json"):
        d = json.loads(p.read_text())
        stored[d["config"]["method"], d["config"]["params"].get("match")] = d
    assert stored["slim", "params"]["facts"]["unused_params"] == ["width"]
    assert stored["blockdrop", "params"]["facts"]["unused_params"] == ["keep"]
    assert stored["slim", None]["facts"]["unused_params"] is None
    assert stored["blockdrop", None]["facts"]["unused_params"] is None
    assert all(schema_problems(d) == [] for d in stored.values())


def test_the_depth_search_row_is_the_one_closest_to_its_defaults_not_the_shortest_label():
    """Two odn rows: the paper's fixed target (two parameters set) happens to have the shorter label;
    the Δ-vs column still compares against the row that keeps odn's defaults."""
    defaults = {"target": None, "target_mode": "auto"}
    rs = []
    for seed in (0, 1):
        rs.append(result("full", seed, 98.0))
        rs.append(result("odn", seed, 97.0, dict(defaults), defaults=defaults))
        rs.append(result("odn", seed, 96.0, {"target": 9, "target_mode": "fixed"}, defaults=defaults))
    (board,) = lb.build_boards(rs)
    fixed = next(r for r in board.rows if r.params_config.get("target_mode") == "fixed")
    assert len(fixed.label) < len(board.search.label)  # the old rule (shortest label) would pick it
    assert board.search.params_config == defaults
    assert lb.stats_of(fixed).search == board.search.label


def test_an_epoch_budget_every_row_of_a_method_shares_is_stated_once_not_in_its_labels():
    """A grid sets odn's per-depth cap and fine-tune cap on both odn rows: the labels keep what tells
    the rows apart (the target), the board's budget line and the terminal summary state the caps; a
    cap that differs between rows still labels them."""
    from odnbench.report.sections import measured_line
    from odnbench.report.terminal import summary

    defaults = {"target": None, "max_epochs_per_depth": 10, "finetune_max_epochs": 6}
    caps = {"max_epochs_per_depth": 30, "finetune_max_epochs": 30}
    rs = []
    for seed in (0, 1):
        rs.append(result("full", seed, 98.0, {"epochs": 30}, defaults={"epochs": 12}))
        rs.append(result("odn", seed, 97.0, {"target": None, **caps}, defaults=defaults))
        rs.append(result("odn", seed, 96.0, {"target": 9, **caps}, defaults=defaults))
        rs += [result("slim", seed, 95.0, {"width": 0.5, "epochs": e}, defaults={"width": 1, "epochs": 12})
               for e in (5, 20)]
    assert labels(rs) == sorted(["full", "odn (target=9)", "odn (target=none)", "slim (epochs=5, width=0.5)",
                                 "slim (epochs=20, width=0.5)"])
    (board,) = lb.build_boards(rs)
    budgets = measured_line(board)  # the page's budget line
    assert ("full: epochs 30; odn: finetune\\_max\\_epochs 30, max\\_epochs\\_per\\_depth 30; "
            "slim: epochs 20 | epochs 5") in budgets  # in the order of the rows' stored configs
    assert board.label_budgets == {"full": {"epochs": 30}, "odn": caps}  # set away from the defaults: said once
    text = " ".join(summary([board], "b.md", width=100).split())
    assert ("set on every row of its method, so not in the labels: full epochs=30; odn finetune_max_epochs=30, "
            "max_epochs_per_depth=30") in text

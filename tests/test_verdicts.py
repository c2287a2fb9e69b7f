"""Verdicts a reviewer accepts: paired intervals over seeds, tie groups, one-seed boards without an
interval, unreliable latency, the unconverged-reference warning and the compact tables (no training:
hand-made results with known numbers)."""

from __future__ import annotations

import math

import pytest

from odnbench.report import boards as lb
from odnbench.report import markdown as md
from odnbench.report import stats, terminal
from odnbench.result import Result


def result(method, seed, top1, *, macs=1_000_000, size_mb=1.0, latency=None, converged=None, train_macs=None):
    lat = latency or {"p50": 1.0, "p90": 1.02, "windows_ms": [1.0, 1.01, 1.02], "batch_size": 1, "threads": 1,
                      "device": "cpu"}
    cost = {"epochs": 3, "sample_steps": 300, "train_seconds": 3.0, "device": "cpu"}
    if train_macs is not None:
        cost.update(train_macs=train_macs, own={"epochs": 3, "sample_steps": 300, "train_seconds": 3.0,
                                                "train_macs": train_macs})
    return Result.from_dict({
        "status": "ok", "key": f"{method}{seed}", "schema": 3,
        "config": {"method": method, "dataset": "d", "backbone": "b", "preset": "quick", "seed": seed, "params": {}},
        "metrics": {"top1": top1, "val_top1": top1, "params": 1000, "size_mb": size_mb, "size_mib": size_mb,
                    "macs": macs, "flops": 2 * macs, "latency_ms": lat},
        "cost": cost, "env": {"device": "cpu"}, "facts": {"converged": converged},
    })


def board_of(rows: dict[str, list[float]], **kw):
    [board] = lb.build_boards([result(m, s, t, **kw.get(m, {})) for m, tops in rows.items()
                               for s, t in enumerate(tops)])
    return board, {r.method: r.stats for r in board.rows}


def test_paired_interval_on_known_numbers():
    # differences 1.0, -0.5, 1.0: mean 0.5, sd sqrt(0.75), se 0.5, t(0.975, 2) = 4.3027 -> ± 2.15135
    d = stats.paired({0: 98.0, 1: 97.0, 2: 99.0}, {0: 97.0, 1: 97.5, 2: 98.0, 3: 50.0})  # seed 3 has no pair
    assert d.n == 3 and d.seeds == (0, 1, 2) and d.mean == pytest.approx(0.5)
    assert (d.low, d.high) == (pytest.approx(0.5 - 2.15135), pytest.approx(0.5 + 2.15135))
    assert d.includes_zero and not d.significant
    tight = stats.paired({0: 2.0, 1: 3.0}, {0: 1.0, 1: 1.5})  # 1.0, 1.5: mean 1.25, se 0.25, t(1) 12.7062
    assert (tight.low, tight.high) == (pytest.approx(1.25 - 3.17655), pytest.approx(1.25 + 3.17655))
    one = stats.paired({0: 2.0}, {0: 1.0})
    assert one.n == 1 and one.mean == 1.0 and not one.exists and one.includes_zero  # no interval: never "better"
    assert stats.t975(2) == 4.3027 and stats.t975(30) == 2.0423
    assert stats.t975(60) == pytest.approx(2.0003, abs=2e-4) and stats.t975(1000) == pytest.approx(1.9623, abs=2e-4)
    with pytest.raises(ValueError):
        stats.t975(0)


def test_ties_are_grouped_when_intervals_overlap():
    board, rows = board_of({
        "full": [90.0, 91.0, 92.0],
        "a": [90.1, 91.2, 92.0],  # +0.1 ± a little: not separable from the top -> shares rank 1
        "b": [89.9, 90.9, 92.1],
        "c": [85.0, 86.1, 87.0],  # 5 points below on every seed: separated, leads group 4
        "d": [85.2, 85.9, 87.1],  # tied with c
    })
    assert [r.method for r in board.rows] == ["a", "full", "b", "d", "c"]
    assert [rows[m].tie_rank for m in ("a", "full", "b", "d", "c")] == [1, 1, 1, 4, 4]
    assert all(rows[m].tied for m in rows)
    assert rows["a"].verdict == "not distinguishable from full"  # mean above full, but the interval holds 0
    assert rows["c"].verdict == "worse than full" and rows["c"].delta_ci[1] < 0
    text = md.render_markdown([board], "res")
    assert "| 1= a |" in text and "| 4= d |" in text and "paired t-interval over n=3 seeds" in text
    assert ("Significant differences from full on this board after Holm: d worse than full (Holm p=0.00096); "
            "c worse than full (Holm p=0.00018) (2 before the adjustment)." in text)
    assert "Holm's step-down over this board's family of 4 contrasts" in text
    # separated rows each lead their own group, unmarked
    _, apart = board_of({"full": [90.0, 91.0, 92.0], "x": [80.0, 81.1, 82.0]})
    assert (apart["full"].tie_rank, apart["full"].tied, apart["x"].tie_rank, apart["x"].tied) == (1, False, 2, False)


def test_target_is_decided_on_the_interval():
    board, rows = board_of({
        "full": [90.0, 91.0, 92.0],
        "in": [89.5, 90.5, 91.5],  # −0.5 exactly: interval [−0.5, −0.5] ≥ −1.75
        "out": [87.0, 88.0, 89.0],  # −3
        "astride": [88.0, 91.0, 90.0],  # mean −1.33, wide interval across −1.75
    })
    assert (rows["in"].meets_target_verdict, rows["out"].meets_target_verdict) == ("yes", "no")
    assert rows["astride"].meets_target_verdict == "undecided" and rows["astride"].meets_target is None
    assert rows["astride"].delta_ci[0] < -1.75 < rows["astride"].delta_ci[1]


def test_one_seed_board_prints_no_interval():
    board, rows = board_of({"full": [90.0], "a": [91.0], "b": [80.0]})
    assert all(r.top1_ci is None for r in rows.values()) and rows["a"].delta_ci is None
    assert rows["a"].verdict == "n=1, no interval" and rows["b"].meets_target_verdict == "undecided"
    assert [rows[m].tie_rank for m in ("a", "full", "b")] == [1, 1, 1]  # nothing separates one seed
    text = md.render_markdown([board], "res")
    main = text.split("### Details")[0]
    assert "± 0.00" not in main and "91.00 (n=1, no interval)" in main and "+1.00 (n=1, no interval)" in main
    assert "Significant differences from full on this board after Holm: none" in text
    out = terminal.summary([board], "x", width=100)
    assert "±0.00" not in out and "n=1" in out


def test_busy_or_spread_latency_shows_as_unreliable():
    busy = {"p50": 1.0, "p90": 2.0, "windows_ms": [1.0, 1.1, 2.0], "batch_size": 1, "threads": 1, "device": "cpu"}
    spread = {"p50": 1.0, "p90": 1.05, "windows_ms": [0.9, 1.0, 1.05, 1.0, 1.4], "batch_size": 1, "threads": 1,
              "device": "cpu", "spread": 0.5}
    board, rows = board_of({"full": [90.0, 91.0], "b": [89.0, 90.0], "s": [89.0, 90.0], "ok": [89.0, 90.0]},
                           b={"latency": busy, "macs": 500_000}, s={"latency": spread, "macs": 250_000})
    assert rows["ok"].measured_speedup_reliable
    assert not rows["b"].measured_speedup_reliable and "busy" in rows["b"].latency_unreliable_reason
    assert not rows["s"].measured_speedup_reliable and "1.56× > 1.5×" in rows["s"].latency_unreliable_reason
    for name, x in (("b", "2.00×"), ("s", "4.00×")):
        cells = md.cells(rows[name])
        assert cells["measured_speedup"] == "_unreliable_" and cells["macs_speedup"] == x  # MACs speed-up stays
    assert md.cells(rows["ok"])["measured_speedup"] == "1.00×"
    assert "_unreliable_: the measured speed-up is withheld" in md.render_markdown([board], "res")
    # a busy baseline makes every row's measured speed-up unreliable
    _, rows = board_of({"full": [90.0, 91.0], "a": [89.0, 90.0]}, full={"latency": busy})
    assert not rows["a"].measured_speedup_reliable and "baseline" in rows["a"].latency_unreliable_reason


def test_an_unconverged_reference_marks_every_delta():
    board, rows = board_of({"full": [90.0, 91.0], "a": [89.0, 90.5]}, full={"converged": False})
    assert "2/2 seeds" in rows["a"].reference_cut_short
    text = md.render_markdown([board], "res")
    assert "| −" not in text and md.cells(rows["a"])["delta_ci"].endswith("⚠")
    assert "**Reference not converged:**" in text
    _, fine = board_of({"full": [90.0, 91.0], "a": [89.0, 90.5]}, full={"converged": True})
    assert fine["a"].reference_cut_short is None and "⚠" not in md.cells(fine["a"])["delta_ci"]


def test_compute_cost_is_shown_and_missing_compute_says_so():
    _, rows = board_of({"full": [90.0, 91.0], "a": [89.0, 90.5], "old": [88.0, 89.0]},
                           full={"train_macs": 6_000_000_000_000}, a={"train_macs": 2_500_000_000_000})
    assert rows["a"].cost_train_macs == 2.5e12 and rows["old"].cost_train_macs is None
    assert md.cells(rows["a"])["compute"] == "2.50 T" and md.cells(rows["old"])["compute"] == "not recorded"


@pytest.mark.parametrize("width", [100, 80])
def test_compact_tables_fit(width):
    board, _ = board_of({"full": [97.53, 97.1, 98.0], "prune (match=odn:size, pruner=group-norm, reg=0.0005)":
                         [96.93, 95.0, 97.0], "odn": [97.5, 96.2, 98.8]}, full={"converged": False})
    out = terminal.summary([board], "/some/where/leaderboard.md", width=width)
    assert max(len(line) for line in out.splitlines()) <= width
    lines = out.splitlines()
    for row in board.rows:  # numbers stay whole: each mean and its half-width on a line of their own
        f = row.stats
        assert any(f"{f.top1_mean:.2f}" in ln for ln in lines)
        assert any(f"±{(f.top1_ci[1] - f.top1_ci[0]) / 2:.2f}" in ln for ln in lines)
    assert "Con-" in out and "verged" in out and "/some/where/leaderboard.md" in lines[-1]
    head = md.markdown_table([md.cells(r.stats) for r in board.rows], md.MAIN_COLUMNS).splitlines()[0]
    assert head.count("|") - 1 <= 9  # the page's main table: at most 9 columns
    assert not math.isnan(board.rows[0].stats.top1_mean)


def test_the_quick_reference_trains_past_the_shared_cap(reg):
    """quick: full's epoch cap and patience are its own (so that patience can end it); smoke and paper
    cells keep the recipe's, and their keys (the new parameters are left out at their defaults)."""
    from odnbench import plan
    from odnbench_plugins.full import QUICK

    quick = plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "quick")
    [full] = [c for c in quick.cells if c.config["method"] == "full"]
    assert full.config["params"] == QUICK and QUICK["epochs"] > full.config["recipe"]["epochs"]
    smoke = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke")
    assert smoke.cells[0].config["params"] == {}
    assert plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke",
                          ["full.epochs=3"]).cells[0].config["params"] == {"epochs": 3}


def test_row_fields_is_a_deprecated_view_of_the_typed_row():
    board, _ = board_of({"full": [90.0, 91.0], "a": [89.0, 90.5]})
    row = board.rows[0]
    with pytest.warns(DeprecationWarning, match="row.stats"):
        old = row.fields
    assert old["top1_mean"] == row.stats.top1_mean and old["rank"] == 1
    with pytest.raises(AttributeError):
        row.stats.top1_maen  # noqa: B018 (a misspelt name fails instead of rendering "–")

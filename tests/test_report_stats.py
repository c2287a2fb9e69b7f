"""Multiplicity (Holm), the paired Δ vs the depth search and the detectable difference a board prints,
on made-up p-values and hand-built results (no training)."""

from __future__ import annotations

import json
import math

import pytest

from odnbench import PROTOCOL_VERSION, Facts, Result
from odnbench.report import boards as lb
from odnbench.report import stats
from odnbench.report.sections import statistics_note


def test_holm_steps_down_and_keeps_the_adjusted_p_values_monotone():
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "none": None})
    # sorted 0.01, 0.03, 0.04 times 3, 2, 1 -> 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert adjusted == {"a": pytest.approx(0.03), "c": pytest.approx(0.06), "b": pytest.approx(0.06), "none": None}
    # significant uncorrected (0.04 < 0.05) but not after Holm over the family of 3
    assert 0.04 < stats.ALPHA <= adjusted["b"]
    assert stats.holm({"x": 0.6, "y": 0.7}) == {"x": 1.0, "y": 1.0}  # capped at 1, then kept monotone


def test_a_printed_p_value_never_rounds_across_alpha():
    # "worse than full (Holm p=0.05)" would contradict its own verdict: 0.0499 keeps the digits that show it is below
    from odnbench.report.columns import fmt_holm, fmt_p

    assert fmt_p(0.0499) == "0.0499" and fmt_p(0.04951) == "0.0495"
    assert fmt_p(0.0449) == "0.045" and fmt_p(0.014) == "0.014" and fmt_p(1.0) == "1"
    assert fmt_p(0.0502) == "0.05"  # not below alpha, and "0.05" does not claim it is
    assert fmt_holm(0.0499) == " (Holm p=0.0499)" and fmt_holm(None) == ""


def test_the_p_value_agrees_with_the_interval():
    # df = 2 has a closed form: P(|T| >= t) = 1 - t / sqrt(2 + t^2)
    assert stats.t_two_sided_p(2.5, 2) == pytest.approx(1 - 2.5 / math.sqrt(2 + 2.5**2))
    assert stats.t_two_sided_p(stats.t975(10), 10) == pytest.approx(0.05, abs=1e-4)
    diff = stats.paired({0: 1.0, 1: 1.2, 2: 0.9}, {0: 0.0, 1: 0.0, 2: 0.0})
    assert diff.significant and stats.p_value(diff) < 0.05
    edge = stats.paired({0: 0.30, 1: 0.10, 2: 0.20}, {0: 0.0, 1: 0.0, 2: 0.0})  # t = 0.2 / (0.1/√3) = 3.46
    assert stats.p_value(edge) == pytest.approx(1 - 3.4641 / math.sqrt(2 + 3.4641**2), abs=1e-4)


def test_detectable_difference_by_hand():
    # (t(0.975, 2) + t(0.80, 2)) * sd / sqrt(3) = (4.3027 + 1.0607) * 0.3 / 1.7321
    assert stats.detectable_difference(3, 0.3) == pytest.approx((4.3027 + 1.0607) * 0.3 / math.sqrt(3))
    assert stats.detectable_difference(3, 0.3) == pytest.approx(0.929, abs=1e-3)
    assert stats.detectable_difference(10, 0.3) == pytest.approx((2.2622 + 0.8834) * 0.3 / math.sqrt(10))
    assert stats.detectable_difference(1, 0.3) is None and stats.detectable_difference(3, None) is None


def result(method, seed, top1, size=1.0, role=None, **facts):
    config = {"protocol": PROTOCOL_VERSION, "method": method, "params": {}, "dataset": "d", "backbone": "b",
              "input": {}, "seed": seed, "preset": "quick", "recipe": {"epochs": 1}}
    return Result(status="ok", key=f"{method}{seed}", config=config, role=role,
                  metrics={"top1": top1, "size_mb": size, "macs": int(size * 1e6), "params": int(size * 1e5)},
                  facts=Facts(**facts), cost={"own": {"epochs": 1, "sample_steps": 10, "train_seconds": 1.0}},
                  env={"device": "cpu"}, method_info={})


def _family_board():
    """full, odn and four rows: 'near' is 0.9–1.1 points below full on every seed (significant even after
    Holm), 'edge' 0.40–0.60 below (p ≈ 0.02 alone, not after Holm over 5), the other two noise."""
    base = {0: 98.0, 1: 97.0, 2: 98.5}
    rs = [result("full", s, t, 3.0, role="baseline") for s, t in base.items()]
    rs += [result("odn", s, t - 0.5 + 0.1 * s, 0.4, role="depth-search") for s, t in base.items()]
    rs += [result("near", s, t - (0.9, 1.1, 1.0)[s]) for s, t in base.items()]
    rs += [result("edge", s, t - (0.60, 0.40, 0.52)[s]) for s, t in base.items()]
    rs += [result("noise1", s, t + (0.5, -0.7, 0.3)[s]) for s, t in base.items()]
    rs += [result("noise2", s, t + (-0.4, 0.6, -0.1)[s]) for s, t in base.items()]
    return lb.build_boards(rs)[0]


def test_verdicts_ranks_and_the_page_use_holm_over_the_boards_family():
    b = _family_board()
    rows = {r.method: r.stats for r in b.rows}
    assert b.family_size == 5  # every row but the baseline
    edge = rows["edge"]
    assert edge.delta_ci[1] < 0 and edge.delta_p < stats.ALPHA  # significant alone
    assert edge.delta_p_holm >= stats.ALPHA and edge.verdict == "not distinguishable from full"
    assert rows["near"].delta_p_holm < stats.ALPHA and rows["near"].verdict == "worse than full"
    # ranks: 'edge' is not separated from the group's leader at α/m, 'near' may be; never a verdict they contradict
    assert rows["edge"].tie_rank == rows["full"].tie_rank
    note = statistics_note(b)
    assert "Holm's step-down over this board's family of 5 contrasts" in note
    assert "near worse than full" in note and "edge worse" not in note


def test_a_paired_delta_vs_the_depth_search_is_beside_delta_vs_the_baseline():
    b = _family_board()
    assert b.search is not None and b.search_name == "odn" and b.search_family_size == 5
    rows = {r.method: r.stats for r in b.rows}
    # near − odn per seed: (−0.9 + 0.5, −1.1 + 0.4, −1.0 + 0.3) = (−0.4, −0.7, −0.7)
    assert rows["near"].delta_vs_search == pytest.approx(-0.6) and rows["near"].delta_search_n == 3
    assert rows["near"].delta_search_p_holm is not None
    assert rows["odn"].verdict_vs_search == "reference" and rows["full"].delta_vs_search == pytest.approx(0.4)
    from odnbench.report.columns import BY_KEY
    assert BY_KEY["delta_search"].header(b).startswith("Δ vs odn")
    assert BY_KEY["delta_search"].markdown(rows["near"]).startswith("-0.60 ± ")
    json.dumps(lb.__name__)  # (the module imports cleanly with the new fields)


def test_the_boards_detectable_difference_is_the_hand_computed_one():
    b = _family_board()
    vs_full, vs_odn = lb.detectable(b)
    assert (vs_full["reference"], vs_odn["reference"]) == ("full", "odn")
    # paired sds of (row − full) over the 3 seeds, by hand; the board uses their median
    import statistics as st
    sds = [st.stdev(d) for d in ([-0.5, -0.4, -0.3], [-0.9, -1.1, -1.0], [-0.60, -0.40, -0.52],
                                 [0.5, -0.7, 0.3], [-0.4, 0.6, -0.1])]
    assert vs_full["rows"] == 5 and vs_full["paired_sd"] == pytest.approx(st.median(sds))
    assert vs_full["detectable_points"] == pytest.approx((4.3027 + 1.0607) * st.median(sds) / math.sqrt(3))
    from odnbench.report.sections import View, _power
    line = _power(b, View(2, False))[0]
    assert f"**{vs_full['detectable_points']:.2f} points vs full** (n = 3 seeds" in line and "80 % power" in line


def test_every_page_says_what_was_measured_from_the_records():
    rs = []
    for seed in (0, 1, 2):
        for method, role, converged in (("full", "baseline", True), ("odn", "depth-search", False),
                                        ("kd", None, seed != 0)):
            r = result(method, seed, 97.0 + seed / 10, 0.4, role=role, converged=converged)
            r.config["input"] = {"width": "16,32,64,128"}
            r.config["recipe"] = {"epochs": 12, "patience": 4, "schedule": "cosine", "train_limit": 6000}
            r.config["params"] = {"epochs": 30} if method == "full" else {
                "max_epochs_per_depth": 10, "target": None} if method == "odn" else {}
            r.data = {"sizes": {"train": 6000, "val": 1000, "test": 10000}}
            r.metrics["params"] = 701178 if method == "full" else 5000
            rs.append(r)
    b = lb.build_boards(rs)[0]
    assert lb.width_scale("resnet18", "16,32,64,128") == "¼" and lb.width_scale("vit", "16,32,64,128") is None
    assert b.title.startswith("b (16-32-64-128), 701,178 parameters, d 6,000 train")
    m = b.caption["measured"]
    assert m["full_params"] == [701178] and m["images"] == {"train": [6000], "val": [1000], "test": [10000]}
    assert (m["cells"], m["cut_short"]) == (9, 4) and m["epoch_budgets"]["full"][0]["epochs"] == 30
    from odnbench.report.sections import board_document, measured_line
    line = measured_line(b)
    assert "stage widths 16-32-64-128" in line and "701,178 parameters" in line
    assert "6,000 training, 1,000 validation, 10,000 test images" in line
    assert "**4 of 9 cells (44 %) were cut short**" in line and "full: epochs 30" in line
    assert "odn: max\\_epochs\\_per\\_depth 10" in line and "not the paper's recipe" in line
    assert board_document(b)["caption"]["measured"]["cut_short"] == 4


def test_plots_colour_each_method_the_same_on_every_board_and_draw_95_percent_intervals():
    from odnbench.report import plots

    a = _family_board()
    rs = [result("full", s, 90.0 + s, 3.0, role="baseline") for s in (0, 1)]
    rs += [result("odn", s, 89.0 + s, 0.4, role="depth-search") for s in (0, 1)]
    rs += [result(m, s, 88.0 + s, 1.0) for m in ("near", "edge", "noise1", "noise2") for s in (0, 1)]
    b = lb.build_boards(rs)[0]
    sa, sb = plots.row_styles(a), plots.row_styles(b)
    assert sa == sb  # the same methods: the same colour and marker, whatever their numbers
    assert len({colour for colour, _ in sa.values()}) == len(sa)  # no two methods share a colour
    assert plots.shade("#1f77b4", 0) == "#1f77b4" and plots.shade("#1f77b4", 1) != "#1f77b4"
    assert plots.ci_half(0.3, 3) == pytest.approx(4.3027 * 0.3 / math.sqrt(3)) and plots.ci_half(None, 1) == 0.0
    png = plots.pareto_png(a, "size_mb", "Size")
    assert png.startswith(b"\x89PNG")

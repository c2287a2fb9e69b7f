"""Trade-off curves: the oracle's selection rule, ODN's and the oracle's per-depth points measured by
the harness, the stored record (schema 4), and what a board derives from them (families, Pareto
front, accuracy at matched size, oracle vs ODN)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from odnbench import PROTOCOL_VERSION, Facts, Result
from odnbench.errors import OdnbenchDeprecationWarning
from odnbench.report import boards as lb
from odnbench.report import curves
from odnbench.result import SCHEMA_VERSION, schema_problems
from odnbench_plugins.oracle import pick_depth

# ------------------------------------------------------------------------------ oracle rule


@pytest.mark.parametrize("vals, threshold, expected", [
    ([(1, 90.0), (2, 96.0), (3, 97.5), (4, 98.0)], 97.45, (3, True)),  # the shallowest that reaches it
    ([(1, 90.0), (2, 97.46), (3, 97.1), (4, 98.0)], 97.45, (2, True)),  # not the best one, the shallowest
    ([(1, 90.0), (2, 97.44), (3, 97.0)], 97.45, (3, False)),  # 97.44 reads 97.4 < 97.45; none: the deepest
    ([(1, 97.449), (2, 99.0)], 97.4, (1, True)),  # rounded to 0.1 as ODN reads it: 97.4 >= 97.4
    ([(3, 99.0), (1, 50.0), (2, 98.0)], 97.0, (2, True)),  # order of the list does not matter
])
def test_the_oracle_picks_the_shallowest_depth_within_the_threshold(vals, threshold, expected):
    assert pick_depth(vals, threshold) == expected


def test_the_oracle_rule_reads_values_to_the_given_digits():
    assert pick_depth([(1, 97.449), (2, 99.0)], 97.45, digits=1) == (2, True)
    assert pick_depth([(1, 97.449), (2, 99.0)], 97.45, digits=2) == (1, True)
    with pytest.raises(ValueError):
        pick_depth([], 90.0)


def test_the_oracle_shares_odns_threshold_defaults(reg):
    from odnbench.plan import resolve_params

    for preset in ("quick", "smoke", "paper"):
        odn = resolve_params(reg, "odn", preset, "mnist", {})
        oracle = resolve_params(reg, "oracle", preset, "mnist", {})
        for name in ("target", "tolerance", "target_mode", "relative_tolerance", "search_digits"):
            assert oracle[name] == odn[name], (preset, name)


def test_oracle_range_is_checked_at_plan_time(reg):
    from odnbench import plan
    from odnbench.errors import OdnbenchError

    with pytest.raises(OdnbenchError, match="oracle.max_depth=2 is below oracle.min_depth=3"):
        plan.plan_grid(reg, ["oracle"], ["mnist5k"], ["resnet18"], [0], "smoke",
                       ["oracle.min_depth=3", "oracle.max_depth=2"])


# ------------------------------------------------------------------------------ smoke runs


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory):
    """odn and oracle (depths 1-3; 4 with train_all=false stopping early) on the smoke preset."""
    from odnbench import harness, plan
    from odnbench.progress import Progress
    from odnbench.registry import get_registry

    root = tmp_path_factory.mktemp("curves")
    reg = get_registry(reload=True)
    grid = plan.plan_grid(reg, ["odn", "oracle"], ["mnist5k"], ["resnet18"], [0], "smoke",
                          ["oracle.max_depth=3", "recipe.epochs=1"],
                          provenance={"grid": "g.toml", "grid_sha256": "ab" * 32})
    done = harness.run_grid(reg, grid, root, data_dir=root / "data", progress=Progress(quiet=True))
    assert not done.failed, [r.error for r in done.failed]
    return root, {r.method: r for r in done.results}


@pytest.mark.slow
def test_oracle_stores_every_depth_measured_by_the_harness(smoke_results):
    root, by_method = smoke_results
    r = by_method["oracle"]
    assert [p["depth"] for p in r.curve] == [1, 2, 3]
    info = r.method_info
    assert [d["depth"] for d in info["depths"]] == [1, 2, 3]
    # the pick follows the rule on the stored numbers
    assert (r.facts.depth, r.facts.reached_target) == pick_depth(
        [(d["depth"], d["val"]) for d in info["depths"]], r.facts.threshold)
    assert r.facts.threshold == pytest.approx(by_method["full"].metrics["val_top1"] - info["tolerance"])
    # its own cost is the sum of its depths'; each point has test top-1 and the footprint
    assert info["total"]["epochs"] == sum(d["cost"]["epochs"] for d in info["depths"]) == r.cost["own"]["epochs"]
    # compute too (the ratio to ODN on the board is by it), and each depth's is its own: deeper costs more
    macs = [d["cost"]["train_macs"] for d in info["depths"]]
    assert info["total"]["train_macs"] == sum(macs) == r.cost["own"]["train_macs"] > 0
    per_sample = [m / d["cost"]["sample_steps"] for m, d in zip(macs, info["depths"])]
    assert per_sample == sorted(per_sample) and len(set(per_sample)) == 3
    sizes = [p["size_mb"] for p in r.curve]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3
    chosen = [p for p in r.curve if p["info"]["chosen"]]
    assert len(chosen) == 1 and chosen[0]["depth"] == r.facts.depth
    assert chosen[0]["size_mb"] == r.metrics["size_mb"] and chosen[0]["top1"] == r.metrics["top1"]
    raw = json.loads((root / r.folder / "result.json").read_text()) if r.folder else r.to_dict()
    assert not schema_problems(raw)


@pytest.mark.slow
def test_odn_stores_a_test_point_for_every_depth_it_tried(smoke_results):
    _, by_method = smoke_results
    r = by_method["odn"]
    tried = [c["depth"] for c in r.method_info["depth_curve"]]
    assert [p["depth"] for p in r.curve] == tried
    for point, searched in zip(r.curve, r.method_info["depth_curve"]):
        assert 0 <= point["top1"] <= 100 and point["macs"] > 0 and point["params"] == searched["params"]
        assert point["info"]["best_val"] == searched["best_val"]
        assert point["info"]["intermediate"] == (point["depth"] < r.facts.depth)
    assert r.provenance == {"grid": "g.toml", "grid_sha256": "ab" * 32}
    assert r.schema == SCHEMA_VERSION >= 4  # curve and provenance came with schema 4


@pytest.mark.slow
def test_a_published_board_shows_the_curves_and_names_the_grid_file(smoke_results, tmp_path):
    from odnbench.report.publish import publish

    root, _ = smoke_results
    done = publish(root, tmp_path / "out")
    page = next((tmp_path / "out").glob("*/README.md")).read_text()
    assert "## Trade-off curves" in page and "## Depth oracle (oracle) vs depth search (odn)" in page and "interpolated" in page
    assert "intermediate models" in page
    assert "grid file g.toml (sha256 abababababab)" in page and "minutes of wall time in all" in page
    assert "from the first cell's start to the last one's end" in page
    assert any(p.name == "curves-vs-size.png" for p in done.written)
    doc = json.loads(next((tmp_path / "out").glob("*/board.json")).read_text())
    families = {f["method"]: f for f in doc["curves"]["families"] if f["kind"] == "depth"}
    oracle = families["oracle"]
    assert [p["label"] for p in oracle["points"]] == ["depth 1", "depth 2", "depth 3"]
    assert all(p["keys"] for p in oracle["points"])  # every point names the cells it comes from
    assert doc["curves"]["oracle_vs_search"][0]["seed"] == 0


# ------------------------------------------------------------------------------ stored record


def test_curve_points_are_checked_by_the_schema():
    good = {"top1": 97.0, "val_top1": 97.5, "params": 100, "size_mb": 0.1, "macs": 10, "flops": 20, "depth": 2}
    base = {"status": "ok", "config": {}, "curve": [good]}
    assert not [p for p in schema_problems(base) if p.startswith("curve")]
    bad = dict(base, curve=[dict(good, top1=120.0), dict(good, depth="two"), {"top1": 1.0}])
    problems = [p for p in schema_problems(bad) if p.startswith("curve")]
    assert any("curve[0].top1" in p for p in problems) and any("curve[1].depth" in p for p in problems)
    assert any("curve[2].params" in p for p in problems)


def test_older_records_read_with_no_curve_and_no_provenance():
    old = {"status": "ok", "key": "k", "config": {"method": "odn"}, "schema": 3}
    r = Result.from_dict(old)
    assert r.curve is None and r.provenance is None and r.schema == 3


# ------------------------------------------------------------------------------ board derivations


def result(method, seed, top1, size, params=None, curve=None, depth=None, cost=None, info=None):
    config = {"protocol": PROTOCOL_VERSION, "method": method, "params": params or {}, "dataset": "d",
              "backbone": "b", "input": {}, "seed": seed, "preset": "quick", "recipe": {"epochs": 1}}
    return Result(status="ok", key=f"{method}{json.dumps(params)}{seed}", config=config,
                  metrics={"top1": top1, "size_mb": size, "macs": int(size * 1e6), "params": int(size * 1e5)},
                  facts=Facts(depth=depth), curve=curve, cost=cost or {"own": {"epochs": 10, "sample_steps": 1000,
                                                                             "train_seconds": 10.0}},
                  env={"device": "cpu"}, method_info=info or {})


def board(results):
    return lb.build_boards(results)[0]


def test_interpolation_is_linear_in_log_size_and_never_extrapolates():
    pts = [(0.1, 90.0), (1.0, 98.0)]
    assert curves.interpolate(pts, 0.1 * 10 ** 0.5) == pytest.approx(94.0)
    assert curves.interpolate(pts, 0.05) is None and curves.interpolate(pts, 2.0) is None
    assert curves.interpolate([(0.5, 95.0)], 0.505) == 95.0  # one point: only at its own size
    assert curves.interpolate([(0.5, 95.0)], 0.6) is None


def test_swept_rows_form_one_family_and_matched_rows_stay_apart():
    rs = []
    for seed, jitter in ((0, 0.0), (1, 0.4)):
        rs += [result("full", seed, 98.0 + jitter, 3.0)]
        rs += [result("odn", seed, 97.0 + jitter, 0.4, depth=4)]
        for ratio, top1, size in ((0.3, 97.5, 1.6), (0.5, 97.0, 0.8), (0.7, 95.0, 0.3), (0.9, 90.0, 0.05)):
            rs.append(result("prune", seed, top1 + jitter, size, {"ratio": ratio, "match": None}))
        rs.append(result("prune", seed, 96.5 + jitter, 0.39, {"ratio": 0.5, "match": "odn:size"}))
    b = board(rs)
    fams = {f.name: f for f in curves.sweep_families(b)}
    sweep = [f for f in fams.values() if f.method == "prune" and len(f.points) == 4]
    assert len(sweep) == 1 and sweep[0].swept == ["ratio"]
    assert [p.size_mb for p in sweep[0].points] == [0.05, 0.3, 0.8, 1.6]
    assert sweep[0].points[0].std == pytest.approx(0.4 / 2 ** 0.5) and sweep[0].points[0].n == 2
    assert any(f.method == "prune" and len(f.points) == 1 for f in fams.values())  # the matched row
    table = curves.matched_size_table(b)
    sizes = [s for _, s in table.sizes]  # per seed: each seed's own odn size (the same network here)
    assert sizes == [pytest.approx({0: v, 1: v}) for v in (0.1, 0.2, 0.4, 0.8)]
    values = dict(table.rows)[sweep[0].name]
    # at 0.4 MB: between 0.3 MB (95.2) and 0.8 MB (97.2), linear in log size
    t = (pytest.importorskip("math").log(0.4 / 0.3)) / __import__("math").log(0.8 / 0.3)
    assert values[2] == pytest.approx(95.2 + t * 2.0)
    assert table.best[2] == "odn"  # ODN's own point (97.2) beats the interpolated prune (~95.6) at its size
    second = max(v[2] for name, v in table.rows if name != "odn" and v[2] is not None)
    assert table.lead[2] == pytest.approx(97.2 - second)
    front = curves.pareto_points(curves.all_families(b))
    assert [p.size_mb for _, p in front] == sorted(p.size_mb for _, p in front)


def test_depth_points_make_a_curve_and_oracle_vs_odn_compares_depths_and_costs():
    def pts(tops):
        return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": 1000 * d, "params": 10 * d,
                 "val_top1": t, "flops": 2000 * d} for d, t in enumerate(tops, 1)]

    depths = [{"depth": d, "val": 0, "cost": {"epochs": 10, "sample_steps": 100, "train_seconds": 1.0}}
              for d in (1, 2, 3, 4)]
    rs = [result("full", 0, 98.0, 1.0),
          result("odn", 0, 97.0, 0.4, depth=4, curve=pts([90, 95, 96, 97]),
                 cost={"own": {"epochs": 45, "sample_steps": 450, "train_seconds": 45.0, "train_macs": 9e12}}),
          result("oracle", 0, 96.8, 0.3, depth=3, curve=pts([91, 95.5, 96.8, 97.2]), info={"depths": depths},
                 cost={"own": {"epochs": 40, "sample_steps": 400, "train_seconds": 40.0, "train_macs": 6e12}})]
    b = board(rs)
    fams = curves.depth_families(b)
    assert {f.method for f in fams} == {"odn", "oracle"}
    assert [p.label for p in fams[0].points] == ["depth 1", "depth 2", "depth 3", "depth 4"]
    (v,) = curves.oracle_vs_search(b)
    assert (v.search_depth, v.oracle_depth) == (4, 3)
    assert v.ratio("sample_steps") == pytest.approx(450 / 400)
    assert v.ratio("sample_steps", to_depth=True) == pytest.approx(450 / 300)  # depths 1-3 of the oracle
    text = "\n".join(curves.curve_sections(b))
    assert "seed 0: odn depth 4, oracle depth 3 (odn found a deeper depth)" in text
    assert "1.12 by sample-steps" in text and "intermediate models" in text
    # compute first (boards rank cost by it); the per-depth records here carry none, so no compute ratio to depth
    assert "cost ratio odn/oracle 1.50 by training compute (MACs)" in text
    assert v.ratio("train_macs", to_depth=True) is None


def test_the_depth_comparison_follows_stored_roles_not_method_names():
    """A third party's depth search and oracle (any names) compare as ODN and the oracle do, by
    the role stored in their results; the built-ins' older records get theirs by method name."""
    def pts(tops):
        return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": 1000 * d} for d, t in enumerate(tops, 1)]

    search = result("mysearch", 0, 97.0, 0.4, depth=4, curve=pts([90, 95, 96, 97]))
    brute = result("mybrute", 0, 96.8, 0.3, depth=3, curve=pts([91, 95.5, 96.8, 97.2]))
    search.role, brute.role = curves.DEPTH_SEARCH, curves.DEPTH_ORACLE
    b = board([result("full", 0, 98.0, 1.0), search, brute])
    assert curves.depth_search_row(b).method == "mysearch"
    (v,) = curves.oracle_vs_search(b)
    assert (v.search_depth, v.oracle_depth) == (4, 3)
    assert [f.name for f in curves.depth_families(b)] == ["mysearch: search checkpoint per depth",
                                                         "mybrute: model per depth"]
    text = "\n".join(curves.curve_sections(b))  # each named by its method where the role is
    assert "## Depth oracle (mybrute) vs depth search (mysearch)" in text and "mysearch's size (" in text
    assert "seed 0: mysearch depth 4, mybrute depth 3" in text and "ODN" not in text
    with pytest.warns(OdnbenchDeprecationWarning):  # 0.2's names still answer
        assert curves.odn_row(b) is curves.depth_search_row(b) and curves.oracle_vs_odn(b) == [v]
    unnamed = board([result("full", 0, 98.0, 1.0), result("mysearch", 0, 97.0, 0.4, depth=4, curve=pts([90, 97]))])
    assert curves.depth_search_row(unnamed) is None and curves.oracle_vs_search(unnamed) == []


def test_the_board_time_runs_from_the_first_cells_start_to_the_last_cells_end():
    from odnbench.report.boards import _elapsed
    from odnbench.result import Result

    def cell(finished_at, wall):
        r = Result.from_dict({"config": {}, "status": "ok"})
        r.finished_at, r.wall_seconds = finished_at, wall
        return r

    # Two cells side by side (0-100 s and 30-160 s), a third after them (160-400 s); one without a time.
    cells = [cell("2026-12-06T10:01:40+00:00", 100.0), cell("2026-12-06T10:02:40+00:00", 130.0),
             cell("2026-12-06T10:06:40+00:00", 240.0), cell(None, 50.0)]
    assert _elapsed(cells) == {"elapsed_seconds": 400.0}
    assert _elapsed([cell(None, 5.0)]) == {}


def test_depth_points_far_below_every_row_are_marked_at_the_floor_not_squashing_the_axis():
    from odnbench.report.plots import curves_figure

    def pts(tops):
        return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": 1000 * d} for d, t in enumerate(tops, 1)]

    rows = [result("full", 0, 98.0, 1.0), result("prune", 0, 96.0, 0.2, {"ratio": 0.8, "match": None}),
            result("prune", 0, 97.5, 0.5, {"ratio": 0.5, "match": None})]
    low = board([*rows, result("odn", 0, 97.0, 0.4, depth=4, curve=pts([71.0, 94.5, 96.0, 97.0]))])
    ax = curves_figure(low, "size_mb", "Size").axes[0]
    bottom = ax.get_ylim()[0]
    assert 94.5 < bottom < 96.0  # under every row (96.0), above the 1-block point and the 2-block one
    marks = [t.get_text() for t in ax.texts]
    assert marks == ["depth 1: 71.0", "depth 2: 94.5"]
    # a depth curve that stays near the rows leaves the axis alone
    near = board([*rows, result("odn", 0, 97.0, 0.4, depth=4, curve=pts([93.0, 95.0, 96.0, 97.0]))])
    ax = curves_figure(near, "size_mb", "Size").axes[0]
    assert ax.get_ylim()[0] < 93.0 and not ax.texts


def test_a_low_tau_end_of_an_early_exit_curve_is_marked_at_the_floor_like_a_shallow_depth():
    """τ = 0 exits every image at the first head (31 %): that end of the curve, like a 1-block depth
    point, must not stretch the axis over the rows at 96-98 %; each clipped point keeps its label."""
    from odnbench.report.plots import curves_figure

    def exits(tops):
        return [{"depth": None, "exits": {"threshold": tau}, "top1": t, "size_mb": 1.0, "macs": 1000 * (i + 1)}
                for i, (tau, t) in enumerate(zip((0.0, 0.5, 0.9, 0.99), tops))]

    rows = [result("full", 0, 98.0, 1.0), result("prune", 0, 96.0, 0.2, {"ratio": 0.8, "match": None})]
    low = board([*rows, result("early-exit", 0, 97.0, 1.0, curve=exits([31.0, 48.0, 96.5, 97.0]))])
    ax = curves_figure(low, "macs", "MACs").axes[0]
    assert 90.0 < ax.get_ylim()[0] < 96.0
    assert sorted(t.get_text() for t in ax.texts) == sorted(["τ=0: 31.0", "τ=0.5: 48.0"])
    renderer = ax.figure.canvas.get_renderer()
    first, second = (t.get_window_extent(renderer) for t in ax.texts)  # near each other, never over each other
    assert not first.overlaps(second)
    ax = curves_figure(low, "size_mb", "Size").axes[0]  # τ moves MACs, not size: no τ curve, nothing on the floor
    assert not ax.texts and ax.get_ylim()[0] < 96.0


def test_floor_labels_that_would_cover_one_another_are_stacked_as_drawn():
    """Shallow depths of two depth searches and the low τ end of an early-exit curve, all at nearby
    MACs: after the figure is laid out, no value label covers another or another point's ▼, and a
    label with room beside it stays on the first line."""
    from odnbench.report.plots import curves_figure

    def depths(tops, step):
        return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": step * d} for d, t in enumerate(tops, 1)]

    def exits(tops):
        return [{"depth": None, "exits": {"threshold": tau}, "top1": t, "size_mb": 1.0, "macs": 1000 * (i + 1)}
                for i, (tau, t) in enumerate(zip((0.0, 0.5, 0.9, 0.99), tops))]

    rows = [result("full", 0, 98.0, 1.0), result("prune", 0, 96.0, 0.2, {"ratio": 0.8, "match": None})]
    low = board([*rows, result("odn", 0, 97.0, 0.4, depth=5, curve=depths([41.0, 54.0, 70.0, 83.0, 97.0], 1000)),
                 result("oracle", 0, 97.0, 0.4, depth=5, curve=depths([42.0, 55.0, 71.0, 84.0, 97.0], 1100)),
                 result("early-exit", 0, 97.0, 1.0, curve=exits([31.0, 48.0, 96.5, 97.0]))])
    fig = curves_figure(low, "macs", "MACs")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 10
    assert not [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]
    anchors = [ax.transData.transform(t.xy) for t in ax.texts]  # each point's ▼ at the floor
    assert not [(box, at) for box in boxes for at in anchors if box.x0 <= at[0] <= box.x1 and box.y0 <= at[1] + 3]
    assert min(t.xyann[1] for t in ax.texts) == 3 and max(t.xyann[1] for t in ax.texts) > 3


def test_a_depth_point_on_one_seed_of_three_is_marked_and_never_on_the_pareto_front_nor_best():
    """The oracle tried depth 4 on seed 0 only: that point is a mean of one seed, so it is marked n=1 and
    kept out of the front although it would beat every other point there."""
    def pts(tops, seed):
        return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": 1000 * d} for d, t in enumerate(tops, 1)]

    rs = []
    for seed in (0, 1, 2):
        rs.append(result("full", seed, 98.0 + seed / 10, 1.0))
        rs.append(result("odn", seed, 96.0 + seed / 10, 0.3, depth=3, curve=pts([90, 94, 96 + seed / 10], seed)))
        tops = [91, 95, 96.5 + seed / 10] + ([99.5] if seed == 0 else [])  # depth 4 on seed 0 alone
        rs.append(result("oracle", seed, tops[-1], 0.1 * len(tops), depth=len(tops), curve=pts(tops, seed)))
    b = board(rs)
    oracle = next(f for f in curves.depth_families(b) if f.method == "oracle")
    four = next(p for p in oracle.points if p.label == "depth 4")
    assert (four.n, four.seeds, four.marked(3)) == (1, [0], True)
    front = curves.pareto_points(curves.all_families(b), board_n=curves.board_seeds(b))
    assert all(p.n == 3 for _, p in front) and four not in [p for _, p in front]
    unruled = curves.pareto_points(curves.all_families(b))[-1][1]  # without the rule a one-seed point leads
    assert (unruled.top1, unruled.n) == (99.5, 1)
    doc = curves.curves_document(b)
    point = next(p for f in doc["families"] if f["method"] == "oracle" for p in f["points"] if p["label"] == "depth 4")
    assert point["n"] == 1 and point["fewer_seeds"] is True
    assert all(p["n"] == 3 for p in doc["pareto_front"])
    text = "\n".join(curves.curve_sections(b))
    assert "depth 4: 0.400 → 99.50 (n=1)" in text
    # oracle's row exported different networks (depth 3 and 4): shown seed by seed, never at a mean size
    seeds = next(f for f in curves.sweep_families(b) if f.method == "oracle")
    assert seeds.kind == "seeds" and [p.n for p in seeds.points] == [1, 1, 1]


def test_a_control_whose_record_says_its_match_failed_is_flagged_and_left_out_of_matched_claims():
    rs = []
    for seed in (0, 1, 2):
        rs.append(result("full", seed, 98.0 + seed / 10, 2.8))
        rs.append(result("odn", seed, 97.0 + seed / 10, 0.4, depth=4))
        missed = seed != 0
        rs.append(result("blockdrop", seed, 97.5 + seed / 10, 1.24 if missed else 0.4, {"match": "odn:size"},
                         info={"within_tolerance": not missed, "achieved": 1.24 if missed else 0.4}))
        rs += [result("slim", seed, top1, size, {"width": w}) for w, top1, size in ((0.25, 95.0, 0.2), (0.5, 97.0, 0.8))]
    b = board(rs)
    row = next(r for r in b.rows if r.method == "blockdrop")
    assert row.stats.match_missed == "missed its match target on 2/3 seeds"
    from odnbench.report.columns import BY_KEY
    cell = BY_KEY["ranked"].markdown(row.stats)
    assert "⚠" in cell and "missed its match target on 2/3 seeds" in cell
    table = curves.matched_size_table(b)
    assert all(not name.startswith("blockdrop") for name, _ in table.rows)
    assert [name for name, _ in table.excluded] == ["blockdrop"]
    assert "Left out: blockdrop missed its match target on 2/3 seeds" in "\n".join(curves.curve_sections(b))
    assert curves.curves_document(b)["matched_size"]["excluded"][0]["name"] == "blockdrop"


def test_matched_sizes_are_taken_per_seed_and_best_needs_a_paired_separation():
    """odn chose a different network on each seed: the matched size is each seed's own, never their mean,
    and two families whose paired lead straddles 0 give no "Best"."""
    rs = []
    for seed, (size, odn_top, a_jit) in enumerate(((0.2, 96.0, 0.0), (0.4, 97.0, 0.9), (0.8, 97.5, -0.8))):
        rs.append(result("full", seed, 98.0, 3.0))
        rs.append(result("odn", seed, odn_top, size, depth=seed + 2))
        for ratio, top1, s in ((0.3, 95.0, 0.1), (0.5, 97.0, 1.6)):
            rs.append(result("prune", seed, top1 + a_jit, s, {"ratio": ratio}))
    b = board(rs)
    table = curves.matched_size_table(b)
    caption, at = table.sizes[2]
    assert at == pytest.approx({0: 0.2, 1: 0.4, 2: 0.8})  # no 0.467 MB network anywhere
    import math
    sweep = dict(table.rows)["prune over ratio"]
    expect = []
    for size, jit in ((0.2, 0.0), (0.4, 0.9), (0.8, -0.8)):
        t = math.log(size / 0.1) / math.log(1.6 / 0.1)
        expect.append(95.0 + jit + t * 2.0)
    assert sweep[2] == pytest.approx(sum(expect) / 3)
    assert table.best[2] is None and table.separated[2] is False  # odn vs prune: paired lead straddles 0
    assert "not separated" in "\n".join(curves.curve_sections(b))


def test_a_separated_best_names_the_family_it_leads():
    """kd leads scratch by 0.5-0.55 points on every seed at odn's size: "Best" names kd and, since only
    families present on every seed compete, the family its lead is over."""
    rs = []
    for seed, kd in ((0, 97.5), (1, 97.65), (2, 97.7)):  # leads of 0.5, 0.55 and 0.5
        rs += [result("full", seed, 98.0, 3.0), result("odn", seed, 96.0 + seed / 10, 0.4, depth=3),
               result("kd", seed, kd, 0.4, depth=3), result("scratch", seed, 97.0 + seed / 10, 0.4, depth=3)]
        rs += [result("prune", seed, 95.0, 0.1, {"ratio": 0.9}), result("prune", seed, 96.0, 1.6, {"ratio": 0.3})]
    b = board(rs)
    table = curves.matched_size_table(b)
    assert (table.best[2], table.runner_up[2], table.separated[2]) == ("kd", "scratch", True)
    assert table.lead[2] == pytest.approx(1.55 / 3)
    best = next(line for line in curves.curve_sections(b) if line.startswith("| **Best**"))
    assert "kd (+0.52 over scratch)" in best


def test_early_exit_points_form_their_own_family_over_the_threshold_not_one_bogus_point():
    def exits(seed):
        # depth null, one network (one size) exiting earlier as τ falls: fewer MACs, lower top-1
        return [{"depth": None, "exits": {"threshold": tau, "exit_fractions": [0.5, 0.5]}, "top1": top1 + seed / 10,
                 "size_mb": 0.5, "macs": macs} for tau, top1, macs in ((0.5, 96.0, 1000), (0.9, 97.5, 2000),
                                                                      (0.99, 98.0, 3000))] + [
               {"depth": 1, "top1": 90.0, "size_mb": 0.1, "macs": 500}, {"depth": 2, "top1": 95.0, "size_mb": 0.2,
                                                                      "macs": 1000}]

    rs = []
    for seed in (0, 1):
        rs += [result("full", seed, 98.0, 1.0), result("early-exit", seed, 97.5, 0.5, depth=4, curve=exits(seed))]
    b = board(rs)
    fams = {f.name: f for f in curves.depth_families(b)}
    tau = fams["early-exit: early exits over τ"]
    assert tau.kind == "exits" and [p.label for p in tau.points] == ["τ=0.5", "τ=0.9", "τ=0.99"]
    assert [p.macs for p in tau.points] == [1000, 2000, 3000] and [p.n for p in tau.points] == [2, 2, 2]
    assert tau.points[1].top1 == pytest.approx(97.55)
    static = fams["early-exit: model per depth"]  # the exits alone (depth set) stay a per-depth curve
    assert [p.label for p in static.points] == ["depth 1", "depth 2"]
    assert all(p.label != "point" for f in fams.values() for p in f.points)  # no merged null-depth point
    on_size = curves.pareto_points(curves.all_families(b), "size_mb", 2)
    assert not any(name.endswith("over τ") for name, _ in on_size)  # one size for every τ: MACs only
    on_macs = curves.pareto_points(curves.all_families(b), "macs", 2)
    assert any(name.endswith("over τ") for name, _ in on_macs)
    assert "τ=0.9: 2000 MACs → 97.55" in "\n".join(curves.curve_sections(b))


def test_costs_split_own_from_dependencies_and_close_depth_decisions_are_marked():
    def depth_curve(vals):
        return [{"depth": d, "val": v} for d, v in enumerate(vals, 1)]

    full = result("full", 0, 98.0, 1.0, cost={"own": {"epochs": 20, "train_macs": 8e12}, "train_macs": 8e12})
    odn = result("odn", 0, 97.0, 0.4, depth=3, curve=[{"depth": 3, "top1": 97.0, "size_mb": 0.4, "macs": 3000},
                                                      {"depth": 2, "top1": 95.0, "size_mb": 0.2, "macs": 2000}],
                 cost={"own": {"epochs": 30, "train_macs": 4e12}, "train_macs": 12e12})
    odn.facts = Facts(depth=3, threshold=98.15, depth_curve=depth_curve([91.0, 98.1, 98.6]))
    odn.data = {"sizes": {"train": 6000, "val": 1000, "test": 10000}}
    oracle = result("oracle", 0, 96.0, 0.2, {"train_all": False}, depth=2,
                    curve=[{"depth": 2, "top1": 96.0, "size_mb": 0.2, "macs": 2000}])
    oracle.facts = Facts(depth=2, threshold=98.15, depth_curve=depth_curve([90.0, 99.0]))
    oracle.data = odn.data
    b = board([full, odn, oracle])
    row = next(r for r in b.rows if r.method == "odn").stats
    assert (row.cost_own_train_macs, row.cost_deps_train_macs) == (4e12, 8e12)
    from odnbench.report.columns import BY_KEY
    assert BY_KEY["compute"].markdown(row) == "4.00 T + 8.00 T"
    # 98.1 against 98.15 on 1,000 validation images: half an image decided depth 2 was not enough
    assert curves.near_threshold(odn) == ("depth 2 read 98.1 against the threshold 98.15, 0.5 validation images "
                                          "(of 1,000) away")
    assert curves.near_threshold(oracle) is None  # 90.0 and 99.0: 81 and 8.5 images away
    text = "\n".join(curves.curve_sections(b))
    assert "## Sequential from-scratch depth search (oracle) vs depth search (odn)" in text
    assert "◆ odn: depth 2 read 98.1" in text and "◆ oracle" not in text


def test_a_pareto_plot_ends_its_axis_three_tolerances_under_full_and_marks_what_lies_lower():
    """full at 98 % (tolerance 1.75), a prune row at 97 % and one at 80 %: the y axis ends at 98 − 5.25, the
    80 % row is an arrow on that floor in its colour, counted in the legend; without such a row the axis is left alone."""
    from odnbench.report.plots import BELOW_MARKER, pareto_figure, row_styles

    rows = [dataclasses.replace(result("full", s, 98.0 + s / 10, 1.0), role="baseline") for s in (0, 1)]
    rows += [result("prune", s, 97.0 + s / 10, 0.3, {"ratio": 0.5}) for s in (0, 1)]
    low = board(rows + [result("prune", s, 80.0 + s, 0.1, {"ratio": 0.9}) for s in (0, 1)])
    ax = pareto_figure(low, "size_mb", "Size").axes[0]
    assert ax.get_ylim()[0] == pytest.approx(98.05 - 3 * 1.75)
    floor = [line for line in ax.get_lines() if line.get_marker() == BELOW_MARKER and len(line.get_xdata())]
    colour = row_styles(low)["prune (ratio=0.9)"][0]
    assert [(float(line.get_xdata()[0]), line.get_color()) for line in floor] == [(0.1, colour)]
    assert "1 point below 92.80 % (lowest 80.5 %), on the axis floor" in [t.get_text() for t in ax.get_legend().get_texts()]
    ax = pareto_figure(board(rows), "size_mb", "Size").axes[0]
    assert ax.get_ylim()[0] < 97.0 and not [line for line in ax.get_lines() if line.get_marker() == BELOW_MARKER]


def test_arrows_on_a_pareto_floor_at_one_place_share_by_colour_and_stand_side_by_side():
    """Three seeds of one row at one size (early exits: one network, MACs differ) and a prune row at the same
    size all lie under the floor: one arrow for the seeds with "×3" beside it, the prune arrow beside it,
    not on top of it."""
    from odnbench.report.plots import BELOW_MARKER, FLOOR_DODGE_PT, pareto_figure, row_styles

    rows = [dataclasses.replace(result("full", s, 98.0 + s / 10, 3.0), role="baseline") for s in (0, 1, 2)]
    for s in (0, 1, 2):
        exits = result("early-exit", s, 80.0 + 2 * s, 1.0)
        exits.metrics["macs"] = 1_000_000 * (s + 1)  # one network, a different mean cost per seed
        rows += [exits, result("prune", s, 81.0, 1.0, {"ratio": 0.9})]
    b = board(rows)
    ax = pareto_figure(b, "size_mb", "Size").axes[0]
    floor = ax.get_ylim()[0]
    arrows = [line for line in ax.get_lines() if line.get_marker() == BELOW_MARKER and len(line.get_xdata())]
    styles = {label.split(" ")[0]: style for label, style in row_styles(b).items()}
    assert sorted(line.get_color() for line in arrows) == sorted([styles["early-exit"][0], styles["prune"][0]])
    xs = [line.get_transform().transform((1.0, floor))[0] for line in arrows]  # where each is drawn, in pixels
    assert abs(xs[0] - xs[1]) == pytest.approx(FLOOR_DODGE_PT * ax.figure.dpi / 72)
    counts = [t for t in ax.texts if t.get_text().startswith("×")]
    assert [(t.get_text(), t.get_color()) for t in counts] == [("×3", styles["early-exit"][0])]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(text.startswith("4 points below") and text.endswith("×k: k points at one place") for text in legend)


def test_a_curves_plot_ends_at_the_pareto_floor_and_marks_a_rows_seeds_there_once():
    """A row whose seeds lie 15 points under full (its seeds exported different networks, so each is a point)
    no longer stretches the curves plot: the axis ends three tolerances under full, like the Pareto plots,
    and the row's seeds at one size are one mark, "3 seeds: low–high"; past FLOOR_LABELS_MAX marks the values
    are left to the page's tables and the legend counts them."""
    from odnbench.report.plots import FLOOR_LABELS_MAX, curves_figure

    rows = [dataclasses.replace(result("full", s, 98.0, 3.0), role="baseline") for s in (0, 1, 2)]
    rows += [result("prune", s, 97.0, 0.3, {"ratio": 0.5, "match": None}) for s in (0, 1, 2)]
    for s in (0, 1, 2):
        exits = result("early-exit", s, 80.0 + 2 * s, 1.0)
        exits.metrics["macs"] = 1_000_000 * (s + 1)
        rows.append(exits)
    ax = curves_figure(board(rows), "size_mb", "Size").axes[0]
    assert ax.get_ylim()[0] == pytest.approx(98.0 - 3 * 1.75)
    assert [t.get_text() for t in ax.texts] == ["3 seeds: 80.0–84.0"]

    def depths(tops):
        return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": 1000 * d} for d, t in enumerate(tops, 1)]

    deep = [result("odn", s, 97.0, 0.4, depth=FLOOR_LABELS_MAX + 2, curve=depths([40.0 + d for d in range(FLOOR_LABELS_MAX + 1)] + [97.0]))
            for s in (0, 1, 2)]
    ax = curves_figure(board(rows[:6] + deep), "size_mb", "Size").axes[0]
    assert not ax.texts
    title = ax.get_legend().get_title().get_text()
    assert f"{FLOOR_LABELS_MAX + 1} points below 96.00 % (lowest 40.0 %)" in title  # under the rows (97 %) by 1

"""Leaderboards and `leaderboard publish`, rendered from stored result.json files only.

Real smoke cells (full on two seeds and, when installed, odn) run once for the module; the edge
cases are hand-made variants of those real result.json files.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from odnbench import PROTOCOL_VERSION, Method, MethodOutput, Result, hookimpl, plan, report
from odnbench.report import boards as lb
from odnbench.report import markdown as md
from odnbench.report import plots
from odnbench.report import publish as pub
from odnbench.result import normalise_reference
from odnbench.store import RESULT_FILE, ResultStore, cell_dirname, cell_key, write_json

SEEDS = [0, 1]
ODN_SETS = ["odn.target=100", "odn.max_depth=2", "odn.warmup_epochs=0", "odn.finetune=false",
            "odn.save_depth_models=false"]


def _gfm(text: str) -> str:
    return MarkdownIt("commonmark").enable("table").render(text)


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory):
    """Real smoke cells, run once: full x 2 seeds (+ odn x 1 seed when installed) on mnist5k/resnet18."""
    from odnbench import harness
    from odnbench.progress import Progress
    from odnbench.registry import load_registry

    with pytest.MonkeyPatch.context() as mp:
        if "ODNBENCH_LOAD_PLUGINS" not in os.environ:
            mp.setenv("ODNBENCH_LOAD_PLUGINS", "odnbench")
        reg = load_registry()
        out = tmp_path_factory.mktemp("results")
        failed = []
        # full on two seeds; odn (when installed) on one, searching depths 1-2 for an unreachable target
        # (a real depth curve and a "no" for meets-target, cheaply)
        odn = [m for m in ("odn",) if m in reg.items["method"]]
        for methods, seeds, sets in ((["full"], SEEDS, []), (odn, [0], ODN_SETS)):
            if methods:
                grid = plan.plan_grid(reg, methods, ["mnist5k"], ["resnet18"], seeds, "smoke", sets)
                failed += harness.run_grid(reg, grid, out, data_dir=out / "data", download=False,
                                           progress=Progress(quiet=True)).failed
    assert not failed, [r.error for r in failed]
    return out


@pytest.fixture(scope="module")
def stored(results_dir) -> list[dict]:
    return [r for _, r in ResultStore(results_dir).raw()]


def boards_of(dicts: list[dict]):
    """Boards built from hand-made result.json contents, as if read from disk."""
    return lb.build_boards([Result.from_dict(copy.deepcopy(d)) for d in dicts])


def _template(stored, method="full", seed=0) -> dict:
    return copy.deepcopy(next(r for r in stored if r["config"]["method"] == method and r["config"]["seed"] == seed))


def _write_results(folder: Path, results: list[dict]) -> Path:
    for r in results:
        r["key"] = cell_key(r["config"])
        write_json(folder / cell_dirname(r["config"]) / RESULT_FILE, r)
    return folder


# ------------------------------------------------------------------------------ real results

def test_board_aggregates_the_stored_seeds(results_dir, stored):
    boards = lb.build_boards(lb.load_results(results_dir))
    assert [b.slug for b in boards] == ["mnist5k-resnet18-smoke-cpu"]
    board = boards[0]
    full = next(r for r in board.rows if r.method == "full")
    tops = [r["metrics"]["top1"] for r in sorted(stored, key=lambda r: r["config"]["seed"])
            if r["config"]["method"] == "full"]
    f = full.stats
    assert f.n == 2 and f.seeds == SEEDS
    assert f.top1_mean == pytest.approx(statistics.fmean(tops))
    assert f.top1_std == pytest.approx(statistics.stdev(tops))
    assert f.delta_vs_baseline == 0 and f.macs_speedup == 1 and f.measured_speedup == 1
    assert f.meets_target is None and f.iso_accuracy is True  # the baseline: "–", not a trivial "yes"
    assert md.cells(f)["meets"] == "–"
    assert f.networks_differ is False and md.cells(f)["params"] == f"{round(f.params):,}"
    assert f.converged == {"yes": 0, "no": 2, "unknown": 0, "n": 2}  # one smoke epoch: cut short
    assert board.baseline is full
    assert [r.stats.rank for r in board.rows] == list(range(1, len(board.rows) + 1))
    assert [r.stats.top1_mean for r in board.rows] == sorted((r.stats.top1_mean for r in board.rows),
                                                                 reverse=True)
    # smoke trains one epoch: every full cell stopped on the epoch cap, so it is listed as cut short
    assert {r.method for r in board.cut_short} >= {"full"}
    if any(r.method == "odn" for r in board.rows):
        odn = next(r for r in board.rows if r.method == "odn")
        f = odn.stats
        assert odn.label.startswith("odn (") and "max_depth=2" in odn.label  # its key parameters
        assert f.macs_speedup > 1 and f.size_reduction > 0 and f.depth == [2]
        # The board's one rule (Δ vs full) decides; ODN's own threshold (100 - 0.5, out of reach) is shown beside it
        assert f.meets_target_basis == "95 % CI of Δ ≥ −1.75 (n=1, no interval)"  # one ODN seed: undecided
        assert f.own_target == {"threshold": [99.5, 99.5], "reached": 0, "of": 1, "n": 1}
        seeds = "1/1" if f.delta_vs_baseline >= -1.75 else "0/1"
        assert f.meets_target is None and f.meets_target_verdict == "undecided"
        assert f"| undecided ({seeds} seeds); own target: val ≥ 99.50, reached 0/1 |" in md.render_markdown([board], "x")
        curves = plots.depth_curves(board)
        assert [[p["depth"] for p in c] for _, c in curves] == [[1, 2]]


def test_markdown_is_github_flavoured(results_dir):
    text = report.render(results_dir, "md")
    html = _gfm(text)
    # the main table, its details, the iso-accuracy view and, as on a published page, the curves' two tables
    assert html.count("<table>") == 5 and "### Trade-off curves" in text
    assert ">Top-1 % (mean ± std, n)</th>" in html
    assert ">Latency p50 / p90 ms (mean over seeds ‡; batch 1, " in html
    assert "|" not in html.replace("&quot;", "")  # no table row fell out of its table
    assert text.startswith(md.GENERATED_MARKER)


def test_json_and_csv_render_the_same_rows(results_dir):
    records = [row for board in json.loads(report.render(results_dir, "json")) for row in board["rows"]]
    csv_lines = report.render(results_dir, "csv").splitlines()
    assert len(csv_lines) == len(records) + 1
    header = csv_lines[0].split(",")
    for name in ("rank", "method", "top1_mean", "top1_std", "delta_vs_baseline", "size_mb", "size_mib", "macs",
                 "latency_p50", "latency_p90", "macs_speedup", "measured_speedup", "cost_epochs",
                 "cost_sample_steps", "cost_seconds", "meets_target"):
        assert name in header and name in records[0]


def test_cli_leaderboard_group_still_renders(results_dir, tmp_path):
    from odnbench.cli import cli

    out = tmp_path / "board.json"
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(results_dir), "--format", "json", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())[0]["rows"][0]["dataset"] == "mnist5k"
    res = CliRunner().invoke(cli, ["leaderboard", "--results", str(tmp_path / "nope"), "publish"])
    assert res.exit_code == 2 and "does not exist" in res.output


def _tree_bytes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_publish_is_byte_identical_and_complete(results_dir, tmp_path):
    from odnbench.cli import cli

    a, b = tmp_path / "a", tmp_path / "b"
    res = CliRunner().invoke(cli, ["leaderboard", "publish", "--results", str(results_dir), "--out", str(a)])
    assert res.exit_code == 0, res.output
    first = _tree_bytes(a)
    CliRunner().invoke(cli, ["leaderboard", "publish", "--results", str(results_dir), "--out", str(a)])
    assert _tree_bytes(a) == first  # republishing in place changes nothing
    pub.publish(results_dir, b, command=pub.publish_command(results_dir, a, lb.DEFAULT_TOLERANCE))
    assert _tree_bytes(b) == first  # nor does publishing elsewhere with the same command line
    slug = "mnist5k-resnet18-smoke-cpu"
    for name in ("README.md", "board.json", "board.csv", pub.SIZE_PLOT, pub.MACS_PLOT):
        assert f"{slug}/{name}" in first
    for png in (a / slug).glob("*.png"):
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert b"matplotlib" not in data and b"Software" not in data
    page = (a / slug / "README.md").read_text()
    command = f"odnbench leaderboard publish --results {results_dir} --out {a}"
    assert page.startswith(md.GENERATED_MARKER) and f"`{command}`" in page
    assert "Generated file: nothing here is hand-edited" in page
    assert f"protocol v{PROTOCOL_VERSION}" in page and "2 seeds (0, 1)" in page
    # torch-pruning is named only where a stored result declared it (prune's env_packages)
    declared = any("torch_pruning" in (r.env or {}) for _, r in ResultStore(results_dir))
    assert ("torch-pruning" in page) == declared
    assert f"]({pub.SIZE_PLOT})" in page and f"]({pub.MACS_PLOT})" in page
    html = _gfm(page)
    # the main table, its details, the iso-accuracy view, and (ODN's per-depth points make a curve)
    # the curve families and the accuracy at matched size
    assert "## Trade-off curves" in page and f"]({pub.CURVES_SIZE_PLOT})" in page
    assert html.count("<table>") == 5
    index = (a / "README.md").read_text()
    assert f"]({slug}/README.md)" in index
    assert len([line for line in index.splitlines() if line.startswith("- [")]) == 1
    doc = json.loads((a / slug / "board.json").read_text())
    board = lb.build_boards(lb.load_results(results_dir))[0]
    assert [row["method"] for row in doc["rows"]] == [r.label for r in board.rows]
    has_curve = any(r.facts.depth_curve for _, r in ResultStore(results_dir))
    assert (f"{slug}/{pub.DEPTH_PLOT}" in first) == has_curve


# ------------------------------------------------------------------------------ hand-made variants

def _variant(stored, **changes) -> dict:
    r = _template(stored)
    for path, value in changes.items():
        d = r
        *parents, last = path.split("__")
        for p in parents:
            d = d[p]
        d[last] = value
    if r["config"]["method"] != "full":
        r["role"] = None  # the role is the method's (full's is baseline): another method has none
    return r


def _small(stored, method, seed, top1, size_mb, macs, facts):
    r = _variant(stored, config__method=method, config__seed=seed, metrics__top1=top1, metrics__size_mb=size_mb,
                 metrics__macs=macs, metrics__flops=2 * macs)
    r["facts"] = facts
    return r


def test_targets_iso_accuracy_and_depth_curve(stored, tmp_path):
    full_top = statistics.fmean(r["metrics"]["top1"] for r in stored if r["config"]["method"] == "full")
    full = [copy.deepcopy(r) for r in stored if r["config"]["method"] == "full"]
    by_seed = {r["config"]["seed"]: r["metrics"]["top1"] for r in full}
    curve = [{"depth": 1, "val": 40.0}, {"depth": 2, "val": 55.5}]
    results = full + [
        # reached_target decides, seeds disagree -> 1/2; 0.5 below full on each seed: a tight paired interval
        _small(stored, "deep", 0, by_seed[0] - 0.5, 0.05, 1_000_000,
               {"reached_target": True, "threshold": 50.0, "depth": 2, "depth_curve": curve}),
        _small(stored, "deep", 1, by_seed[1] - 0.5, 0.05, 1_000_000,
               {"reached_target": False, "threshold": 50.0, "depth": 3, "depth_curve": curve[:1]}),
        # 3 below full on each seed: the interval lies wholly below −1.75
        _small(stored, "sunk", 0, by_seed[0] - 3.0, 0.05, 1_000_000, {}),
        _small(stored, "sunk", 1, by_seed[1] - 3.0, 0.05, 1_000_000, {}),
        # threshold alone: test top-1 against it
        _small(stored, "thr", 0, full_top - 5.0, 0.01, 500_000, {"threshold": full_top - 6.0}),
        # one seed each: no interval, so the target is undecided whatever the point estimate says
        _small(stored, "close", 0, by_seed[0] - 1.5, 0.02, 2_000_000, {}),
        _small(stored, "far", 0, by_seed[0] - 2.0, 0.005, 200_000, {}),
    ]
    boards = boards_of(results)
    rows = {r.method: r.stats for r in boards[0].rows}
    # One rule on the whole board, the paired 95 % CI of Δ vs full ≥ −1.75; a method's own target is beside it.
    assert rows["deep"].meets_target is True and rows["deep"].meets_target_verdict == "yes"
    assert rows["deep"].delta_ci == pytest.approx([-0.5, -0.5]) and rows["deep"].own_target["reached"] == 1
    assert rows["deep"].verdict == "worse than full"  # the interval excludes 0
    assert rows["deep"].depth == [2, 3]
    assert rows["sunk"].meets_target is False and rows["sunk"].meets_target_verdict == "no"
    assert rows["thr"].own_target["threshold"] == [full_top - 6.0] * 2
    for name in ("thr", "close", "far"):
        assert rows[name].meets_target is None and rows[name].meets_target_verdict == "undecided", name
        assert rows[name].delta_ci is None and rows[name].verdict == "n=1, no interval"
    assert (rows["close"].meets_target_seeds, rows["far"].meets_target_seeds) == ("1/1", "0/1")
    assert {f.meets_target_basis for name, f in rows.items() if name != "full"} == {
        "95 % CI of Δ ≥ −1.75", "95 % CI of Δ ≥ −1.75 (n=1, no interval)"}
    assert rows["far"].delta_vs_baseline == pytest.approx(-2.0)
    assert rows["close"].macs_speedup == pytest.approx(rows["full"].macs / 2_000_000)
    # iso-accuracy: Meets target's rule (the paired CI, not the mean), smallest first; "thr" (−5), "far" (−2) and
    # "sunk" (−3) are out, and so is "close": its mean (−1.5) is within 1.75 but one seed gives no interval
    assert [r.method for r in boards[0].iso_rows] == ["deep", "full"]
    assert [r.method for r in boards[0].iso_undecided] == ["close"]
    cells = md.cells(rows["deep"])
    assert cells["depth"] == "2–3" and cells["meets"] == "yes (2/2 seeds); own target: val ≥ 50.00, reached 1/2"
    assert md.cells(rows["far"])["delta_ci"].startswith("-2.00 (n=1, no interval)")
    text = md.render_markdown(boards, "res")
    assert text.count("Tolerance: **1.75 points**") == 1 and "Meets target (95 % CI of Δ ≥ −1.75 points" in text
    assert "Iso-accuracy: meets the target (95 % CI of Δ vs full ≥ −1.75 points)" in text
    assert "Left out by the same rule: close (mean Δ within 1.75 points of full" in text

    folder = _write_results(tmp_path / "res", results)
    pub.publish(folder, tmp_path / "out")
    slug = boards[0].slug
    page = (tmp_path / "out" / slug / "README.md").read_text()
    assert f"]({pub.DEPTH_PLOT})" in page
    assert (tmp_path / "out" / slug / pub.DEPTH_PLOT).is_file()


def test_iso_accuracy_applies_the_meets_target_rule_to_the_interval_not_the_mean(stored):
    """One rule for both: a row whose mean Δ is within the tolerance but whose paired 95 % CI reaches below
    −tolerance is "undecided" in Meets target and left out of the iso-accuracy view (named under it), while
    a row whose whole interval is within it is in both."""
    full = [copy.deepcopy(r) for r in stored if r["config"]["method"] == "full"]
    by_seed = {r["config"]["seed"]: r["metrics"]["top1"] for r in full}
    # mean Δ −1.0, per seed −0.1 and −1.9: the paired CI (−12.4, +10.4) straddles −1.75
    wide = [_small(stored, "wide", s, by_seed[s] - d, 0.02, 1_000_000, {}) for s, d in zip(SEEDS, (0.1, 1.9))]
    # per seed −1.0 and −1.1: the CI's lower bound (−1.69) is within 1.75
    tight = [_small(stored, "tight", s, by_seed[s] - d, 0.03, 1_000_000, {}) for s, d in zip(SEEDS, (1.0, 1.1))]
    board = boards_of(full + wide + tight)[0]
    rows = {r.method: r.stats for r in board.rows}
    assert rows["wide"].delta_vs_baseline == pytest.approx(-1.0) and rows["wide"].delta_ci[0] < -1.75
    assert rows["wide"].meets_target_verdict == "undecided" and rows["wide"].iso_accuracy is False
    assert rows["tight"].delta_ci[0] >= -1.75 and rows["tight"].meets_target_verdict == "yes"
    assert rows["tight"].iso_accuracy is True
    for row in board.rows:  # one rule: in the view exactly when Meets target says yes (or the baseline itself)
        assert row.stats.iso_accuracy == (row.stats.meets_target is True or row is board.baseline)
    assert [r.method for r in board.iso_rows] == ["tight", "full"]
    assert [r.method for r in board.iso_undecided] == ["wide"]
    from odnbench.report.sections import board_document
    doc = board_document(board)
    assert doc["iso_accuracy"] == ["tight", "full"] and doc["iso_accuracy_undecided"] == ["wide"]
    assert "smallest meeting the target (95 % CI of Δ vs full ≥ −1.75 points): tight" in md.index_line(board)


def test_pareto_front():
    pts = [(1.0, 90.0), (2.0, 95.0), (2.0, 94.0), (3.0, 93.0), (0.5, 80.0), (4.0, 96.0)]
    assert plots.pareto_front(pts) == [4, 0, 1, 5]
    assert plots.pareto_front([]) == []


def test_failed_cells_are_listed_with_safe_markdown(stored, tmp_path):
    bad = _variant(stored, config__method="prune", status="failed", metrics=None,
                   error="method 'prune' raised ValueError: shape <1|2> * bad\nsecond line")
    broken = _variant(stored, config__method="odd")
    del broken["metrics"]["top1"]
    results = [_template(stored), bad, broken]
    board = boards_of(results)[0]
    assert [r.method for r in board.rows] == ["full"]
    assert {r.method for r in board.failed} == {"prune", "odd"}
    text = md.render_markdown([board], "res")
    html = _gfm(text)
    assert "shape &lt;1|2&gt; * bad" in html and "second line" not in html
    assert "no numeric metrics.top1" in text
    assert html.count("<table>") == 3 and "<1|2>" not in html


def test_no_baseline_and_recipe_variants(stored):
    a = _variant(stored, config__method="other")
    b = _variant(stored, config__method="other")
    b["config"]["recipe"] = {**b["config"]["recipe"], "epochs": 5}
    b["metrics"]["top1"] = 50.0
    board = boards_of([a, b])[0]
    assert board.baseline is None
    assert [r.label for r in board.rows] == ["other (recipe.epochs=5)", "other (recipe.epochs=1)"]
    assert all(r.stats.delta_vs_baseline is None and r.stats.meets_target is None for r in board.rows)
    text = md.render_markdown([board], "res")
    assert "No baseline on this board" in text and _gfm(text).count("<table>") == 2


class RefMethod(Method):
    name = "refmethod"
    description = "test method with published numbers"

    def reference_results(self, dataset, backbone):
        if (dataset, backbone) == ("mnist5k", "resnet18"):
            return {"optimal_depth": 2, "top1": 99.31, "size_reduction_pct": 98.64, "source": "a paper",
                    "preset": "paper"}
        return None

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().truncated(1))  # untrained: only the stored reference matters


class RefPlugin:
    @hookimpl
    def register_methods(self, register):
        register(RefMethod())


def test_the_harness_stores_a_methods_published_numbers(tmp_path):
    """Boards read reference numbers from the stored result, so they need no plugin installed."""
    from odnbench import harness
    from odnbench.progress import Progress
    from odnbench.testing import registry_with

    reg = registry_with(RefPlugin())
    grid = plan.plan_grid(reg, ["refmethod"], ["mnist5k"], ["resnet18"], [0], "smoke")
    result = harness.run_cell(reg, grid.cells[0], tmp_path, data_dir=tmp_path, download=False,
                              progress=Progress(quiet=True))
    assert result.ok, result.error
    assert ResultStore(tmp_path).get(result.key).reference == {
        "depth": 2, "top1": 99.31, "size_reduction": 98.64, "size_mb": None, "full_size_mb": None, "source": "a paper",
        "preset": "paper"}


def test_reported_numbers_only_on_paper_preset(stored, tmp_path):
    def with_preset(preset):
        full = _template(stored)
        ref = _small(stored, "refmethod", 0, full["metrics"]["top1"], full["metrics"]["size_mb"] / 4, 1000,
                     {"depth": 3})
        ref["reference"] = normalise_reference(RefMethod().reference_results("mnist5k", "resnet18"))
        for r in (full, ref):
            r["config"]["preset"] = preset
        return [full, ref]

    paper = boards_of(with_preset("paper"))[0]
    assert len(paper.reported) == 1 and not paper.reference_notes
    rep = paper.reported[0]
    assert (rep["depth_reported"], rep["top1_reported"], rep["size_reduction_reported"]) == (2, 99.31, 98.64)
    assert rep["depth_measured"] == [3] and rep["size_reduction_measured"] == pytest.approx(75.0)
    text = md.render_markdown([paper], "res")
    assert "| refmethod | 2 / 3 | 99.31 / " in text and "−98.64 % / −75.00 %" in text
    assert _gfm(text).count("<table>") == 4

    smoke = boards_of(with_preset("smoke"))[0]
    assert not smoke.reported and len(smoke.reference_notes) == 1
    # The preset the numbers compare on is the plugin's word (stored in the reference), not a name in the core.
    other = with_preset("smoke")
    other[1]["reference"]["preset"] = "smoke"
    assert len(boards_of(other)[0].reported) == 1
    assert "optimal depth 2, top-1 99.31 %" in smoke.reference_notes[0]
    assert "`paper`-preset boards only" in md.render_markdown([smoke], "res")


def test_stale_boards_removed_and_foreign_index_kept(stored, tmp_path):
    other = _variant(stored, config__dataset="mnist")
    folder = _write_results(tmp_path / "res", [_template(stored), other])
    out = tmp_path / "out"
    done = pub.publish(folder, out)
    assert len(done.boards) == 2 and (out / "mnist-resnet18-smoke-cpu" / "README.md").is_file()
    (out / "mnist-resnet18-smoke-cpu" / "notes.txt").write_text("mine")
    shutil.rmtree(folder / cell_dirname(other["config"]))
    pub.publish(folder, out)
    assert not (out / "mnist-resnet18-smoke-cpu" / "README.md").exists()
    assert (out / "mnist-resnet18-smoke-cpu" / "notes.txt").read_text() == "mine"  # not ours: kept
    assert "mnist-resnet18-smoke-cpu" not in (out / "README.md").read_text()

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "README.md").write_text("# my notes\n")
    from odnbench.errors import OdnbenchError

    with pytest.raises(OdnbenchError, match="not generated by odnbench"):
        pub.publish(folder, foreign)


# ------------------------------------------------------------------------------ honest columns


def test_seeds_with_different_networks_show_ranges_not_a_blend(stored):
    full = [copy.deepcopy(r) for r in stored if r["config"]["method"] == "full"]
    a = _small(stored, "cut", 0, 90.0, 0.10, 1_000_000, {"depth": 5, "converged": True})
    b = _small(stored, "cut", 1, 91.0, 0.20, 2_000_000, {"depth": 6, "converged": False, "cut_short": "cap"})
    a["metrics"]["params"], b["metrics"]["params"] = 20_000, 40_000
    b["metrics"]["latency_ms"] = {**b["metrics"]["latency_ms"], "p50": 9.0, "p90": 30.0}  # a busy machine
    quiet = {"p50": 1.0, "p90": 1.02, "windows_ms": [1.0, 1.01, 1.02], "spread": 0.02, "cpu_share": 1.0}
    a["metrics"]["latency_ms"] = {**a["metrics"]["latency_ms"], **quiet}  # the smoke run's own timing may be noisy
    for r in full:
        r["metrics"]["latency_ms"] = {**r["metrics"]["latency_ms"], **quiet}
    board = boards_of(full + [a, b])[0]
    row = next(r for r in board.rows if r.method == "cut")
    f = row.stats
    assert f.networks_differ is True and f.params_per_seed == [20_000, 40_000]
    cells = md.cells(f)
    assert cells["params"] == "20,000–40,000" and cells["size_mb"] == "0.100–0.200"  # never 30,000 / 0.150
    assert cells["macs"] == "1.00 M–2.00 M" and cells["depth"] == "5–6"
    base_macs = board.baseline.stats.macs
    assert cells["macs_speedup"] == f"{base_macs / 2e6:.2f}×–{base_macs / 1e6:.2f}×"
    # a busy latency: the measured speed-up is withheld, the MACs speed-up stays
    assert cells["latency"].endswith("_busy_") and cells["measured_speedup"] == "_unreliable_"
    assert f.measured_speedup_reliable is False and "busy machine (seed 1)" in f.latency_unreliable_reason
    assert "×" in cells["macs_speedup"]
    assert f.converged == {"yes": 1, "no": 1, "unknown": 0, "n": 2} and cells["converged"] == "1/2"
    same = md.cells(board.baseline.stats)
    assert "–" not in same["params"] and same["meets"] == "–"
    text = md.render_markdown([board], "res")
    assert "| Params ‡ |" in text and "Top-1 % (mean ± std, n)" in text and "mean over seeds" in text
    assert "min–max over seeds when they chose different networks" in text


def test_no_mean_of_different_networks_in_board_data_sort_order_or_plots(stored):
    """Seeds that exported different networks (0.05 and 0.2 MB): board.json / CSV hold no mean size, MACs or
    params (null, never 0.125), the per-seed lists and ranges carry the numbers, the row sorts by its largest
    seed's size, and the accuracy-vs-size plot draws each seed, nothing at the mean."""
    import csv
    import io

    from odnbench.report import records
    from odnbench.report.sections import board_document

    full = [copy.deepcopy(r) for r in stored if r["config"]["method"] == "full"]
    by_seed = {r["config"]["seed"]: r["metrics"]["top1"] for r in full}
    # "cut" and "one" have the same mean top-1: ties on top-1 sort by size, "cut" by its largest seed's 0.2
    # (its mean 0.125 would put it before "one" at 0.15)
    a = _small(stored, "cut", 0, by_seed[0] - 0.5, 0.05, 1_000_000, {"depth": 5})
    b = _small(stored, "cut", 1, by_seed[1] - 0.5, 0.20, 3_000_000, {"depth": 6})
    one = [_small(stored, "one", s, by_seed[s] - 0.5, 0.15, 1_500_000, {"depth": 5}) for s in SEEDS]
    board = boards_of(full + [a, b] + one)[0]
    row = next(r for r in board.rows if r.method == "cut")
    f = row.stats
    assert f.networks_differ is True
    assert (f.size_mb, f.size_mib, f.macs, f.flops, f.params) == (None, None, None, None, None)
    assert (f.size_reduction, f.macs_speedup) == (None, None)
    base = board.baseline.stats.size_mb
    assert f.size_reduction_range == pytest.approx([100 * (1 - 0.2 / base), 100 * (1 - 0.05 / base)])
    assert md.cells(f)["reduction"] == f"{100 * (0.05 / base - 1):+.2f} % to {100 * (0.2 / base - 1):+.2f} %"
    assert md.cells(f)["size_mb"] == "0.050–0.200"
    assert [r.method for r in board.rows if r.method in ("cut", "one")] == ["one", "cut"]
    assert [r.method for r in board.iso_rows if r.method in ("cut", "one")] == ["one", "cut"]
    rec = next(r for r in board_document(board)["rows"] if r["method"] == "cut")
    assert rec["size_mb"] is None and rec["macs"] is None and rec["params"] is None
    assert rec["size_mb_per_seed"] == [0.05, 0.2] and rec["macs_per_seed"] == [1_000_000, 3_000_000]
    same = next(r for r in board_document(board)["rows"] if r["method"] == "one")
    assert same["size_mb"] == 0.15 and same["macs"] == 1_500_000  # one network: its value
    line = next(r for r in csv.DictReader(io.StringIO(records.render_csv([board]))) if r["method"] == "cut")
    assert line["size_mb"] == line["macs"] == line["params"] == "" and line["size_mb_per_seed"] == "[0.05, 0.2]"
    fig = plots.pareto_figure(board, "size_mb", "Size")
    xs = [float(x) for line in fig.axes[0].get_lines() for x in line.get_xdata()]
    assert 0.05 in xs and 0.2 in xs and not any(abs(x - 0.125) < 1e-9 for x in xs)  # each seed, never the mean


def test_cost_shows_the_methods_own_part_and_the_total(stored):
    full = _template(stored)
    new = _variant(stored, config__method="newcost")
    new["cost"] = {"epochs": 7, "sample_steps": 700, "train_seconds": 70.0, "device": "cpu",
                   "own": {"epochs": 2, "sample_steps": 200, "train_seconds": 20.0},
                   "dependencies": {"k1": {"method": "full", "epochs": 1, "sample_steps": 100, "train_seconds": 10.0},
                                    "k2": {"method": "odn", "epochs": 4, "sample_steps": 400, "train_seconds": 40.0}}}
    old = _variant(stored, config__method="oldcost")  # odnbench 0.1: dependency parts named so, no "own"
    old["cost"] = {"epochs": 24, "sample_steps": 84000, "train_seconds": 78.9, "device": "cpu",
                   "parts": {"fine-tune": {"epochs": 12, "sample_steps": 42000, "train_seconds": 22.6},
                             "full-depth training (dependency)": {"epochs": 12, "sample_steps": 42000,
                                                                  "train_seconds": 55.9},
                             "pruning": {"epochs": 0, "sample_steps": 0, "train_seconds": 0.4}}}
    rows = {r.method: r.stats for r in boards_of([full, new, old])[0].rows}
    assert (rows["newcost"].cost_own_epochs, rows["newcost"].cost_epochs) == (2, 7)
    assert md.cells(rows["newcost"])["cost_own"] == "not recorded / 2 / 20 s" and md.cells(rows["newcost"])["cost"] == \
        "7 / 700 / 70 s"
    assert rows["oldcost"].cost_own_epochs == 12 and rows["oldcost"].cost_own_seconds == pytest.approx(23.0)
    assert rows["oldcost"].cost_epochs == 24


def test_the_header_names_hardware_versions_and_the_tolerance(results_dir):
    text = report.render(results_dir, "md")
    env = next(r for _, r in ResultStore(results_dir).raw())["env"]
    # (torch-pruning's version is stored by the methods that declare it, e.g. prune: none here)
    for value in (env["device_name"], env["python"], env["torch"], env["torchvision"], env["timm"]):
        assert str(value) in text
    assert "Numbers reproduce only on the same hardware and library versions" in text
    assert text.count("Tolerance: **1.75 points**") == 1
    board = lb.build_boards(lb.load_results(results_dir), tolerance=0.5)
    assert "Tolerance: **0.5 points**" in md.render_markdown(board, "x")


def test_plots_give_each_configuration_its_own_colour_and_marker(stored):
    full = _template(stored)
    variants = [_variant(stored, config__method="prune") for _ in range(3)]
    for v, match in zip(variants, ("odn:size", "odn:macs", None)):
        v["config"]["params"] = {"match": match}
    board = boards_of([full, *variants])[0]
    styles = plots.row_styles(board)
    assert len(styles) == 4 and len(set(styles.values())) == 4
    assert len({c for c, _ in styles.values()}) == 4  # prune variants differ in colour, not just marker


def test_depth_marks_take_their_curves_colour(stored):
    curve = [{"depth": 1, "val": 40.0}, {"depth": 2, "val": 55.5}]
    runs = [_small(stored, "deep", seed, 50.0, 0.05, 1_000_000,
                   {"threshold": 50.0 + seed, "depth": 2, "depth_curve": curve}) for seed in (0, 1)]
    board = boards_of(runs)[0]
    hlines, marks = plots.depth_marks(board)
    names = [label for label, _ in plots.depth_curves(board)]
    assert [m[0] for m in marks] == names == ["deep seed 0", "deep seed 1"]  # a star finds its curve's colour
    assert [h[2] for h in hlines] == names
    fig = plots.depth_figure(plots.depth_curves(board), hlines=hlines, marks=marks,
                             styles={"deep seed 0": {"color": "#1f77b4"}, "deep seed 1": {"color": "#d62728"}})
    stars = [line for line in fig.axes[0].get_lines() if line.get_marker() == "*" and len(line.get_xdata())]
    assert [s.get_color() for s in stars] == ["#1f77b4", "#d62728"]
    assert stars[1].get_xdata()[0] != stars[0].get_xdata()[0]  # the same spot: dodged, both visible


def test_the_depth_curve_is_framed_on_the_decision_band_and_counts_what_lies_below(stored):
    """Thresholds 97.65 and 98.45, readings from 50 to 99.2: the y axis runs from 3 points under the lowest
    threshold to just over the top reading (not 50-100 %, where the band is a hairline); the three readings
    under it are drawn on the floor and counted in the legend."""
    curves = [[{"depth": 1, "val": 50.0}, {"depth": 2, "val": 95.8}, {"depth": 3, "val": 98.2}],
              [{"depth": 1, "val": 86.2}, {"depth": 2, "val": 93.2}, {"depth": 3, "val": 99.2}]]
    runs = [_small(stored, "deep", seed, 98.0, 0.05, 1_000_000, {"threshold": thr, "depth": 3, "depth_curve": c})
            for seed, thr, c in ((0, 98.45, curves[0]), (1, 97.65, curves[1]))]
    board = boards_of(runs)[0]
    ax = plots.depth_curve_figure(board).axes[0]
    assert ax.get_ylim() == pytest.approx((97.65 - plots.DEPTH_BAND_BELOW, 99.2 + 0.5))
    floor = [line for line in ax.get_lines() if line.get_marker() == plots.BELOW_MARKER and len(line.get_xdata())]
    assert len(floor) == 3 and [float(line.get_ydata()[0]) for line in floor] == pytest.approx([94.65] * 3)
    assert sorted(round(float(line.get_xdata()[0])) for line in floor) == [1, 1, 2]  # depth 1 twice, side by side
    labels = ax.get_legend_handles_labels()[1]
    assert "3 readings below 94.65 % (lowest 50.0 %), drawn on the axis floor" in labels
    assert [label for label in labels if label.startswith("threshold")] == [
        "threshold 97.65 (deep seed 1)", "threshold 98.45 (deep seed 0)"]
    # every reading within the band: the frame ends just under the lowest, nothing on the floor
    high = [[{"depth": 1, "val": 97.0}, {"depth": 2, "val": 98.6}]] * 2
    runs = [_small(stored, "deep", seed, 98.0, 0.05, 1_000_000, {"threshold": 98.0, "depth": 2, "depth_curve": c})
            for seed, c in zip(SEEDS, high)]
    ax = plots.depth_curve_figure(boards_of(runs)[0]).axes[0]
    assert ax.get_ylim() == pytest.approx((96.5, 99.1))
    assert not any(line.get_marker() == plots.BELOW_MARKER for line in ax.get_lines())


def test_several_depth_searches_get_a_panel_each_with_one_colour_per_seed(stored):
    """Two configurations with depth curves on three seeds: one panel each (by label), a seed in the same
    colour in both, a threshold every seed shares drawn once in grey, the per-seed thresholds in their seeds'
    colours, and one figure legend naming the seeds once."""
    curve = [{"depth": 1, "val": 96.0}, {"depth": 2, "val": 98.5}]
    runs = [_small(stored, method, seed, 98.0, 0.05, 1_000_000,
                   {"threshold": 98.0 if method == "fixed" else 97.0 + seed / 10, "depth": 2, "depth_curve": curve})
            for method in ("relative", "fixed") for seed in (0, 1, 2)]
    fig = plots.depth_curve_figure(boards_of(runs)[0])
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["fixed", "relative"]
    assert panels[0].get_ylim() == panels[1].get_ylim()  # one scale: panels compare by eye
    colours = [[line.get_color() for line in ax.get_lines() if list(line.get_xdata()) == [1, 2]] for ax in panels]
    assert colours[0] == colours[1] and len(set(colours[0])) == 3

    def thresholds(ax):
        return [(line.get_ydata()[0], line.get_color()) for line in ax.get_lines() if line.get_linestyle() != "-"
                and len(set(line.get_ydata())) == 1 and line.get_marker() in ("None", "", None)]
    assert thresholds(panels[0]) == [(98.0, "grey")]
    assert sorted(thresholds(panels[1])) == sorted(zip((97.0, 97.1, 97.2), colours[1]))
    assert not [ax for ax in fig.axes if ax.get_legend() is not None]  # two panels fill the row: legend below
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[:3] == ["seed 0", "seed 1", "seed 2"] and "chosen depth" in texts


def test_a_threshold_two_seeds_share_names_both(stored):
    curve = [{"depth": 1, "val": 40.0}, {"depth": 2, "val": 55.5}]
    runs = [_small(stored, "deep", seed, 50.0, 0.05, 1_000_000,
                   {"threshold": thr, "depth": 2, "depth_curve": curve}) for seed, thr in ((0, 50.0), (1, 51.0), (2, 51.0))]
    hlines, _ = plots.depth_marks(boards_of(runs)[0])
    assert [(h[0], h[2]) for h in hlines] == [("threshold 50.00 (deep seed 0)", "deep seed 0"),
                                              ("threshold 51.00 (deep seeds 1, 2)", "deep seed 1")]


def test_pareto_points_carry_no_text_that_could_overprint(stored):
    full = _template(stored)
    near = _variant(stored, config__method="near")  # the same size and top-1 as full: drawn on top of it
    board = boards_of([full, near])[0]
    fig = plots.pareto_figure(board, "size_mb", "Size")
    ax = fig.axes[0]
    assert len(ax.texts) == 0  # configurations are named in the legend only
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "full" in legend and "near" in legend


def test_remeasure_latency_times_stored_models_again_and_never_rewrites_them(results_dir, tmp_path):
    """--remeasure-latency: each stored model reloaded and timed again, serially, at batch 1 and at a larger
    batch; the board uses both and says how it measured; the result.json files stay byte for byte as they
    were, the measurements are stored beside them and used again by a plain render (which times nothing),
    and a board never re-measured shows neither the larger batch nor the re-measure sentence."""
    never, never_json, never_csv = (report.render(results_dir, fmt) for fmt in ("md", "json", "csv"))
    results_dir = shutil.copytree(results_dir, tmp_path / "results")  # the module's folder stays un-measured
    before = {p: p.read_bytes() for p in Path(results_dir).glob("*/result.json")}
    (doc,) = [b for b in json.loads(report.render(results_dir, "json", remeasure_latency=True, latency_batch=4))
              if b["rows"]]
    records = doc["rows"]
    assert records and all(r["latency_remeasured"] for r in records)
    assert all(r["latency_batch"] == 1 and r["latency_batched_batch"] == 4 for r in records)
    assert all(r["latency_batched_p50"] > 0 and r["latency_batched_p90"] >= r["latency_batched_p50"]
               for r in records)
    full = next(r for r in records if r["method_name"] == "full")
    assert full["measured_speedup_batched"] == 1 and full["measured_speedup_batched_reliable"] in (True, False)
    how = doc["caption"]["latency_measurement"]
    assert how["serial"] and how["batch_sizes"] == [1, 4] and how["models"] == how["results"] == sum(r["n"] for r in records)
    assert how["cpu"] and how["threads"] and how["windows"] and how["iters_per_window"]
    sentence = doc["caption"]["latency_remeasured"]
    assert sentence.startswith("Latency re-measured serially (`--remeasure-latency`), one model at a time, after training")
    assert "at batch 1 and batch 4" in sentence and "ms per image" in sentence and how["cpu"][0] in sentence
    text = report.render(results_dir, "md", remeasure_latency=True, latency_batch=4)
    assert "Latency re-measured serially" in text and "keep their own" in text
    assert "Latency p50 / p90 ms (mean over seeds ‡; batch 1," in text
    assert "Latency at batch 4, ms per image p50 / p90" in text and "Speed-up measured at batch 4 ‡" in text
    assert {p: p.read_bytes() for p in Path(results_dir).glob("*/result.json")} == before
    stored = sorted(Path(results_dir).glob("*/latency-remeasured.json"))
    assert len(stored) == how["models"]
    saved = json.loads(stored[0].read_text())
    assert saved["key"] == json.loads((stored[0].parent / "result.json").read_text())["key"] and saved["model_sha256"]
    # a render without --remeasure-latency uses the stored measurements: the same page, nothing timed
    again = report.render(results_dir, "md")
    assert again == text
    # a measurement that is not this record's (another model's sha256) is ignored, with a line naming it
    saved["model_sha256"] = "0" * 64
    stored[0].write_text(json.dumps(saved))
    said: list[str] = []
    (doc2,) = [b for b in json.loads(report.render(results_dir, "json", say=said.append)) if b["rows"]]
    assert doc2["caption"]["latency_measurement"]["models"] == how["models"] - 1
    assert any("latency-remeasured.json ignored: its key or model sha256 is not this record's" in line for line in said)
    assert "re-measured" not in never and "batch 4" not in never and "ms per image" not in never  # only when asked
    (never_doc,) = [b for b in json.loads(never_json) if b["rows"]]
    assert "latency_measurement" not in never_doc["caption"]
    assert not [k for r in never_doc["rows"] for k in r if "batched" in k]
    assert "batched" not in never_csv.splitlines()[0]


def test_remeasure_times_in_the_cells_precision_and_keeps_a_latency_measured_on_images(results_dir, monkeypatch,
                                                                                       tmp_path):
    """The re-measure runs as the harness measured: in the precision and memory format the cell's recipe
    names; a latency stored on test images (an early-exit network's) is kept, with a line saying why."""
    import dataclasses

    results_dir = shutil.copytree(results_dir, tmp_path / "results")  # it stores what it measures

    from odnbench import metrics
    from odnbench.report.remeasure import remeasure_latency

    (r,) = [r for r in lb.load_results(results_dir) if r.method == "full" and r.seed == 0]
    bf16 = copy.deepcopy(r.config)
    bf16["recipe"].update(precision="bf16", memory_format="channels_last")
    seen = []
    real = metrics.latency_ms

    def spy(model, shape, **kw):  # the real measurement, noting how it was asked to run
        seen.append((kw["execution"].precision, kw["execution"].channels_last, kw.get("batch_size", 1)))
        return real(model, shape, **kw)

    monkeypatch.setattr(metrics, "latency_ms", spy)
    (done,) = remeasure_latency([dataclasses.replace(r, config=bf16)], results_dir, batch_size=2)
    assert seen == [("bf16", True, 1), ("bf16", True, 2)]
    assert done.metrics["latency_ms"]["remeasured"]["stored"]["p50"] == r.metrics["latency_ms"]["p50"]
    on_images = copy.deepcopy(r.metrics)
    on_images["latency_ms"]["input"] = "images"
    said: list[str] = []
    (kept,) = remeasure_latency([dataclasses.replace(r, metrics=on_images)], results_dir, say=said.append)
    assert kept.metrics == on_images and len(seen) == 2
    assert said and "not re-measured (it ran on test images" in said[0]


def test_latency_batch_is_an_option_of_both_leaderboard_commands(results_dir, tmp_path):
    from odnbench.cli import cli

    results_dir = shutil.copytree(results_dir, tmp_path / "results")  # it stores what it measures

    runner = CliRunner()
    done = runner.invoke(cli, ["leaderboard", "--results", str(results_dir), "--latency-batch", "8"])
    assert done.exit_code == 2 and "--latency-batch 8 needs --remeasure-latency" in done.output
    done = runner.invoke(cli, ["leaderboard", "publish", "--results", str(results_dir), "--out", str(tmp_path / "b"),
                               "--remeasure-latency", "--latency-batch", "1"])
    assert done.exit_code == 2 and "1 is not in the range x>=2" in done.output
    done = runner.invoke(cli, ["leaderboard", "publish", "--results", str(results_dir), "--out", str(tmp_path / "b"),
                               "--remeasure-latency", "--latency-batch", "3"])
    assert done.exit_code == 0, done.output
    (page,) = [p for p in (tmp_path / "b").glob("*/README.md") if "Latency at batch 3" in p.read_text()]
    # the page names the command that reproduces it: the measurements are stored, so no --remeasure-latency
    assert "`odnbench leaderboard publish --results" in page.read_text() and "--latency-batch" not in page.read_text()
    assert "batch 3: " in done.output and "ms per image" in done.output  # what each model measured, as it goes


def test_the_caption_names_every_package_the_records_declared(stored):
    """Packages come from the stored env (``Method.env_packages``), not from a list in the report:
    a plugin's own package is named; a board whose records declared none names none."""
    plain = _variant(stored)
    plain["env"] = {k: v for k, v in plain["env"].items() if k != "torch_pruning"}
    extra = _variant(stored, config__method="kd")
    extra["env"] = {**plain["env"], "my_pkg": "2.0"}
    (b,) = lb.build_boards([Result.from_dict(plain), Result.from_dict(extra)])
    assert b.packages == ["my_pkg"] and b.caption["my_pkg"] == ["2.0"]
    line = md.caption_line(b)
    assert "my-pkg 2.0; odnbench" in line and "torch-pruning" not in line
    (none,) = lb.build_boards([Result.from_dict(plain)])
    assert none.packages == [] and "torch-pruning" not in md.caption_line(none)


def test_the_report_knows_every_env_key_that_is_not_a_package():
    """A key the fingerprint or the execution settings add must not be shown as a package."""
    import torch

    from odnbench import envinfo
    from odnbench.execution import Execution

    assert tuple(envinfo.fingerprint(torch.device("cpu"))) == envinfo.FINGERPRINT_KEYS
    settings = Execution(device=torch.device("cpu"), notes=["a note"]).env()
    assert lb.env_packages([{**envinfo.fingerprint(torch.device("cpu")), **settings, "executor": {}}]) == []


def test_publish_never_touches_what_it_does_not_own_inside_out(results_dir, tmp_path, monkeypatch):
    """The committed layout publishes into the folder that holds the results (`--results
    leaderboards/results --out leaderboards`). A record a running compare writes while the pages are
    built, and any other file there, survive the publish: only the index and the board folders are
    staged and swapped."""
    from odnbench.report import publish as pub

    out = tmp_path / "boards"
    results = shutil.copytree(results_dir, out / "results")
    (out / "grids").mkdir()
    (out / "grids" / "g.toml").write_text("seeds = [0]\n")
    pub.publish(results, out)  # a first publish: the board folders and index exist
    real = pub._remove_stale

    def meanwhile(staging, current, report):  # a cell finishes while this publish writes its pages
        (out / "results" / "late-cell").mkdir()
        (out / "results" / "late-cell" / "result.json").write_text("{}")
        return real(staging, current, report)

    monkeypatch.setattr(pub, "_remove_stale", meanwhile)
    done = pub.publish(results, out)
    assert (out / "results" / "late-cell" / "result.json").read_text() == "{}"
    assert (out / "grids" / "g.toml").read_text() == "seeds = [0]\n"
    assert (out / "README.md").is_file() and all((out / b.slug / "README.md").is_file() for b in done.boards)
    assert not list(tmp_path.glob(".boards.*"))  # no staging or old folder left beside it

"""A board names each row by its role's method: a third party's baseline called ``dense`` (stored
``role = "baseline"``), depth search and depth oracle are named by their own names in every output
(a published page, leaderboard.md, CSV, board.json, --format json, the terminal summary, the plots'
legends), and nothing calls the baseline "full" or the search "ODN"."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from odnbench import PROTOCOL_VERSION, Facts, Result
from odnbench.cli import cli
from odnbench.report import boards as lb
from odnbench.report import plots
from odnbench.report.publish import publish
from odnbench.report.terminal import summary
from odnbench.store import ResultStore, cell_key

#: "full" as a word (the built-in baseline's name, "full depth", "full-depth"), and the built-in search's name.
BUILTIN_NAMES = re.compile(r"(?<![A-Za-z_])(full|ODN|odn)(?![A-Za-z_])")


def _result(method, seed, top1, size, role=None, params=None, depth=None, curve=None):
    config = {"protocol": PROTOCOL_VERSION, "method": method, "params": params or {}, "dataset": "d",
              "backbone": "b", "input": {}, "seed": seed, "preset": "quick", "recipe": {"epochs": 1}}
    return Result(status="ok", key=cell_key(config), config=config, role=role,
                  metrics={"top1": top1, "size_mb": size, "macs": int(size * 1e6), "params": int(size * 1e5)},
                  facts=Facts(depth=depth), curve=curve,
                  cost={"own": {"epochs": 10, "sample_steps": 1000, "train_seconds": 10.0, "train_macs": 10**12}},
                  env={"device": "cpu"})


def _points(tops):
    return [{"depth": d, "top1": t, "size_mb": 0.1 * d, "macs": 100000 * d} for d, t in enumerate(tops, 1)]


@pytest.fixture
def results(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed, jitter in ((0, 0.0), (1, 0.3), (2, -0.2)):
        rows = [_result("dense", seed, 98.0 + jitter, 3.0, role="baseline"),
                _result("mysearch", seed, 97.0 + jitter, 0.4, role="depth-search", depth=4,
                        curve=_points([90, 95, 96, 97])),
                _result("mybrute", seed, 96.8 + jitter, 0.3, role="depth-oracle", depth=3,
                        curve=_points([91, 95.5, 96.8, 97.2]))]
        rows += [_result("prune", seed, top1 + jitter, size, params={"ratio": ratio})
                 for ratio, top1, size in ((0.3, 97.5, 1.6), (0.7, 95.0, 0.3))]
        for r in rows:
            store.write(r)
    return tmp_path / "results"


def _no_builtin_names(text: str, where: str) -> None:
    found = sorted({m.group(0) for m in BUILTIN_NAMES.finditer(text)})
    assert not found, f"{where} says {found}"


def test_every_output_names_a_third_party_baseline_by_its_own_name(results, tmp_path):
    runner = CliRunner()
    board_md = runner.invoke(cli, ["leaderboard", "--results", str(results)])
    as_json = runner.invoke(cli, ["leaderboard", "--results", str(results), "--format", "json"])
    as_csv = runner.invoke(cli, ["leaderboard", "--results", str(results), "--format", "csv"])
    assert board_md.exit_code == as_json.exit_code == as_csv.exit_code == 0, board_md.output
    publish(results, tmp_path / "out")
    folder = next((tmp_path / "out").glob("*/"))
    boards = lb.build_boards(lb.load_results(results))
    terminal = summary(boards, "leaderboard.md")
    outputs = {"leaderboard.md": board_md.stdout, "--format json": as_json.stdout, "--format csv": as_csv.stdout,
               "page": (folder / "README.md").read_text(), "board.json": (folder / "board.json").read_text(),
               "board.csv": (folder / "board.csv").read_text(), "index": (tmp_path / "out" / "README.md").read_text(),
               "terminal": terminal.replace("Full board (every column", "")}
    for where, text in outputs.items():
        _no_builtin_names(text, where)
        assert "dense" in text, where

    for where in ("leaderboard.md", "page"):  # the baseline, the search and the oracle where their roles are
        text = outputs[where]
        assert "| Δ vs dense (paired, 95 % CI) |" in text and "| Verdict vs dense · target |" in text
        assert "95 % CI of Δ vs dense ≥ −1.75 points), smallest first" in text and "against the `dense` row" in text
        assert "| Size vs dense ‡ |" in text and "Significant differences from dense on this board" in text
        assert "mysearch's size (" in text and "¼ × mysearch" in text
        assert "Depth oracle (mybrute) vs depth search (mysearch)" in text
        assert "seed 0: mysearch depth 4, mybrute depth 3" in text
    assert "not distinguishable from dense" in outputs["page"] or "worse than dense" in outputs["page"]
    document = json.loads(outputs["board.json"])
    assert json.loads(outputs["--format json"]) == [document]
    assert document["baseline"] == "dense"
    assert {r["verdict"] for r in document["rows"]} <= {"reference", "better than dense", "worse than dense",
                                                         "not distinguishable from dense"}
    assert "delta_vs_baseline" in outputs["board.csv"].splitlines()[0]
    assert [s["caption"] for s in document["curves"]["matched_size"]["sizes_mb"]] == [
        "¼ × mysearch", "½ × mysearch", "mysearch's size", "2 × mysearch"]
    assert [v["search_depth"] for v in document["curves"]["oracle_vs_search"]] == [4, 4, 4]
    assert "Δ dense" in terminal and "Vs dense" in terminal and "≈ dense" in terminal

    (board,) = boards
    for figure in (plots.pareto_figure(board, "size_mb", "MB"), plots.curves_figure(board, "size_mb", "MB")):
        legend = " ".join(t.get_text() for ax in figure.axes for t in ax.get_legend().get_texts())
        assert "baseline (dense)" in legend
        _no_builtin_names(legend, "plot legend")

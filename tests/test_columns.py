"""The report layer's declarations: every stored row field and displayed column declared once
(report/columns), every board section in one ordered tuple (report/sections), and the outputs made
from them agree with each other."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from odnbench import PROTOCOL_VERSION, Facts, Result
from odnbench.report import boards as lb
from odnbench.report import columns as cols
from odnbench.report import records, sections
from odnbench.report.markdown import render_markdown, render_page
from odnbench.store import cell_key

REPORT = Path(__file__).resolve().parents[1] / "odnbench" / "report"


def test_the_stored_fields_are_the_row_stats_fields():
    """board.json / CSV store exactly the numbers RowStats holds: a field added to one and not the
    other fails here, not on a reader's board."""
    names = [f.name for f in dataclasses.fields(lb.RowStats)]
    assert sorted(cols.RECORD_FIELDS) == sorted(names)
    assert len(set(cols.RECORD_FIELDS)) == len(cols.RECORD_FIELDS)


def test_every_column_reads_stored_fields_and_every_table_names_declared_columns():
    for column in cols.COLUMNS:
        assert set(column.reads) <= set(cols.RECORD_FIELDS), column.key
    assert len(cols.BY_KEY) == len(cols.COLUMNS)
    for table in (cols.MAIN, cols.DETAIL, cols.ISO, cols.TERMINAL):
        assert all(key in cols.BY_KEY for key in table)
    assert all(cols.BY_KEY[k].terminal is not None for k in cols.TERMINAL)
    assert len(cols.MAIN) <= 9  # what a reader decides on; the rest is in the details


def test_no_other_module_spells_a_column_title():
    """Nothing but report/columns names a column: its titles appear in no other report module."""
    titles = {c.title for c in cols.COLUMNS if len(c.title) > 12} | {
        c.terminal_title for c in cols.COLUMNS if c.terminal_title and "\n" in c.terminal_title}
    for path in REPORT.glob("*.py"):
        if path.name == "columns.py":
            continue
        text = path.read_text()
        assert not [t for t in titles if repr(t)[1:-1] in text], path.name


def _result(method, seed, top1, size, role=None, params=None):
    config = {"protocol": PROTOCOL_VERSION, "method": method, "params": params or {}, "dataset": "d",
              "backbone": "b", "input": {}, "seed": seed, "preset": "quick", "recipe": {"epochs": 1}}
    return Result(status="ok", key=cell_key(config), config=config, role=role,
                  metrics={"top1": top1, "size_mb": size, "macs": int(size * 1e6), "params": int(size * 1e5)},
                  facts=Facts(), cost={"own": {"epochs": 10, "sample_steps": 1000, "train_seconds": 10.0}},
                  env={"device": "cpu"})


def _board():
    rs = []
    for seed, jitter in ((0, 0.0), (1, 0.3), (2, -0.2)):
        rs.append(_result("full", seed, 98.0 + jitter, 3.0, role="baseline"))
        for ratio, top1, size in ((0.3, 97.5, 1.6), (0.7, 95.0, 0.3)):
            rs.append(_result("prune", seed, top1 + jitter, size, params={"ratio": ratio}))
    return lb.build_boards(rs)


def test_leaderboard_md_and_the_published_page_are_the_same_sections():
    (board,) = _board()
    page = render_page(board, "cmd")
    whole = render_markdown([board], "res")
    # the same body, at one heading level lower in leaderboard.md, without the plot files
    assert "## Trade-off curves" in page and "### Trade-off curves" in whole
    body = sections.board_body(board, sections.View(level=2, plots=False))
    assert "\n".join(body) in page.replace("![Trade-off curves: top-1 against size](curves-vs-size.png)\n\n", "")\
        .replace("![Trade-off curves: top-1 against MACs](curves-vs-macs.png)\n\n", "").replace(
        "\n## Plots\n\n![Top-1 against size, Pareto front marked](accuracy-vs-size.png)\n\n"
        "![Top-1 against MACs, Pareto front marked](accuracy-vs-macs.png)\n", "")
    assert [s.name for s in sections.SECTIONS][-1] == "curves"
    shown = re.findall(r"^#+ (.*)$", whole, flags=re.M)
    assert shown[1:] == [h for h in re.findall(r"^#+ (.*)$", page, flags=re.M)[1:] if h != "Plots"]


def test_format_json_is_the_board_json_document(tmp_path):
    from odnbench.report.publish import publish
    from odnbench.store import ResultStore

    store = ResultStore(tmp_path / "results")
    for r in _board()[0].rows:
        for res in r.results:
            store.write(res)
    from odnbench import report

    listed = json.loads(report.render(tmp_path / "results", "json"))
    publish(tmp_path / "results", tmp_path / "out")
    (page,) = (tmp_path / "out").glob("*/board.json")
    assert listed == [json.loads(page.read_text())]
    assert {"caption", "rows", "iso_accuracy", "curves", "failed", "cut_short"} <= set(listed[0])
    assert records.render_csv(lb.build_boards(lb.load_results(tmp_path / "results"))) == \
        (page.parent / "board.csv").read_text()


def test_one_seed_never_shows_a_spread_of_zero():
    """n = 1 has no std and no interval: no output prints "± 0.00" for it (#33)."""
    from odnbench.report.terminal import summary

    rs = [_result("full", 0, 98.0, 3.0, role="baseline"), _result("prune", 0, 97.5, 1.6, params={"ratio": 0.3}),
          _result("prune", 0, 95.0, 0.3, params={"ratio": 0.7})]
    boards = lb.build_boards(rs)
    text = render_markdown(boards, "res") + render_page(boards[0], "cmd") + summary(boards, "x.md")
    assert "± 0.00" not in text and "±0.00" not in text
    assert "| 1= full | 98.00 (n=1) |" in text  # the details table: the mean and n alone
    assert "98.00 (n=1, no interval)" in text  # the main table says why there is no interval

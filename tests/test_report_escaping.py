"""Stored text is data in every output (#32): the same hostile names (a newline and `# H1`,
backticks, `|`, ESC/BEL, a very long label) fed to a published page, the index, leaderboard.md,
CSV (board.csv and --format csv), JSON (board.json and --format json) and the terminal summary.
Each output escapes them with its medium's one function (report/fmt: md_text / md_code,
csv_cell, terminal_text) and keeps its structure; JSON keeps the exact text."""

from __future__ import annotations

import csv
import io
import json
import re
import warnings

import pytest
from click.testing import CliRunner
from markdown_it import MarkdownIt

from odnbench import PROTOCOL_VERSION, Facts, Result
from odnbench.cli import cli
from odnbench.report import boards as lb
from odnbench.report.publish import publish
from odnbench.report.terminal import summary
from odnbench.store import ResultStore, cell_key

HOSTILE = "x\n# H1 `tick` p|q \x1b[31m\x07"
BASELINE = "base" + HOSTILE
SHORT = "short" + HOSTILE  # cut short: its folder name is listed on the page
LONG = "L" * 300  # a parameter value: the row's label is over 300 characters


def _result(method, seed, top1, role=None, params=None, converged=None, status="ok", error=None):
    config = {"protocol": PROTOCOL_VERSION, "method": method, "params": params or {}, "dataset": "d",
              "backbone": "b", "input": {}, "seed": seed, "preset": "quick", "recipe": {"epochs": 1}}
    ok = status == "ok"
    return Result(status=status, key=cell_key(config), config=config, role=role, error=error,
                  defaults={"note": ""},  # a note set away from its default is in the row's label
                  metrics={"top1": top1, "size_mb": 1.0, "macs": 1000000, "params": 100000} if ok else None,
                  facts=Facts(converged=converged,
                              cut_short="epoch cap\n# H1 \x1b[31m" if converged is False else None),
                  cost={"own": {"epochs": 10, "sample_steps": 1000, "train_seconds": 10.0}}, env={"device": "cpu"})


@pytest.fixture
def hostile(tmp_path):
    store = ResultStore(tmp_path / "results")
    for seed, jitter in ((0, 0.0), (1, 0.3)):
        store.write(_result(BASELINE, seed, 98.0 + jitter, role="baseline"))
        store.write(_result(SHORT, seed, 97.0 + jitter, converged=False))
        store.write(_result("prune", seed, 96.0 + jitter, params={"note": LONG}))
    store.write(_result("failing" + HOSTILE, 0, None, status="failed", error="boom `x` | \x1b[31m\x07\n# H1"))
    return tmp_path / "results"


def _markdown_is_safe(text: str, where: str) -> None:
    assert "\x1b" not in text and "\x07" not in text, where
    assert not re.search(r"^#+ H1", text, flags=re.M), f"{where}: a stored newline opened a heading"
    assert not re.search(r"(?<!\\)`tick", text), f"{where}: a stored backtick opened a code span"
    html = MarkdownIt("commonmark").enable("table").render(text)
    assert "<h1>H1" not in html and "<code>tick" not in html, where
    for table in re.findall(r"<table>.*?</table>", html, flags=re.S):  # no row fell out of its table
        heads = len(re.findall(r"<th[ >]", table.split("</thead>")[0]))
        for row in re.findall(r"<tr>(.*?)</tr>", table.split("</thead>")[1], flags=re.S):
            assert len(re.findall(r"<td[ >]", row)) == heads, f"{where}: a stored | split a cell"
    assert "p\\|q" in text, where  # the name is there, escaped


def _csv_is_safe(text: str, where: str, rows: int) -> None:
    assert "\x1b" not in text and "\x07" not in text, where
    parsed = list(csv.reader(io.StringIO(text)))
    assert len(parsed) == rows + 1 and len({len(r) for r in parsed}) == 1, where  # one line per row, all whole
    assert not any(cell.startswith(("=", "+", "@")) for r in parsed for cell in r), where
    assert any(cell.startswith("base") and "p|q" in cell for r in parsed for cell in r), where


def test_every_output_escapes_the_same_hostile_names(hostile, tmp_path):
    runner = CliRunner()
    outputs = {fmt: runner.invoke(cli, ["leaderboard", "--results", str(hostile), "--format", fmt])
               for fmt in ("md", "csv", "json")}
    assert all(o.exit_code == 0 for o in outputs.values()), {k: o.output for k, o in outputs.items()}
    publish(hostile, tmp_path / "out")
    (folder,) = [p for p in (tmp_path / "out").iterdir() if p.is_dir()]
    boards = lb.build_boards(lb.load_results(hostile))
    (board,) = boards
    assert len(board.rows) == 3 and len(board.failed) == 1 and len(board.cut_short) == 2

    page = (folder / "README.md").read_text()
    for where, text in (("page", page), ("leaderboard.md", outputs["md"].stdout),
                        ("index", (tmp_path / "out" / "README.md").read_text())):
        _markdown_is_safe(text, where)
    assert "Cut short (ranked, read with care):" in page  # each cell folder in a code span, one line, no backtick:
    assert re.search(r"^- `shortx # H1 tick p\|q \[31m -d-b-s0-[0-9a-f]{12}`: shortx # H1 \\`tick\\` p\\\|q \\\[31m "
                     r"seed 0: epoch cap # H1 \\\[31m$", page, flags=re.M)
    assert "Failed (not ranked):" in page and "seed 0: failed: boom \\`x\\` \\| \\[31m" in page
    assert f"prune (note={'L' * 300})" in page  # a long label is shown whole, inside its cell

    _csv_is_safe(outputs["csv"].stdout, "--format csv", 3)
    _csv_is_safe((folder / "board.csv").read_text(), "board.csv", 3)

    for where, text in (("--format json", outputs["json"].stdout), ("board.json", (folder / "board.json").read_text())):
        assert "\x1b" not in text and "\x07" not in text, where
        document = json.loads(text)
        document = document[0] if isinstance(document, list) else document
        assert {r["method_name"] for r in document["rows"]} == {BASELINE, SHORT, "prune"}  # the data, exact
        assert document["baseline"] == BASELINE

    from odnbench.report import plots

    with warnings.catch_warnings():  # a control character in a legend would be a missing glyph
        warnings.simplefilter("error")
        plots.pareto_png(board, "size_mb", "MB")
    text = summary(boards, "leaderboard.md")
    assert "\x1b" not in text and "\x07" not in text
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "base" in text and "Δ base" in text


def test_a_long_plot_label_keeps_its_end_which_tells_rows_apart():
    """Two rows whose labels share a long start (grid-wide parameters) and differ at the end stay
    distinguishable in a legend: the cut is in the middle, at most 80 characters, one line."""
    from odnbench.report.plots import _text

    common = "odn (finetune_max_epochs=30, finetune_schedule=plateau, max_epochs_per_depth=30, "
    a, b = _text(common + "target=98.5, target_mode=fixed) seed 0"), _text(common + "target=none) seed 0")
    assert len(a) == 80 and len(b) <= 80 and a != b and "\n" not in a
    assert a.startswith("odn (") and a.endswith("target_mode=fixed) seed 0") and "…" in a
    assert _text("short $label$") == r"short \$label\$"

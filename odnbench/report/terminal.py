"""The compact summary ``odnbench compare`` prints at the end: one narrow table per board with the
columns of the board page's main table (:data:`odnbench.report.columns.TERMINAL`: rank with ties,
method, depth, top-1 and Δ vs the baseline with their 95 % intervals, MB, MACs, training compute,
verdict, converged) that fits 100 columns, and the path of the whole board (speed-ups, latency and
the other details are there). Laid out by ``rich`` (cells wrap inside their column instead of running
past the edge); the numbers are formatted as on the markdown board.
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

from odnbench.report.boards import Board, stats_of
from odnbench.report.columns import TERMINAL, columns, terminal_cells
from odnbench.report.fmt import fmt_value, terminal_text

MAX_WIDTH = 100


def terminal_width(limit: int = MAX_WIDTH) -> int:
    """The terminal's width, at most ``limit`` (``limit`` when it cannot be told, e.g. piped)."""
    return min(limit, shutil.get_terminal_size((limit, 24)).columns)


def summary(boards: list[Board], board_path: str | Path, width: int | None = None) -> str:
    """The text printed after a grid: every board as a compact table, then where the whole board is."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    width = width or terminal_width()
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, highlight=False, markup=False,
                      emoji=False, soft_wrap=False)
    if not boards:
        console.print("No results yet.")
    for board in boards:
        seeds = board.caption.get("seeds") or []
        tol = fmt_value(float(board.tolerance))
        console.print(f"{terminal_text(board.key_title)}: {len(seeds)} seed{'' if len(seeds) == 1 else 's'} (means), "
                      f"tolerance {tol} points")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), expand=False, show_edge=False)
        roomy = width >= MAX_WIDTH  # laid out for 100 columns; from 80 on, only the method's label narrows
        for column in columns(TERMINAL):
            # Only the method's label wraps: numbers and words stay whole.
            table.add_column(column.terminal_header(board), justify=column.terminal_align or column.align,
                             overflow="fold", no_wrap=column.key != "method",
                             min_width=(16 if roomy else 10) if column.key == "method" else None)
        for row in board.rows:
            table.add_row(*terminal_cells(stats_of(row)))
        console.print(table)
        base = terminal_text(board.baseline_name)
        ns = sorted({stats_of(r).delta_n for r in board.rows if stats_of(r).delta_vs_baseline is not None})
        holm = (f" and Holm's adjustment over its {board.family_size} contrasts keeps p < 0.05"
                if board.family_size > 1 else "")
        notes = [f"± 95 % t-interval; Δ: paired t-interval over n={'/'.join(map(str, ns)) or 0} seeds; = tied "
                 f"(not separated from its group's leader); Δ vs {base} on its paired interval: better / worse only "
                 f"when it excludes 0{holm}, ≈ {base} otherwise; target: yes / no / undec(ided) on the interval"]
        if board.label_budgets:  # what the labels leave out, said once
            notes.append("set on every row of its method, so not in the labels: " + "; ".join(
                f"{terminal_text(method)} " + ", ".join(f"{terminal_text(k)}={fmt_value(v)}" for k, v in caps.items())
                for method, caps in board.label_budgets.items()))
        if board.baseline is not None and stats_of(board.baseline).reference_cut_short:
            notes.append(f"! the baseline {base} was cut short by an epoch cap")
        if any(stats_of(r).cost_train_macs is None for r in board.rows):
            notes.append("n/r: compute not recorded (results before 0.2)")
        if board.failed:
            notes.append(f"{len(board.failed)} failed")
        if any(stats_of(r).networks_differ for r in board.rows):
            notes.append("a– over b: min–max over seeds that chose different networks")
        if notes:
            console.print("; ".join(notes) + ".")
        console.print()
    console.print("Full board (every column, iso-accuracy view, failed and cut-short cells):")
    text = "\n".join(line.rstrip() for line in console.export_text(styles=False).splitlines())
    return f"{text}\n  {board_path}\n"  # the path on a line of its own, never folded: it is what one copies

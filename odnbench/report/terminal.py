"""The compact summary ``odnbench compare`` prints at the end: one narrow table per board with the
columns of the board page's main table (rank with ties, method, depth, top-1 and Δ vs full with
their 95 % intervals, MB, MACs, training compute, verdict, converged) that fits 100 columns, and the
path of the full board (speed-ups, latency and the other details are there). Laid out by ``rich`` (cells wrap inside their column instead of running
past the edge); the numbers are formatted as on the markdown board.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from odnbench.report.boards import Board, RowStats, stats_of
from odnbench.report.fmt import fmt_converged, fmt_depths, fmt_macs, fmt_span, fmt_value, terminal_text

MAX_WIDTH = 100


def terminal_width(limit: int = MAX_WIDTH) -> int:
    """The terminal's width, at most ``limit`` (``limit`` when it cannot be told, e.g. piped)."""
    return min(limit, shutil.get_terminal_size((limit, 24)).columns)


def _span(values: Iterable[object] | None, fmt: Callable[[float], str]) -> str:
    """min–max over seeds on two lines (``lo–`` above ``hi``), so that a range is no wider than one value."""
    text = fmt_span(values, fmt)
    return text.replace("–", "–\n", 1) if "–" in text[1:] else text


#: The verdict in a few characters (the legend under the table spells them out).
SHORT_VERDICT = {"better than full": "better", "worse than full": "worse", "not distinguishable from full": "≈ full",
                 "reference": "ref.", "–": "–"}


def _interval(mean: float | None, ci: Sequence[float] | None, signed: bool = False) -> str:
    if mean is None:
        return "–"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    # The half-width under the mean, so that an interval is no wider than one value.
    return f"{text}\nn=1" if ci is None else f"{text}\n±{(ci[1] - ci[0]) / 2:.2f}"


def _row(f: RowStats) -> list[str]:
    differ = bool(f.networks_differ)

    def net(key: str, fmt: Callable[[Any], str]) -> str:
        return _span(getattr(f, f"{key}_per_seed"), fmt) if differ else ("–" if getattr(f, key) is None else fmt(getattr(f, key)))

    verdict = SHORT_VERDICT.get(f.verdict, "n=1")
    if f.verdict not in ("reference", "–"):
        verdict += "\n" + {"undecided": "undec."}.get(f.meets_target_verdict, f.meets_target_verdict)
    delta = ("ref." if f.verdict == "reference" else _interval(f.delta_vs_full, f.delta_ci, signed=True))
    if f.reference_cut_short and f.delta_vs_full is not None:
        delta += "!"
    compute = "n/r" if f.cost_train_macs is None else fmt_macs(f.cost_train_macs, ".3g")
    return [f"{f.tie_rank}{'=' if f.tied else ''}", terminal_text(f.method), fmt_depths(f.depth),
            _interval(f.top1_mean, f.top1_ci), delta, net("size_mb", lambda v: f"{v:.3f}"),
            net("macs", lambda v: fmt_macs(v, ".3g")), compute, verdict, fmt_converged(f.converged)]


COLUMNS: tuple[tuple[str, Literal["left", "right"]], ...] = (("#", "right"), ("Method", "left"), ("Depth", "right"), ("Top-1 %\n±95% CI", "right"),
           ("Δ full\npaired", "right"), ("MB", "right"), ("MACs", "right"), ("Train\ncompute", "right"),
           ("Vs full\ntarget", "left"), ("Con-\nverged", "left"))


def summary(boards: list[Board], board_path: str | Path, width: int | None = None) -> str:
    """The text printed after a grid: every board as a compact table, then where the full one is."""
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
        console.print(f"{terminal_text(board.title)}: {len(seeds)} seed{'' if len(seeds) == 1 else 's'} (means), "
                      f"tolerance {tol} points")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), expand=False, show_edge=False)
        roomy = width >= MAX_WIDTH  # laid out for 100 columns; from 80 on, only the method's label narrows
        for name, justify in COLUMNS:
            # Only the method's label wraps: numbers and words stay whole.
            table.add_column(name, justify=justify, overflow="fold", no_wrap=name != "Method",
                             min_width=(16 if roomy else 10) if name == "Method" else None)
        for row in board.rows:
            table.add_row(*_row(stats_of(row)))
        console.print(table)
        ns = sorted({stats_of(r).delta_n for r in board.rows if stats_of(r).delta_vs_full is not None})
        notes = [f"± 95 % t-interval; Δ: paired t-interval over n={'/'.join(map(str, ns)) or 0} seeds; = tied "
                 "(not separated from its group's leader); Δ vs full on its "
                 "paired interval: better / worse only when it excludes 0, ≈ full otherwise; target: yes / no / "
                 "undec(ided) on the interval"]
        if board.baseline is not None and stats_of(board.baseline).reference_cut_short:
            notes.append("! the full-depth reference was cut short by an epoch cap")
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

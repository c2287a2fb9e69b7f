"""The compact summary ``odnbench compare`` prints at the end: one narrow table per board (rank,
method, depth, top-1 ± std, MB, MACs, speed-ups, cost, converged) that fits 100 columns, and the
path of the full board. Laid out by ``rich`` (cells wrap inside their column instead of running
past the edge); the numbers are formatted as on the markdown board.
"""

from __future__ import annotations

import io
import shutil

from odnbench.report.boards import Board
from odnbench.report.fmt import fmt_converged, fmt_depths, fmt_macs, fmt_span, fmt_value, fmt_x

MAX_WIDTH = 100


def terminal_width(limit: int = MAX_WIDTH) -> int:
    """The terminal's width, at most ``limit`` (``limit`` when it cannot be told, e.g. piped)."""
    return min(limit, shutil.get_terminal_size((limit, 24)).columns)


def _short_seconds(s) -> str:
    """45s, 6.4m, 1.2h: wall time in at most 5 characters."""
    if s is None:
        return "–"
    if s < 100:
        return f"{s:.0f}s"
    if s < 6000:
        return f"{s / 60:.1f}m"
    return f"{s / 3600:.1f}h"


def _span(values, fmt) -> str:
    """min–max over seeds on two lines (``lo–`` above ``hi``), so that a range is no wider than one value."""
    text = fmt_span(values, fmt)
    return text.replace("–", "–\n", 1) if "–" in text[1:] else text


def _row(f: dict) -> list[str]:
    differ = bool(f.networks_differ)

    def net(key, fmt):
        return _span(getattr(f, f"{key}_per_seed"), fmt) if differ else ("–" if getattr(f, key) is None else fmt(getattr(f, key)))

    top1 = "–" if f.top1_mean is None else f"{f.top1_mean:.2f} ± {f.top1_std:.2f}"
    busy = "*" if f.latency_busy_seeds else ""
    macs_x = _span(f.macs_speedup_range, fmt_x) if differ else fmt_x(f.macs_speedup)
    measured_x = _span(f.measured_speedup_range, fmt_x) if differ else fmt_x(f.measured_speedup)
    cost = f"{_short_seconds(f.cost_own_seconds)} / {_short_seconds(f.cost_seconds)}"
    return [str(f.rank), f.method, fmt_depths(f.depth), top1,
            net("size_mb", lambda v: f"{v:.3f}"), net("macs", lambda v: fmt_macs(v, ".3g")), macs_x, measured_x + busy, cost,
            fmt_converged(f.converged)]


COLUMNS = (("#", "right"), ("Method", "left"), ("Depth", "right"), ("Top-1 %\n± std", "right"), ("MB", "right"),
           ("MACs", "right"), ("Speed-up\n×MACs", "right"), ("\n×meas.", "right"),
           ("Cost (wall)\nown / total", "right"), ("Con-\nverged", "left"))


def summary(boards: list[Board], board_path, width: int | None = None) -> str:
    """The text printed after a grid: every board as a compact table, then where the full one is."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    width = width or terminal_width()
    console = Console(file=io.StringIO(), width=width, record=True, color_system=None, highlight=False,
                      emoji=False, soft_wrap=False)
    if not boards:
        console.print("No results yet.")
    for board in boards:
        seeds = board.caption.get("seeds") or []
        tol = fmt_value(float(board.tolerance))
        console.print(f"{board.title}: {len(seeds)} seed{'' if len(seeds) == 1 else 's'} (means), "
                      f"tolerance {tol} points")
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0), expand=False, show_edge=False)
        roomy = width >= MAX_WIDTH  # laid out for 100 columns; a narrower terminal wraps every cell instead
        for name, justify in COLUMNS:
            # Only the method's label wraps: numbers stay whole.
            table.add_column(name, justify=justify, overflow="fold", no_wrap=roomy and name != "Method",
                             min_width=16 if roomy and name == "Method" else None)
        for row in board.rows:
            table.add_row(*_row(row.stats))
        console.print(table)
        notes = []
        if board.failed:
            notes.append(f"{len(board.failed)} failed")
        if any(r.stats.latency_busy_seeds for r in board.rows):
            notes.append("* latency measured while other processes held the CPU")
        if any(r.stats.networks_differ for r in board.rows):
            notes.append("a– over b: min–max over seeds that chose different networks")
        if notes:
            console.print("; ".join(notes) + ".")
        console.print()
    console.print("Full board (every column, iso-accuracy view, failed and cut-short cells):")
    text = "\n".join(line.rstrip() for line in console.export_text(styles=False).splitlines())
    return f"{text}\n  {board_path}\n"  # the path on a line of its own, never folded: it is what one copies

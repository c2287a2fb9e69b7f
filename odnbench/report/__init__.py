"""The report layer: leaderboards as data (:mod:`.boards`), every column declared once
(:mod:`.columns`), a board's sections in page order (:mod:`.sections`), markdown (:mod:`.markdown`),
JSON/CSV (:mod:`.records`), plots (:mod:`.plots`) and published pages (:mod:`.publish`).

Everything here is a function of stored results alone (:class:`odnbench.store.ResultStore`): it
imports neither the harness nor the plugin registry, so a board never changes with the plugins
installed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from odnbench.report.boards import DEFAULT_TOLERANCE, Board, Row, build_boards, load_results


def render(results_dir: str | Path, fmt: str = "md", tolerance: float = DEFAULT_TOLERANCE,
           remeasure_latency: bool = False, say: Callable[[str], None] | None = None,
           latency_batch: int | None = None) -> str:
    """The leaderboard of a results folder as markdown, JSON (one board document per board) or CSV;
    ``remeasure_latency``: time the stored models again, serially (:mod:`.remeasure`), at batch 1 and at
    ``latency_batch`` (default :data:`.remeasure.LATENCY_BATCH`), instead of using stored latency (the
    measurements are stored beside each record, and used again by a later render without it)."""
    from odnbench.report import markdown, records
    from odnbench.report.remeasure import with_latency

    results = with_latency(load_results(results_dir), results_dir, remeasure_latency, latency_batch, say)
    boards = build_boards(results, tolerance=tolerance)
    if fmt == "json":
        return records.render_json(boards)
    if fmt == "csv":
        return records.render_csv(boards)
    return markdown.render_markdown(boards, str(results_dir))


__all__ = ["DEFAULT_TOLERANCE", "Board", "Row", "build_boards", "load_results", "render"]

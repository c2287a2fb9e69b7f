"""Boards as data: ``leaderboard --format json`` (one board document per board, each what a published
``board.json`` holds) and CSV (one line per row, every stored field of :mod:`odnbench.report.columns`)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from odnbench.report.boards import Board
from odnbench.report.columns import row_record
from odnbench.report.fmt import csv_cell
from odnbench.report.sections import board_document, dump_json

__all__ = ["board_document", "board_records", "render_csv", "render_json", "row_record"]


def board_records(boards: list[Board]) -> list[dict[str, Any]]:
    return [row_record(board, row) for board in boards for row in board.rows]


def render_json(boards: list[Board]) -> str:
    """Every board's document (:func:`odnbench.report.sections.board_document`), as a JSON list."""
    return dump_json([board_document(board) for board in boards])


def render_csv(boards: list[Board]) -> str:
    records = board_records(boards)
    buffer = io.StringIO()
    if records:
        # Every record's fields in order (a board without the optional fields has fewer; its cells stay empty).
        names = list(dict.fromkeys(k for rec in records for k in rec if k != "keys"))
        writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({k: csv_cell(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)
                             for k, v in rec.items()})
    return buffer.getvalue()

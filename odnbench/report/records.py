"""Boards as data: one JSON record per row (``--format json``), CSV, and a board's JSON document."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from odnbench.report.boards import RECORD_FIELDS, Board, Row, cut_short_reason, failure_reason
from odnbench.report.curves import curves_document
from odnbench.report.fmt import csv_cell


def _clean(v: Any) -> Any:
    """Stable numbers for JSON/CSV: integral floats become ints, others are rounded to 6 places."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        return int(v) if v.is_integer() and abs(v) < 2**53 else round(v, 6)
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    return v


def row_record(board: Board, row: Row) -> dict[str, Any]:
    rec = {"dataset": board.dataset, "backbone": board.backbone, "preset": board.preset, "device": board.device}
    rec.update({k: _clean(getattr(row.stats, k)) for k in RECORD_FIELDS})
    return rec


def board_records(boards: list[Board]) -> list[dict[str, Any]]:
    return [row_record(board, row) for board in boards for row in board.rows]


def board_document(board: Board) -> dict[str, Any]:
    """One board as JSON: caption, ranked rows, the iso-accuracy order, reported numbers, problems,
    and the trade-off curves when the board has any (:mod:`odnbench.report.curves`)."""
    curves = curves_document(board)
    document: dict[str, Any] = _clean({
        "board": {"dataset": board.dataset, "backbone": board.backbone, "preset": board.preset,
                  "device": board.device, "slug": board.slug},
        "caption": board.caption,
        "tolerance": float(board.tolerance),
        "baseline": board.baseline.label if board.baseline else None,
        "rows": [row_record(board, row) for row in board.rows],
        "iso_accuracy": [row.label for row in board.iso_rows],
        "reported": board.reported,
        "reference_notes": board.reference_notes,
        "failed": [{"key": r.key, "method": r.config.get("method"), "seed": r.config.get("seed"),
                    "reason": failure_reason(r)} for r in board.failed],
        "cut_short": [{"key": r.key, "method": r.config.get("method"), "seed": r.config.get("seed"),
                       "reason": cut_short_reason(r)} for r in board.cut_short],
        **({"curves": curves} if curves else {}),
    })
    return document


def render_json(boards: list[Board]) -> str:
    return json.dumps(board_records(boards), indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"


def render_csv(boards: list[Board]) -> str:
    records = board_records(boards)
    buffer = io.StringIO()
    if records:
        names = [k for k in records[0] if k != "keys"]
        writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({k: csv_cell(json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else v)
                             for k, v in rec.items()})
    return buffer.getvalue()

"""Trade-off curves on a board, from stored results alone (no plugin is consulted).

- **Families**: a method's rows that differ only in numeric parameters (a sweep: ``prune.ratio``,
  ``slim.width``) form one curve, one point per row: top-1 mean and std over seeds against the
  mean size (or MACs). A row alone is a one-point family.
- **Depth curves**: a result's ``curve`` (a depth search's best checkpoint at every depth it tried,
  a depth oracle's model at every depth) forms a curve of its own, points grouped by depth over seeds.
  A search's points below the chosen depth are its intermediate models, not models it exports.
- **Pareto front** over every plotted point of every family.
- **Accuracy at matched size**: at the depth search's size (ODN's), ½, ¼ and 2× of it, each family's top-1 interpolated
  linearly in log size between its two neighbouring points; no extrapolation outside a family's
  range (a one-point family counts only at its own size, within :data:`SAME_SIZE`).
- **Depth oracle vs depth search**, per seed: the depth each chose and the ratio of their own costs.

Rows are found by their stored ``role`` and named by their method (``odn``, ``oracle``, or a
plugin's), never by the built-ins' names.
"""

from __future__ import annotations

import itertools
import math
import statistics
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from odnbench.errors import OdnbenchDeprecationWarning
from odnbench.report.boards import Board, Row, own_cost, pick_depth_search
from odnbench.report.fmt import fmt_value, md_text
from odnbench.result import LEGACY_DEPTH_ROLES, Result
from odnbench.store import canonical_json

#: A one-point family "is at" a matched size when within this relative distance of it.
SAME_SIZE = 0.02
#: Matched sizes: factors of the depth search's size, each with its caption ({search}: the method's name).
MATCHED = ((0.25, "¼ × {search}"), (0.5, "½ × {search}"), (1.0, "{search}'s size"), (2.0, "2 × {search}"))

#: A row's part in the depth comparison, as a stored ``role``: the depth search (ODN: its curve is
#: its search checkpoints, its row the one matched sizes are taken at) and the brute-force oracle
#: it is compared with (every depth trained from scratch).
DEPTH_SEARCH = "depth-search"
DEPTH_ORACLE = "depth-oracle"
# Results stored before a method could say so name that part by their method alone: the built-in
# search and oracle, as odnbench.result.LEGACY_DEPTH_ROLES (where old records are upgraded) says.


def depth_role(row: Row) -> str | None:
    """The row's stored role when it is one of the depth comparison's, else the legacy one of its method."""
    stored = next((r.role for r in row.results if r.role in (DEPTH_SEARCH, DEPTH_ORACLE)), None)
    return stored or LEGACY_DEPTH_ROLES.get(row.method)


@dataclass
class Point:
    size_mb: float
    macs: float
    top1: float
    std: float | None  # sample std over seeds (None with one seed)
    n: int
    label: str  # the swept value(s) or the depth, e.g. "ratio=0.5", "depth 3"
    keys: list[str] = field(default_factory=list)  # the cells it comes from


@dataclass
class Family:
    name: str
    method: str
    kind: str  # "sweep" (rows), "depth" (a result's curve points)
    swept: list[str]
    points: list[Point]  # by increasing size

    def at(self, size: float, x: str = "size_mb") -> float | None:
        """Top-1 interpolated at ``size`` (linear in log x), None outside the family's range."""
        return interpolate([(getattr(p, x), p.top1) for p in self.points], size)


def interpolate(points: list[tuple[float, float]], x: float) -> float | None:
    """y at ``x``, linear in log x between the two neighbouring points; None outside their range
    (no extrapolation). One point: its y when ``x`` is within :data:`SAME_SIZE` of it."""
    pts = sorted((px, py) for px, py in points if px > 0)
    if not pts or x <= 0:
        return None
    if len(pts) == 1 or any(abs(px - x) <= SAME_SIZE * x for px, _ in pts):
        near = [py for px, py in pts if abs(px - x) <= SAME_SIZE * x]
        return statistics.fmean(near) if near else None
    if x < pts[0][0] or x > pts[-1][0]:
        return None
    for (x0, y0), (x1, y1) in itertools.pairwise(pts):
        if x0 <= x <= x1:
            if x1 == x0:
                return (y0 + y1) / 2
            t = (math.log(x) - math.log(x0)) / (math.log(x1) - math.log(x0))
            return y0 + t * (y1 - y0)
    return None


def _mean(values: Iterable[object]) -> float | None:
    nums: list[float] = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return statistics.fmean(nums) if nums else None


def _std(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def _row_point(row: Row, label: str) -> Point | None:
    ms = [r.metrics or {} for r in row.results]
    size, macs = _mean([m.get("size_mb") for m in ms]), _mean([m.get("macs") for m in ms])
    if size is None or macs is None:
        return None
    return Point(size, macs, statistics.fmean(row.top1), _std(row.top1), len(row.top1), label,
                 [r.key for r in row.results])


def _numeric(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def sweep_families(board: Board) -> list[Family]:
    """The board's rows grouped into families: same method, recipe and input, same parameters but
    for those that take numeric values varying between the method's rows (the swept ones)."""
    by_method: dict[str, list[Row]] = {}
    for row in board.rows:
        by_method.setdefault(row.method, []).append(row)
    families = []
    for method, rows in sorted(by_method.items()):
        keys = sorted({k for row in rows for k in row.params_config})
        swept = [k for k in keys if len({canonical_json(row.params_config.get(k)) for row in rows}) > 1
                 and all(_numeric(row.params_config.get(k)) for row in rows)]
        groups: dict[str, list[Row]] = {}
        for row in rows:
            c = row.results[0].config
            ident = canonical_json({"params": {k: v for k, v in row.params_config.items() if k not in swept},
                                    "recipe": c.get("recipe"), "input": c.get("input")})
            groups.setdefault(ident, []).append(row)
        for members in groups.values():
            mine = [k for k in swept if len({canonical_json(r.params_config.get(k)) for r in members}) > 1]
            points = []
            for row in members:
                label = ", ".join(f"{k}={fmt_value(row.params_config.get(k))}" for k in mine) or row.label
                point = _row_point(row, label)
                if point is not None:
                    points.append(point)
            if not points:
                continue
            points.sort(key=lambda p: (p.size_mb, p.top1))
            name = members[0].label if len(members) == 1 else _family_name(members[0], mine)
            families.append(Family(name, method, "sweep", mine, points))
    return families


def _family_name(row: Row, swept: list[str]) -> str:
    """The row's label without the swept parameters, then "over" them: ``prune over ratio``."""
    label = row.label
    inside = label[label.find("(") + 1:-1] if label.endswith(")") and "(" in label else ""
    kept = [part for part in inside.split(", ") if part and part.split("=", 1)[0] not in swept]
    base = f"{row.method} ({', '.join(kept)})" if kept else row.method
    return f"{base} over {', '.join(swept)}"


def depth_families(board: Board) -> list[Family]:
    """One family per row whose results carry ``curve`` points: grouped by depth over seeds."""
    families = []
    for row in board.rows:
        by_depth: dict[Any, list[tuple[Result, dict[str, Any]]]] = {}
        for r in row.results:
            for p in r.curve or []:
                if isinstance(p, dict) and _numeric(p.get("top1")) and _numeric(p.get("size_mb")):
                    by_depth.setdefault(p.get("depth"), []).append((r, p))
        if not by_depth:
            continue
        points = []
        for depth, members in sorted(by_depth.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            tops = [p["top1"] for _, p in members]
            points.append(Point(statistics.fmean(p["size_mb"] for _, p in members),
                                statistics.fmean(p.get("macs") or 0 for _, p in members),
                                statistics.fmean(tops), _std(tops), len(tops),
                                f"depth {depth}" if depth is not None else "point", [r.key for r, _ in members]))
        points.sort(key=lambda p: (p.size_mb, p.top1))
        what = "search checkpoint per depth" if depth_role(row) == DEPTH_SEARCH else "model per depth"
        families.append(Family(f"{row.label}: {what}", row.method, "depth", ["depth"], points))
    return families


def all_families(board: Board) -> list[Family]:
    return sweep_families(board) + depth_families(board)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats: smaller-or-equal x and higher-or-equal y,
    one of them strictly. Returned in increasing x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front, best = [], -float("inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def pareto_points(families: list[Family], x: str = "size_mb") -> list[tuple[str, Point]]:
    """The points no other point beats (smaller-or-equal x and higher-or-equal top-1), by x."""
    flat = [(f.name, p) for f in families for p in f.points]
    front = pareto_front([(getattr(p, x), p.top1) for _, p in flat])
    return [flat[i] for i in front]


def depth_search_row(board: Board) -> Row | None:
    """The depth search's row (ODN's) for matched sizes: the one with the method's defaults (shortest label) first."""
    return board.search if board.search is not None else pick_depth_search(board.rows)


def odn_row(board: Board) -> Row | None:
    """0.2's name of :func:`depth_search_row` (deprecated)."""
    warnings.warn("odnbench.report.curves.odn_row is deprecated and will be removed in odnbench 0.4; call "
                  "depth_search_row", OdnbenchDeprecationWarning, stacklevel=2)
    return depth_search_row(board)


@dataclass
class MatchedTable:
    sizes: list[tuple[str, float]]  # (caption, MB)
    rows: list[tuple[str, list[float | None]]]  # (family, top-1 at each size)
    best: list[str | None]  # per size: the family with the highest top-1 there
    lead: list[float | None] = field(default_factory=list)  # its lead over the next family there (points)


def matched_size_table(board: Board, families: list[Family] | None = None) -> MatchedTable | None:
    """Each family's top-1 at the depth search's size, ½, ¼ and 2× of it (interpolated; None: outside its range)."""
    search = depth_search_row(board)
    point = _row_point(search, search.label) if search else None
    if search is None or point is None:
        return None
    families = families if families is not None else all_families(board)
    sizes = [(caption.format(search=search.method), factor * point.size_mb) for factor, caption in MATCHED]
    rows = [(f.name, [f.at(s) for _, s in sizes]) for f in families]
    rows = [r for r in rows if any(v is not None for v in r[1])]
    best, lead = [], []
    for i in range(len(sizes)):
        present = sorted(((v, name) for name, vals in rows for v in [vals[i]] if v is not None), reverse=True)
        best.append(present[0][1] if present else None)
        lead.append(present[0][0] - present[1][0] if len(present) > 1 else None)
    return MatchedTable(sizes, rows, best, lead)


@dataclass
class OracleVsSearch:
    """One seed of the depth oracle against the depth search, each named by its method."""

    seed: int
    search_depth: int | None
    oracle_depth: int | None
    search_cost: dict[str, Any]
    oracle_cost: dict[str, Any]
    search: str  # the two methods' names
    oracle: str
    oracle_to_depth: dict[str, Any] | None = None  # its cost up to its depth, when it trained deeper ones too

    def ratio(self, key: str, to_depth: bool = False) -> float | None:
        a, b = self.search_cost.get(key), ((self.oracle_to_depth if to_depth else self.oracle_cost) or {}).get(key)
        return a / b if _numeric(a) and _numeric(b) and b else None


def oracle_vs_search(board: Board) -> list[OracleVsSearch]:
    """Per seed with both a depth search's result (its default row) and a depth oracle's: the depths
    they chose and their own costs (the results both depend on are left out of both)."""
    search = depth_search_row(board)
    oracles = sorted((r for r in board.rows if depth_role(r) == DEPTH_ORACLE), key=lambda r: (len(r.label), r.label))
    if search is None or not oracles:
        return []
    by_seed = {r.seed: r for r in oracles[0].results}
    out = []
    for r in search.results:
        o = by_seed.get(r.seed)
        if o is not None:
            out.append(OracleVsSearch(r.seed, r.facts.depth, o.facts.depth, own_cost(r.cost or {}),
                                      own_cost(o.cost or {}), search.method, oracles[0].method, _cost_to_depth(o)))
    return out


def oracle_vs_odn(board: Board) -> list[OracleVsSearch]:
    """0.2's name of :func:`oracle_vs_search` (deprecated)."""
    warnings.warn("odnbench.report.curves.oracle_vs_odn is deprecated and will be removed in odnbench 0.4; call "
                  "oracle_vs_search", OdnbenchDeprecationWarning, stacklevel=2)
    return oracle_vs_search(board)


def _cost_to_depth(r: Result) -> dict[str, Any] | None:
    """The oracle's own cost up to the depth it chose (a sequential search's), from its per-depth
    records; None when it trained no deeper depth (its whole cost is that already)."""
    depths = (r.method_info or {}).get("depths")
    if not isinstance(depths, list) or not isinstance(r.facts.depth, int):
        return None
    rows = [d for d in depths if isinstance(d, dict) and isinstance(d.get("cost"), dict)]
    if not any(_numeric(d.get("depth")) and d["depth"] > r.facts.depth for d in rows):
        return None
    mine = [d["cost"] for d in rows if _numeric(d.get("depth")) and d["depth"] <= r.facts.depth]
    keys = ["epochs", "sample_steps", "train_seconds"]
    keys += ["train_macs"] if all(_numeric(c.get("train_macs")) for c in mine) else []  # records before 0.2 lack it
    return {k: sum(c.get(k) or 0 for c in mine) for k in keys}


def _f(v: float | None, digits: int = 2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def curves_document(board: Board) -> dict[str, Any] | None:
    """The curves part of a board as data (board.json): every family's points with the cell keys
    they come from, the accuracy at matched size and depth oracle vs depth search; None when no
    family has two points (the page then has no curves section either)."""
    families = all_families(board)
    if not any(len(f.points) > 1 for f in families):
        return None
    table = matched_size_table(board, families)
    return {
        "families": [{"name": f.name, "method": f.method, "kind": f.kind, "swept": f.swept,
                      "points": [{"label": p.label, "size_mb": p.size_mb, "macs": p.macs, "top1": p.top1,
                                  "top1_std": p.std, "n": p.n, "keys": p.keys} for p in f.points]}
                     for f in families],
        "pareto_front": [{"family": name, "label": p.label, "size_mb": p.size_mb, "top1": p.top1}
                         for name, p in pareto_points(families)],
        "matched_size": None if table is None else {
            "interpolated": "linear in log size between neighbouring points; null outside a family's range",
            "sizes_mb": [{"caption": c, "size_mb": s} for c, s in table.sizes],
            "families": [{"name": name, "top1": vals} for name, vals in table.rows],
            "best": table.best, "lead": table.lead},
        "oracle_vs_search": [{"seed": v.seed, "search_depth": v.search_depth, "oracle_depth": v.oracle_depth,
                              "search_own_cost": v.search_cost, "oracle_own_cost": v.oracle_cost,
                              "oracle_cost_to_its_depth": v.oracle_to_depth,
                              "ratio_train_macs": v.ratio("train_macs"),
                              "ratio_sample_steps": v.ratio("sample_steps"),
                              "ratio_train_seconds": v.ratio("train_seconds")} for v in oracle_vs_search(board)],
    }


CURVES_INTRO = (
    "Each line is a family: one method's rows that differ only in a swept parameter, or one result's models at "
    "every depth it trained (a depth search: its best search checkpoint per depth, before fine-tuning; points below "
    "the chosen depth are the search's intermediate models, not models it exports; a depth oracle: each depth trained "
    "from scratch). Points are means over seeds, bars ± std over seeds; the black step line is the Pareto front over "
    "every point of every family.")


def matched_intro(search: str) -> str:
    return (
        f"Top-1 % of each family at {search}'s size and at ¼, ½ and 2× of it, **interpolated** linearly in log size "
        f"between the family's two neighbouring points (a one-point family only at its own size, within "
        f"{SAME_SIZE:.0%}); – where the size lies outside the family's range (no extrapolation). Best: the family with "
        "the highest top-1 at that size; these are means over seeds without an interval, so a lead smaller than the "
        "rows' 95 % CIs in the table above does not separate two families.")


def oracle_intro(search: str, oracle: str) -> str:
    return (f"Per seed: the depth the depth search ({search}) chose and the depth the brute-force depth oracle "
            f"({oracle}) chose (each depth trained from scratch, the same threshold rule), and {search}'s own cost over "
            f"{oracle}'s (the results both depend on are left out of both).")


def has_curves(board: Board) -> bool:
    """Whether the board has a trade-off curve: a family of two points or more."""
    return any(len(f.points) > 1 for f in all_families(board))


def curve_sections(board: Board, plots: dict[str, str] | None = None, level: int = 2) -> list[str]:
    """The markdown of the curves part of a board page (empty when the board has nothing to show)."""
    families = all_families(board)
    if not any(len(f.points) > 1 for f in families):
        return []
    h = "#" * level
    out = [f"{h} Trade-off curves", "", CURVES_INTRO, ""]
    for alt, path in (plots or {}).items():
        out += [f"![{alt}]({path})", ""]
    out += ["| Family | Points (size MB → top-1 %) |", "|---|---|"]
    for f in families:
        if len(f.points) > 1:
            pts = "; ".join(f"{p.label}: {p.size_mb:.3f} → {_f(p.top1)}" + (f" ± {p.std:.2f}" if p.std else "")
                            for p in f.points)
            out.append(f"| {md_text(f.name)} | {md_text(pts)} |")
    table = matched_size_table(board, families)
    search = depth_search_row(board)
    if table is not None and search is not None:
        out += ["", f"{h} Accuracy at matched size", "", matched_intro(md_text(search.method)), ""]
        out.append("| Family | " + " | ".join(f"{md_text(c)} ({s:.3f} MB)" for c, s in table.sizes) + " |")
        out.append("|---|" + "---|" * len(table.sizes))
        for name, vals in table.rows:
            out.append(f"| {md_text(name)} | " + " | ".join(_f(v) for v in vals) + " |")
        out.append("| **Best** (lead over the next) | " + " | ".join(
            f"{md_text(b)} (+{lead:.2f})" if b and lead is not None else md_text(b) if b else "–"
            for b, lead in zip(table.best, table.lead)) + " |")
    versus = oracle_vs_search(board)
    if versus:
        sn, on = md_text(versus[0].search), md_text(versus[0].oracle)
        out += ["", f"{h} Depth oracle ({on}) vs depth search ({sn})", "", oracle_intro(sn, on), ""]
        for v in versus:
            same = ("the same depth" if v.search_depth == v.oracle_depth else
                    "a deeper depth" if (v.search_depth or 0) > (v.oracle_depth or 0) else "a shallower depth")
            out.append(f"- seed {v.seed}: {sn} depth {v.search_depth}, {on} depth {v.oracle_depth} ({sn} found {same}); "
                       f"own epochs {fmt_value(v.search_cost.get('epochs'))} vs {fmt_value(v.oracle_cost.get('epochs'))}, "
                       f"cost ratio {sn}/{on} {_f(v.ratio('train_macs'))} by training compute (MACs), "
                       f"{_f(v.ratio('sample_steps'))} by sample-steps, "
                       f"{_f(v.ratio('train_seconds'))} by training time"
                       + (f"; against {on}'s cost up to its depth (a sequential search): "
                          f"{_f(v.ratio('train_macs', True))} by training compute, "
                          f"{_f(v.ratio('sample_steps', True))} by sample-steps" if v.oracle_to_depth else ""))
    return out

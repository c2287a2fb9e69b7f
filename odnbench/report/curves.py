"""Trade-off curves on a board, from stored results alone (no plugin is consulted).

- **Families**: a method's rows that differ only in numeric parameters (a sweep: ``prune.ratio``,
  ``slim.width``) form one curve, one point per row: top-1 mean and std over seeds against the
  mean size (or MACs). A row alone is a one-point family.
- **Early exits**: an early-exit network's points (``depth`` null, ``exits.threshold`` τ) form a family of
  their own, one point per τ over seeds, on accuracy against MACs (every τ is the same network, one size).
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
from odnbench.report.boards import Board, Row, match_missed, own_cost, pick_depth_search
from odnbench.report.fmt import fmt_value, md_text
from odnbench.report.stats import paired
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
    seeds: list[Any] = field(default_factory=list)  # the seeds it is a mean over (n of them)

    def marked(self, board_n: int) -> bool:
        """Present on fewer seeds than the board has: shown with its n, never on a Pareto front or "Best"."""
        return self.n < board_n


@dataclass
class Family:
    name: str
    method: str
    kind: str  # "sweep" (rows), "depth" (a result's curve points)
    swept: list[str]
    points: list[Point]  # by increasing size
    #: per seed, the family's (size MB, MACs, top-1) points on that seed alone: what matched sizes interpolate
    by_seed: dict[Any, list[tuple[float, float, float]]] = field(default_factory=dict)
    #: why the family is left out of matched claims (a control whose match missed its target), else None
    match_missed: str | None = None

    def at_seed(self, seed: Any, size: float, x: str = "size_mb") -> float | None:
        """Top-1 on one seed interpolated at ``size`` (linear in log x), None outside that seed's range."""
        i = 0 if x == "size_mb" else 1
        return interpolate([(p[i], p[2]) for p in self.by_seed.get(seed, [])], size)

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
    """A row as one point: only when every seed exported the same network (no mean over different ones)."""
    ms = [r.metrics or {} for r in row.results]
    if len({(m.get("size_mb"), m.get("macs")) for m in ms}) > 1:
        return None
    size, macs = _mean([m.get("size_mb") for m in ms]), _mean([m.get("macs") for m in ms])
    if size is None or macs is None:
        return None
    return Point(size, macs, statistics.fmean(row.top1), _std(row.top1), len(row.top1), label,
                 [r.key for r in row.results], list(row.seeds))


def _seed_points(row: Row) -> list[Point]:
    """A row whose seeds exported different networks: one point per seed (n=1), never their mean."""
    out = []
    for r, top1 in zip(row.results, row.top1):
        m = r.metrics or {}
        if _numeric(m.get("size_mb")) and _numeric(m.get("macs")):
            out.append(Point(float(m["size_mb"]), float(m["macs"]), top1, None, 1, f"seed {r.seed}", [r.key], [r.seed]))
    return out


def _row_by_seed(row: Row) -> dict[Any, tuple[float, float, float]]:
    out = {}
    for r, top1 in zip(row.results, row.top1):
        m = r.metrics or {}
        if _numeric(m.get("size_mb")) and _numeric(m.get("macs")):
            out[r.seed] = (float(m["size_mb"]), float(m["macs"]), top1)
    return out





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
            by_seed: dict[Any, list[tuple[float, float, float]]] = {}
            missed = next((m for row in members for m in [match_missed(row)] if m), None)
            for row in members:
                label = ", ".join(f"{k}={fmt_value(row.params_config.get(k))}" for k in mine) or row.label
                point = _row_point(row, label)
                if point is None and len(members) == 1:  # seeds of different networks: one point per seed
                    families.append(Family(row.label, method, "seeds", [], _seed_points(row),
                                           {s: [v] for s, v in _row_by_seed(row).items()}, missed))
                    continue
                if point is not None:
                    points.append(point)
                    for seed, v in _row_by_seed(row).items():
                        by_seed.setdefault(seed, []).append(v)
            if not points:
                continue
            points.sort(key=lambda p: (p.size_mb, p.top1))
            name = members[0].label if len(members) == 1 else _family_name(members[0], mine)
            families.append(Family(name, method, "sweep", mine, points, by_seed, missed))
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
        by_tau: dict[float, list[tuple[Result, dict[str, Any]]]] = {}  # an early-exit network's thresholds
        for r in row.results:
            for p in r.curve or []:
                if isinstance(p, dict) and _numeric(p.get("top1")) and _numeric(p.get("size_mb")):
                    exits = p.get("exits")
                    tau = exits.get("threshold") if isinstance(exits, dict) else None
                    if p.get("depth") is None and isinstance(tau, (int, float)) and not isinstance(tau, bool):
                        by_tau.setdefault(float(tau), []).append((r, p))
                    else:
                        by_depth.setdefault(p.get("depth"), []).append((r, p))
        if by_tau:
            families.append(_exit_family(row, by_tau))
        if not by_depth:
            continue
        points = []
        for depth, members in sorted(by_depth.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            tops = [p["top1"] for _, p in members]
            points.append(Point(statistics.fmean(p["size_mb"] for _, p in members),
                                statistics.fmean(p.get("macs") or 0 for _, p in members),
                                statistics.fmean(tops), _std(tops), len(tops),
                                f"depth {depth}" if depth is not None else "point", [r.key for r, _ in members],
                                [r.seed for r, _ in members]))
        points.sort(key=lambda p: (p.size_mb, p.top1))
        by_seed: dict[Any, list[tuple[float, float, float]]] = {}
        for members in by_depth.values():
            for r, p in members:
                by_seed.setdefault(r.seed, []).append((float(p["size_mb"]), float(p.get("macs") or 0), float(p["top1"])))
        what = "search checkpoint per depth" if depth_role(row) == DEPTH_SEARCH else "model per depth"
        families.append(Family(f"{row.label}: {what}", row.method, "depth", ["depth"], points, by_seed))
    return families


def _exit_family(row: Row, by_tau: dict[float, list[tuple[Result, dict[str, Any]]]]) -> Family:
    """An early-exit network's points, one per confidence threshold τ (depth = null: every point is the
    same network, exiting earlier or later), grouped by τ over seeds: accuracy against the mean MACs spent."""
    points: list[Point] = []
    by_seed: dict[Any, list[tuple[float, float, float]]] = {}
    for tau, members in sorted(by_tau.items()):
        tops = [float(p["top1"]) for _, p in members]
        points.append(Point(statistics.fmean(float(p["size_mb"]) for _, p in members),
                            statistics.fmean(float(p.get("macs") or 0) for _, p in members),
                            statistics.fmean(tops), _std(tops), len(tops), f"τ={tau:g}",
                            [r.key for r, _ in members], [r.seed for r, _ in members]))
        for r, p in members:
            by_seed.setdefault(r.seed, []).append((float(p["size_mb"]), float(p.get("macs") or 0), float(p["top1"])))
    points.sort(key=lambda p: (p.macs, p.top1))
    return Family(f"{row.label}: early exits over τ", row.method, "exits", ["threshold"], points, by_seed)


def _is_curve(f: Family) -> bool:
    """A family of two points or more, other than one row's seeds (different networks, not a trade-off)."""
    return len(f.points) > 1 and f.kind != "seeds"


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


def board_seeds(board: Board) -> int:
    """How many seeds the board has (a point on fewer is marked with its n)."""
    return len(board.caption.get("seeds") or []) or max((len(r.seeds) for r in board.rows), default=0)


def pareto_points(families: list[Family], x: str = "size_mb", board_n: int = 0) -> list[tuple[str, Point]]:
    """The points no other point beats (smaller-or-equal x and higher-or-equal top-1), by x; points on
    fewer seeds than ``board_n`` are not candidates (a mean of fewer seeds is not comparable)."""
    flat = [(f.name, p) for f in families if x == "macs" or f.kind != "exits"  # τ moves MACs, not size
            for p in f.points if not p.marked(board_n)]
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
    """Accuracy at matched size, per seed: each size is a factor of the depth search's own size on that
    seed, each family is interpolated on that seed alone, and only then aggregated over seeds."""

    sizes: list[tuple[str, dict[Any, float]]]  # (caption, {seed: MB})
    rows: list[tuple[str, list[float | None]]]  # (family, mean over seeds of its top-1 at each size)
    ns: list[list[int]] = field(default_factory=list)  # per family, per size: on how many seeds
    best: list[str | None] = field(default_factory=list)  # per size: the family a paired interval separates
    lead: list[float | None] = field(default_factory=list)  # its paired lead over the next family (points)
    runner_up: list[str | None] = field(default_factory=list)  # the next family there (or the only one, lead None)
    separated: list[bool] = field(default_factory=list)  # whether the lead's paired 95 % interval excludes 0
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (family, why) left out of the claims
    board_n: int = 0


def matched_size_table(board: Board, families: list[Family] | None = None) -> MatchedTable | None:
    """Each family's top-1 at the depth search's size, ½, ¼ and 2× of it: per seed (that seed's search
    size, that seed's points), then the mean over the seeds where the size lies in the family's range."""
    search = depth_search_row(board)
    if search is None:
        return None
    own = {r.seed: float((r.metrics or {})["size_mb"]) for r in search.results
           if _numeric((r.metrics or {}).get("size_mb"))}
    if not own:
        return None
    families = families if families is not None else all_families(board)
    sizes = [(caption.format(search=search.method), {seed: factor * v for seed, v in own.items()})
             for factor, caption in MATCHED]
    excluded = [(f.name, f.match_missed) for f in families if f.match_missed]
    # an early-exit family is one network at every τ (one size): it trades MACs, not size
    kept = [f for f in families if not f.match_missed and f.kind != "exits"]
    per_seed: dict[str, list[dict[Any, float]]] = {}
    for f in kept:
        per_seed[f.name] = [{seed: v for seed, size in at.items() for v in [f.at_seed(seed, size)] if v is not None}
                            for _, at in sizes]
    rows = [(name, [statistics.fmean(d.values()) if d else None for d in ds]) for name, ds in per_seed.items()]
    rows = [r for r in rows if any(v is not None for v in r[1])]
    ns = [[len(d) for d in per_seed[name]] for name, _ in rows]
    n = len(own)
    table = MatchedTable(sizes, rows, ns, excluded=excluded, board_n=n)
    for i in range(len(sizes)):
        full = sorted(((vals[i], name) for (name, vals), counts in zip(rows, ns)
                       if vals[i] is not None and counts[i] == n), reverse=True)
        if len(full) < 2:  # alone (or nobody) on every seed: nothing separates it from anything, no "Best"
            best, lead, second, separated = None, None, (full[0][1] if full else None), False
        else:
            diff = paired(per_seed[full[0][1]][i], per_seed[full[1][1]][i])
            second, lead, separated = full[1][1], diff.mean, diff.significant
            best = full[0][1] if separated else None
        table.best.append(best)
        table.lead.append(lead)
        table.runner_up.append(second)
        table.separated.append(separated)
    return table


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
    search_close: str | None = None  # a decision within a few validation images of the threshold (near_threshold)
    oracle_close: str | None = None
    sequential: bool = False  # the oracle stopped at the first depth that reached the threshold (train_all false)

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
                                      own_cost(o.cost or {}), search.method, oracles[0].method, _cost_to_depth(o),
                                      near_threshold(r), near_threshold(o),
                                      (o.config.get("params") or {}).get("train_all") is False))
    return out


def oracle_vs_odn(board: Board) -> list[OracleVsSearch]:
    """0.2's name of :func:`oracle_vs_search` (deprecated)."""
    warnings.warn("odnbench.report.curves.oracle_vs_odn is deprecated and will be removed in odnbench 0.4; call "
                  "oracle_vs_search", OdnbenchDeprecationWarning, stacklevel=2)
    return oracle_vs_search(board)


#: A depth decision is marked when a validation reading it rested on was within this many images of the threshold.
CLOSE_IMAGES = 2


def near_threshold(r: Result, images: int = CLOSE_IMAGES) -> str | None:
    """When a depth search's (or the oracle's) decision rested on a validation reading within ``images``
    validation images of its threshold (any depth it tried up to the chosen one, from facts.depth_curve,
    facts.threshold and the stored validation count), that reading in words; else None."""
    thr, depth, curve = r.facts.threshold, r.facts.depth, r.facts.depth_curve or []
    sizes = r.data.get("sizes") if isinstance(r.data, dict) else None
    n_val = sizes.get("val") if isinstance(sizes, dict) else None
    if not _numeric(thr) or not isinstance(depth, int) or not _numeric(n_val) or not n_val:
        return None
    close = []
    for c in curve:
        if isinstance(c, dict) and _numeric(c.get("val")) and _numeric(c.get("depth")) and c["depth"] <= depth:
            gap = abs(c["val"] - thr) * n_val / 100
            if gap <= images:
                close.append((gap, c["depth"], c["val"]))
    if not close:
        return None
    gap, d, val = min(close)
    return (f"depth {d} read {fmt_value(val)} against the threshold {fmt_value(thr)}, {gap:.1f} validation images "
            f"(of {int(n_val):,}) away")


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
    if not any(_is_curve(f) for f in families):
        return None
    table = matched_size_table(board, families)
    n = board_seeds(board)
    return {
        "board_seeds": n,
        "families": [{"name": f.name, "method": f.method, "kind": f.kind, "swept": f.swept,
                      **({"match_missed": f.match_missed} if f.match_missed else {}),
                      "points": [{"label": p.label, "size_mb": p.size_mb, "macs": p.macs, "top1": p.top1,
                                  "top1_std": p.std, "n": p.n, "seeds": p.seeds, "fewer_seeds": p.marked(n),
                                  "keys": p.keys} for p in f.points]}
                     for f in families],
        "pareto_front": [{"family": name, "label": p.label, "size_mb": p.size_mb, "top1": p.top1, "n": p.n}
                         for name, p in pareto_points(families, board_n=n)],
        "matched_size": None if table is None else {
            "interpolated": "per seed, linear in log size between that seed's neighbouring points, at that seed's "
                            "own search size; then the mean over the seeds where it lies in range (n); null "
                            "outside every seed's range",
            "sizes_mb": [{"caption": c, "size_mb_per_seed": {str(k): v for k, v in at.items()}}
                         for c, at in table.sizes],
            "families": [{"name": name, "top1": vals, "n": counts} for (name, vals), counts in zip(table.rows, table.ns)],
            "excluded": [{"name": name, "why": why} for name, why in table.excluded],
            "best": table.best, "lead": table.lead, "runner_up": table.runner_up,
            "lead_separated": table.separated},
        "oracle_vs_search": [{"seed": v.seed, "search_depth": v.search_depth, "oracle_depth": v.oracle_depth,
                              "search_own_cost": v.search_cost, "oracle_own_cost": v.oracle_cost,
                              "oracle_cost_to_its_depth": v.oracle_to_depth,
                              "search_near_threshold": v.search_close, "oracle_near_threshold": v.oracle_close,
                              "oracle_runs": oracle_name(v.sequential),
                              "ratio_train_macs": v.ratio("train_macs"),
                              "ratio_sample_steps": v.ratio("sample_steps"),
                              "ratio_train_seconds": v.ratio("train_seconds")} for v in oracle_vs_search(board)],
    }


CURVES_INTRO = (
    "Each line is a family: one method's rows that differ only in a swept parameter, or one result's models at "
    "every depth it trained (a depth search: its best search checkpoint per depth, before fine-tuning; points below "
    "the chosen depth are the search's intermediate models, not models it exports; a depth oracle: each depth trained "
    "from scratch). Points are means over seeds, bars their 95 % t-interval; a point present on fewer seeds than the "
    "board has is marked with its n (`n=1`) and is never on the Pareto front nor \"Best\"; a row whose seeds exported "
    "different networks is shown seed by seed, never at a mean size. The black step line is the Pareto front over "
    "every point on all of the board's seeds.")


def matched_intro(search: str) -> str:
    return (
        f"Top-1 % of each family at {search}'s size and at ¼, ½ and 2× of it, **per seed**: on each seed the size is "
        f"that seed's own {search} network's (the columns give their range over seeds; no mean size of different "
        "networks), and the family is **interpolated** linearly in log size between its two neighbouring points on "
        f"that seed (a one-point family only at its own size, within {SAME_SIZE:.0%}); then the mean over the seeds "
        "where the size lies in range, `(n=k)` when fewer than all; – where it lies outside on every seed (no "
        "extrapolation). Best: among the families present on every seed, the one with the highest mean, named with "
        "the next such family only when the paired 95 % interval of its lead over it excludes 0; otherwise \"not "
        "separated\". A control whose "
        "records say its match missed its target is left out.")


def oracle_name(sequential: bool) -> str:
    """What the oracle row runs, from its stored train_all: depths from scratch one by one until the threshold
    (a sequential from-scratch depth search), or every depth."""
    return "sequential from-scratch depth search" if sequential else "depth oracle"


def oracle_intro(search: str, oracle: str, sequential: bool = False) -> str:
    what = ("each depth trained from scratch in turn, shallowest first, stopping at the first that reaches the "
            "threshold" if sequential else "each depth trained from scratch")
    return (f"Per seed: the depth the depth search ({search}) chose and the depth the {oracle_name(sequential)} "
            f"({oracle}) chose ({what}, the same threshold rule), and {search}'s own cost over "
            f"{oracle}'s (the results both depend on are left out of both). ◆ marks a decision that a validation "
            f"reading within {CLOSE_IMAGES} images of the threshold decided.")


def _mb_range(at: dict[Any, float]) -> str:
    lo, hi = min(at.values()), max(at.values())
    return f"{lo:.3f} MB" if f"{lo:.3f}" == f"{hi:.3f}" else f"{lo:.3f}–{hi:.3f} MB over seeds"


def _best_cell(best: str | None, second: str | None, lead: float | None) -> str:
    if best and lead is not None:  # named with the family it leads: only families on every seed compete
        return f"{md_text(best)} (+{lead:.2f} over {md_text(second or '')})"
    if second and lead is not None:
        return f"not separated (lead {lead:+.2f}, paired 95 % CI includes 0)"
    if second:
        return f"none: only {md_text(second)} is there on every seed"
    return "–"


def has_curves(board: Board) -> bool:
    """Whether the board has a trade-off curve: a family of two points or more."""
    return any(_is_curve(f) for f in all_families(board))


def curve_sections(board: Board, plots: dict[str, str] | None = None, level: int = 2) -> list[str]:
    """The markdown of the curves part of a board page (empty when the board has nothing to show)."""
    families = all_families(board)
    if not any(_is_curve(f) for f in families):
        return []
    h = "#" * level
    out = [f"{h} Trade-off curves", "", CURVES_INTRO, ""]
    for alt, path in (plots or {}).items():
        out += [f"![{alt}]({path})", ""]
    n = board_seeds(board)
    out += ["| Family | Points (size MB → top-1 %) |", "|---|---|"]
    for f in families:
        if _is_curve(f):
            pts = "; ".join((f"{p.label}: {fmt_value(p.macs)} MACs" if f.kind == "exits" else
                             f"{p.label}: {p.size_mb:.3f}") + f" → {_f(p.top1)}" + (f" ± {p.std:.2f}" if p.std else "")
                            + (f" (n={p.n})" if p.marked(n) else "") for p in f.points)
            out.append(f"| {md_text(f.name)} | {md_text(pts)} |")
    table = matched_size_table(board, families)
    search = depth_search_row(board)
    if table is not None and search is not None:
        out += ["", f"{h} Accuracy at matched size", "", matched_intro(md_text(search.method)), ""]
        out.append("| Family | " + " | ".join(f"{md_text(c)} ({_mb_range(at)})" for c, at in table.sizes) + " |")
        out.append("|---|" + "---|" * len(table.sizes))
        for (name, vals), counts in zip(table.rows, table.ns):
            out.append(f"| {md_text(name)} | " + " | ".join(
                _f(v) + (f" (n={k})" if v is not None and k < table.board_n else "") for v, k in zip(vals, counts)) + " |")
        out.append("| **Best** (paired lead over the next) | " + " | ".join(
            _best_cell(b, second, lead) for b, second, lead in zip(table.best, table.runner_up, table.lead)) + " |")
        for name, why in table.excluded:
            out += ["", f"Left out: {md_text(name)} {md_text(why)} (its records say `within_tolerance: false`)."]
    versus = oracle_vs_search(board)
    if versus:
        sn, on = md_text(versus[0].search), md_text(versus[0].oracle)
        seq = all(v.sequential for v in versus)
        out += ["", f"{h} {oracle_name(seq).capitalize()} ({on}) vs depth search ({sn})", "",
                oracle_intro(sn, on, seq), ""]
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
                          f"{_f(v.ratio('sample_steps', True))} by sample-steps" if v.oracle_to_depth else "")
                       + "".join(f"; ◆ {who}: {md_text(close)}" for who, close in ((sn, v.search_close),
                                                                                  (on, v.oracle_close)) if close))
    return out

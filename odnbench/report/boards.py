"""Leaderboards as data, derived from stored results only (no plugin is consulted).

One board per (dataset, backbone, preset, device). A row aggregates one configuration (method,
its parameters, recipe and input policy) over seeds: top-1 mean ± std (n), Δ vs the baseline,
params, sizes, MACs, latency, speed-ups vs the baseline (by MACs and measured), the cost of
obtaining the model and whether it meets its target.

Definitions used on every board:

- **Baseline**: the row of a method whose stored ``role`` is ``"baseline"`` (the built-in ``full``,
  or a plugin's, e.g. ``dense``), with its default parameters first; the board names it by its
  method name (:attr:`Board.baseline_name`: "Δ vs dense"), never by the built-in's.
- **Δ vs baseline**: row top-1 mean minus the baseline's, in percentage points.
- **Meets target**: one rule and one tolerance per board: Δ vs baseline ≥ −tolerance
  (``DEFAULT_TOLERANCE`` = 1.75 points, the ODN popular summary's "within 1.75 % of full
  depth"; ``--tolerance`` on publish). "–" for the baseline itself. A method's own
  target (``facts.threshold`` / ``facts.reached_target``, e.g. ODN's stop threshold on
  validation accuracy) decides when that method stops, not this column: it is shown beside it
  in the method's row (``own_target``), reached on k of n seeds.
- **Iso-accuracy**: the baseline and the rows whose Meets target is "yes" (the same rule: the 95 %
  CI of Δ vs baseline ≥ −tolerance, not its mean), smallest saved size first; a row whose mean
  is within the tolerance but whose interval is not is left out (``Board.iso_undecided``).
- **One network or several**: parameters, sizes, MACs and depth are those of each seed's
  exported network. When every seed exported the same architecture, a row shows its value;
  when seeds chose different networks (ODN depth 5 on one seed, 6 on another) the row shows
  min–max over seeds (``networks_differ``), never a mean of different networks: its stored
  ``params``, ``size_mb``, ``size_mib``, ``macs``, ``flops``, ``size_reduction`` and
  ``macs_speedup`` are null, the per-seed lists and ranges hold the numbers, and it sorts by its
  largest seed's size. Latency is the mean over seeds of one network, else min–max; top-1 and
  cost are means over seeds.
- **Cost**: the method's own part (``cost.own``) and the total with every dependency it needed
  (the trained network it started from, the depth search that chose its depth or size).
- **Busy latency**: a latency whose spread says another process held the cores
  (:func:`odnbench.result.latency_busy`); marked on the board.
- **Reported**: numbers a paper published (each result's stored ``reference``). They come from
  the paper's recipe, so they stand beside measured numbers only on boards of the ``paper``
  preset (a note elsewhere).
- **Cut short**: an ok result whose ``facts.converged`` is false (an epoch cap ended training
  before patience did).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import statistics
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from odnbench import contract
from odnbench.envinfo import FINGERPRINT_KEYS
from odnbench.errors import OdnbenchDeprecationWarning
from odnbench.report import stats
from odnbench.report.fmt import fmt_value
from odnbench.report.remeasure import BATCHED_KEY
from odnbench.result import LEGACY_DEPTH_ROLES, Result, latency_busy
from odnbench.store import ResultStore, board_results, canonical_json

#: The role (Method.role, stored in each result) of the row Δ top-1 and size reductions compare with.
BASELINE_ROLE = "baseline"
DEFAULT_TOLERANCE = contract.DEFAULT_TOLERANCE  # public as odnbench.DEFAULT_TOLERANCE; kept importable here
#: A latency whose slowest timed window took more than this many times its fastest was measured
#: while something else ran: the measured speed-up is not shown (as is one marked busy).
LATENCY_SPREAD_BOUND = 1.5


@dataclass
class RowStats:
    """Every number a board shows for one row, computed once here (:func:`build_boards`) and read by
    markdown, records, the terminal summary and the plots through attributes: a misspelt name is an
    AttributeError, not a "–". Means over seeds unless the name says otherwise (``_per_seed``: one
    value per seed, in ``seeds`` order; ``_range``: [min, max] over seeds); ``networks_differ``
    says whether the seeds exported different networks, in which case a mean of
    params/size/MACs describes none of them: ``params``, ``size_mb``, ``size_mib``, ``macs``,
    ``flops`` (and what is derived from them: ``size_reduction``, ``macs_speedup``) are then None,
    and the ``_per_seed`` lists and ``_range`` fields carry the numbers. The fields stored in
    board.json / board.csv are :data:`odnbench.report.columns.STORED` (a test ties the two)."""

    method: str  # the row's label: method and its key parameters
    method_name: str
    method_params: dict[str, Any]
    n: int
    seeds: list[Any]
    top1_mean: float | None
    top1_std: float
    top1_per_seed: list[Any]
    depth: list[Any]
    depth_per_seed: list[Any]
    networks_differ: bool
    params: float | None
    params_per_seed: list[Any]
    size_mb: float | None
    size_mb_per_seed: list[Any]
    size_mib: float | None
    size_mib_per_seed: list[Any]
    macs: float | None
    macs_per_seed: list[Any]
    flops: float | None
    latency_p50: float | None
    latency_p90: float | None
    latency_p50_per_seed: list[Any]
    latency_p90_per_seed: list[Any]
    latency_busy_seeds: int
    latency_batch: int | None
    latency_threads: list[Any]
    latency_device: list[Any]
    throughput: float | None
    throughput_batch: int | None
    cost_epochs: float | None
    cost_sample_steps: float | None
    cost_seconds: float | None
    cost_own_epochs: float | None
    cost_own_sample_steps: float | None
    cost_own_seconds: float | None
    cost_device: list[Any]
    converged: dict[str, Any]
    keys: list[Any]
    # Derived against the board's baseline and the other rows (_fill_stats, build_boards):
    rank: int = 0
    baseline: str | None = None
    delta_vs_baseline: float | None = None
    size_reduction: float | None = None  # None when the seeds' networks differ: see size_reduction_range
    size_reduction_range: list[Any] | None = None  # [min, max] over seeds of each seed's size reduction, %
    macs_speedup: float | None = None
    macs_speedup_range: list[Any] | None = None
    measured_speedup: float | None = None
    measured_speedup_range: list[Any] | None = None
    iso_accuracy: bool = False
    meets_target: bool | None = None
    meets_target_seeds: str | None = None
    meets_target_basis: str | None = None
    own_target: dict[str, Any] | None = None
    # Paired statistics (report.stats): 95 % t-intervals over seeds, None without one (n < 2).
    top1_ci: list[Any] | None = None  # [low, high] of the row's mean top-1
    delta_n: int = 0  # seeds paired with the baseline
    delta_ci: list[Any] | None = None  # [low, high] of the paired Δ vs the baseline
    # vs the baseline, by its method name: "better than full" / worse / not distinguishable / "n=1, no interval" /
    # "reference" (the baseline's own row)
    verdict: str = "–"
    tie_rank: int = 0  # shared rank of the row's tie group (stats.tie_groups)
    tied: bool = False  # its tie group has other rows
    meets_target_verdict: str = "–"  # "yes", "no", "undecided" (interval straddles −tolerance or no interval)
    # Training compute (cost.train_macs), mean over seeds; None when a seed's result lacks it.
    cost_train_macs: float | None = None
    cost_own_train_macs: float | None = None
    # What its dependencies (the network it started from, the full-depth run that set a threshold) cost: total − own.
    cost_deps_train_macs: float | None = None
    # Latency: measured speed-up is withheld ("unreliable") when a row's or the baseline's latency was busy
    # or its windows spread beyond LATENCY_SPREAD_BOUND; the MACs speed-up stays.
    measured_speedup_reliable: bool = True
    latency_unreliable_reason: str | None = None
    latency_remeasured: bool = False
    # The larger batch `--remeasure-latency` times (report.remeasure, metrics.latency_ms_batched): ms per image,
    # means over seeds (None when a seed lacks it); its measured speed-up against the baseline's, withheld as
    # at batch 1. Stored in board.json / board.csv only on boards that have it (columns.OPTIONAL_FIELDS).
    latency_batched_batch: int | None = None
    latency_batched_p50: float | None = None
    latency_batched_p90: float | None = None
    latency_batched_p50_per_seed: list[Any] | None = None
    latency_batched_p90_per_seed: list[Any] | None = None
    measured_speedup_batched: float | None = None
    measured_speedup_batched_range: list[Any] | None = None
    measured_speedup_batched_reliable: bool | None = None
    # The baseline's seeds that an epoch cap cut short: every Δ against it carries a warning.
    reference_cut_short: str | None = None
    # The paired t-test of Δ vs the baseline: its p-value and that p adjusted by Holm's step-down over the
    # board's family of contrasts (every row vs the baseline); the verdict reads the adjusted one.
    delta_p: float | None = None
    delta_p_holm: float | None = None
    # The same against the board's depth search (its role "depth-search", e.g. odn), a family of its own.
    search: str | None = None
    delta_vs_search: float | None = None
    delta_search_n: int = 0
    delta_search_ci: list[Any] | None = None
    delta_search_p: float | None = None
    delta_search_p_holm: float | None = None
    verdict_vs_search: str = "–"
    # A matched control whose records say its match missed its target (report.boards.match_missed): flagged
    # on its row and left out of matched claims.
    match_missed: str | None = None

    @property
    def delta_vs_full(self) -> float | None:
        """0.2's name of :attr:`delta_vs_baseline` (deprecated: the baseline need not be ``full``)."""
        warnings.warn("RowStats.delta_vs_full is deprecated and will be removed in odnbench 0.4; read "
                      "delta_vs_baseline", OdnbenchDeprecationWarning, stacklevel=2)
        return self.delta_vs_baseline


@dataclass
class Row:
    method: str
    label: str
    params_config: dict[str, Any]
    seeds: list[int]
    top1: list[float]
    results: list[Result]
    stats: RowStats | None = None  # filled by build_boards

    @property
    def fields(self) -> dict[str, Any]:
        """0.1's string-keyed view of :attr:`stats` (deprecated: read ``row.stats.NAME``)."""
        warnings.warn("Row.fields is deprecated and will be removed in odnbench 0.3; read row.stats.<name>",
                      DeprecationWarning, stacklevel=2)
        return dataclasses.asdict(self.stats) if self.stats else {}


def stats_of(row: Row) -> RowStats:
    """A board row's numbers, typed as set: build_boards fills them for every row it puts on a board."""
    assert row.stats is not None, row.label
    return row.stats


@dataclass
class Board:
    dataset: str
    backbone: str
    preset: str
    device: str
    rows: list[Row]
    failed: list[Result]
    caption: dict[str, Any]
    cut_short: list[Result] = field(default_factory=list)
    tolerance: float = DEFAULT_TOLERANCE
    baseline: Row | None = None
    reported: list[dict[str, Any]] = field(default_factory=list)  # reference numbers beside measured ones
    reference_notes: list[str] = field(default_factory=list)
    #: (method, its stored reference) for each note above: a page escapes each piece on its own
    reference_elsewhere: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: the caption keys that are package versions methods declared (env keys, e.g. ``torch_pruning``)
    packages: list[str] = field(default_factory=list)
    #: the row of the depth search (stored role "depth-search"), the second reference of the paired Δs
    search: Row | None = None
    #: how many contrasts Holm's step-down adjusts over: rows vs the baseline, rows vs the depth search
    family_size: int = 0
    search_family_size: int = 0
    #: per method, the epoch caps and patiences set away from its defaults on every one of its rows,
    #: which the labels therefore leave out (the page's budget line and the terminal state them)
    label_budgets: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def search_name(self) -> str:
        return self.search.method if self.search is not None else "depth search"

    @property
    def slug(self) -> str:
        """The board's folder name under ``publish --out``: from stored fields, so sanitised."""
        return safe_slug(f"{self.dataset}-{self.backbone}-{self.preset}-{self.device}")

    @property
    def baseline_name(self) -> str:
        """What the board calls its baseline: the method's own name (``full``, ``dense``), else "baseline"."""
        return self.baseline.method if self.baseline is not None else "baseline"

    @property
    def key_title(self) -> str:
        """The board's key alone (the terminal summary's heading, which must fit 100 columns)."""
        return f"{self.dataset} · {self.backbone} · preset {self.preset} · {self.device}"

    @property
    def title(self) -> str:
        """The board's key, then the scale it measured (widths, parameters, training images) from its records."""
        m = self.caption.get("measured") or {}
        widths, params, train = m.get("widths") or [], m.get("full_params") or [], (m.get("images") or {}).get("train")
        scale = ""
        if len(widths) == 1:
            frac = width_scale(self.backbone, widths[0])
            scale = (f" at {frac} width" if frac and frac != "1×" else "") + f" ({widths[0].replace(',', '-')})"
        if len(params) == 1:
            scale += f", {params[0]:,} parameters"
        data = f", {self.dataset} {train[0]:,} train" if train and len(train) == 1 else ""
        return f"{self.backbone}{scale}{data} · {self.dataset} · preset {self.preset} · {self.device}"

    @property
    def iso_undecided(self) -> list[Row]:
        """Rows whose mean Δ is within the tolerance but whose interval is not (or which have none): left out
        of the iso-accuracy view by its rule, named under it."""
        return [r for r in self.rows if not stats_of(r).iso_accuracy and stats_of(r).delta_vs_baseline is not None
                and round(cast(float, stats_of(r).delta_vs_baseline), 6) >= -self.tolerance]

    @property
    def iso_rows(self) -> list[Row]:
        rows = [r for r in self.rows if stats_of(r).iso_accuracy]
        return sorted(rows, key=lambda r: (size_key(stats_of(r)), -(stats_of(r).top1_mean or 0), r.label))


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_slug(raw: str) -> str:
    """A folder name made of ``[A-Za-z0-9._+-]`` only, never starting with a dot, from text that comes
    from result.json files (which anyone can edit: ``env.device`` = ``cpu/../../../x`` must not lead
    outside ``--out``). A name that had to change gets a short hash of the original, so two different
    boards cannot end up in one folder."""
    slug = _UNSAFE.sub("_", raw).lstrip(".") or "_"
    if slug != raw:
        slug = f"{slug[:80]}-{hashlib.sha256(raw.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
    return slug


def load_results(results_dir: str | Path) -> list[Result]:
    """Every readable stored result in a results folder, by folder name (strays left out:
    :func:`skipped_results`)."""
    return [_sane(result) for _, result in board_results(results_dir)[0]]  # failing cheap checks: skipped_results


def _sane(r: Result) -> Result:
    """Fields a board formats as numbers, kept only where they are (a schema-valid record may still
    say ``facts.depth_curve = [{"depth": "deep"}]`` or ``reference.top1 = "ninety"``): dropped, never
    a crash. The record on disk is untouched; ``leaderboard verify`` checks it."""
    def num(v: Any) -> Any:
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None

    def typed(v: Any, t: type) -> Any:
        return v if isinstance(v, t) and not (t is int and isinstance(v, bool)) else None

    f = r.facts
    f.depth, f.threshold = typed(f.depth, int), num(f.threshold)
    f.reached_target, f.converged, f.cut_short = typed(f.reached_target, bool), typed(f.converged, bool), \
        typed(f.cut_short, str)
    curve = [p for p in f.depth_curve if isinstance(p, dict) and typed(p.get("depth"), int) is not None
             and num(p.get("val")) is not None] if isinstance(f.depth_curve, list) else []
    f.depth_curve = curve or None
    if isinstance(r.reference, dict):
        ref = dict(r.reference)  # other keys (e.g. preset) as stored; the ones formatted as numbers checked
        ref.update({k: num(ref.get(k)) for k in ("top1", "size_reduction", "size_mb", "full_size_mb")})
        ref["depth"] = typed(ref.get("depth"), int)
        ref.update({k: typed(ref.get(k), str) for k in ("source", "preset") if k in ref})
        r.reference = ref if any(v is not None for v in ref.values()) else None
    elif r.reference is not None:
        r.reference = None
    return r


def skipped_results(results_dir: str | Path) -> list[tuple[Path, str]]:
    """Folders that are not counted on any board, each with why (a copy or planted folder, a
    symbolic link, an unreadable record): every command that shows a board names them."""
    return ResultStore(Path(results_dir)).strays() + board_results(results_dir)[1]


def size_key(f: RowStats) -> tuple[float, float]:
    """Where a row sorts by size: (largest, smallest) of its seeds' networks, one size twice when they are one
    network. A row of different networks is only as small as its largest (what every seed delivers), never
    their mean nor its lucky seed. A row without sizes sorts last."""
    sizes = _numbers(f.size_mb_per_seed)
    return (max(sizes), min(sizes)) if sizes else (math.inf, math.inf)


def _numbers(values: Iterable[Any]) -> list[Any]:
    return [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _mean(values: Iterable[Any]) -> float | None:
    nums = _numbers(values)
    return statistics.fmean(nums) if nums else None


def _mean_of_all(values: Sequence[Any]) -> float | None:
    """The mean when every value is a number (a seed without one makes it unknown, not smaller)."""
    return _mean(values) if values and len(_numbers(values)) == len(values) else None


def _std(values: Iterable[Any]) -> float:
    nums = _numbers(values)
    return statistics.stdev(nums) if len(nums) > 1 else 0.0


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


def _device(r: Result) -> str:
    return _get(r.env, "device") or _get(r.cost, "device") or "?"


def _board_key(r: Result) -> tuple[str, str, str, str]:
    c = r.config
    return (str(c.get("dataset")), str(c.get("backbone")), str(c.get("preset")), _device(r))


def _row_identity(r: Result) -> str:
    """Cells that differ only by seed belong to one row."""
    c = r.config
    return canonical_json({k: c.get(k) for k in ("method", "params", "recipe", "input", "protocol")})


def _flat(c: dict[str, Any]) -> dict[str, Any]:
    """The configuration fields a label may name: method parameters, then recipe.* and input.*."""
    out = dict(c.get("params") or {})
    for part in ("recipe", "input"):
        for k, v in (c.get(part) or {}).items():
            if k != "preset":
                out[f"{part}.{k}"] = v
    if "protocol" in c:
        out["protocol"] = c["protocol"]
    return out


def _sets_epochs(name: str, value: Any) -> bool:
    """A method parameter that sets an epoch cap or a patience (the budget a board states once)."""
    return (("epoch" in name or "patience" in name) and isinstance(value, (int, float))
            and not isinstance(value, bool))


def _labels(rows: dict[str, list[Result]]) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Label = method + its key parameters: those set away from the defaults stored with the
    result, and any parameter, recipe or input field that differs between rows on this board.
    A parameter that every seed's facts list as unused (``Facts.unused_params``, e.g. prune's ratio
    when match chose it) did not shape the row's model: it is left out of that row's label and does
    not make the others' vary, unless leaving it out would give two rows one label. Records without
    the field are labelled as before it existed. An epoch cap or patience that every row of a method
    shares is left out like the recipe's: the board states budgets once (``measured``), and in a
    label it only hides what tells the rows apart. Returns the labels, and per method the caps left
    out that were set away from its defaults (:attr:`Board.label_budgets`)."""
    firsts = {ident: members[0] for ident, members in rows.items()}
    flats = {ident: _flat(r.config) for ident, r in firsts.items()}
    of_method: dict[str, list[dict[str, Any]]] = {}
    defaults_of: dict[str, dict[str, Any]] = {}  # the method's first row's, as its label reads them
    for r in firsts.values():
        of_method.setdefault(r.method, []).append(r.config.get("params") or {})
        defaults_of.setdefault(r.method, r.defaults or {})
    stated = {(method, k) for method, all_params in of_method.items() for k in set().union(*all_params)
              if all(k in p and _sets_epochs(k, p[k]) and p[k] == all_params[0].get(k) for p in all_params)}
    every = sorted({k for f in flats.values() for k in f})
    varying_board = {k for k in every if k.split(".")[0] in ("recipe", "input", "protocol")
                     and len({canonical_json(f.get(k)) for f in flats.values()}) > 1}
    unused: dict[str, set[str]] = {}
    for ident, members in rows.items():
        said = [frozenset(n for n in u if isinstance(n, str)) if isinstance(u, list) else None
                for u in (m.facts.unused_params for m in members)]
        unused[ident] = set(said[0]) if said[0] is not None and all(s == said[0] for s in said) else set()

    def label(ident: str, hide: bool) -> str:
        r = firsts[ident]
        hidden = unused[ident] if hide else set()
        params = r.config.get("params") or {}
        defaults = r.defaults or {}
        keys = [k for k in sorted(params) if k not in hidden and (r.method, k) not in stated and (
            (k in defaults and defaults[k] != params[k])
            or any(flats[i].get(k) != params[k] for i, other in firsts.items()
                   if other.method == r.method and not (hide and k in unused[i])))]
        keys += sorted(varying_board)
        extra = ", ".join(f"{k}={fmt_value(flats[ident].get(k))}" for k in keys)
        return f"{r.method} ({extra})" if extra else r.method

    out = {ident: label(ident, hide=True) for ident in rows}
    shared = {text for text in out.values() if list(out.values()).count(text) > 1}
    left_out: dict[str, dict[str, Any]] = {}
    for method, k in sorted(stated):
        value = of_method[method][0][k]  # every row of the method has it
        if k in defaults_of[method] and defaults_of[method][k] != value:
            left_out.setdefault(method, {})[k] = value
    return {ident: label(ident, hide=False) if text in shared else text for ident, text in out.items()}, left_out


def build_boards(results: list[Result], tolerance: float = DEFAULT_TOLERANCE) -> list[Board]:
    """Group results into boards and rows and compute every derived field."""
    groups: dict[tuple[str, str, str, str], list[Result]] = {}
    for r in results:
        groups.setdefault(_board_key(r), []).append(r)
    boards = []
    for key in sorted(groups):
        rs = sorted(groups[key], key=lambda r: (_row_identity(r), str(r.config.get("seed")), str(r.key)))
        ok = [r for r in rs if r.ok and usable(r)]
        failed = [r for r in rs if not r.ok or not usable(r)]
        by_conf: dict[str, list[Result]] = {}
        for r in ok:
            by_conf.setdefault(_row_identity(r), []).append(r)
        labels, label_budgets = _labels(by_conf)
        rows = []
        for ident, members in by_conf.items():
            members.sort(key=lambda r: (r.config.get("seed"), str(r.key)))
            c = members[0].config
            rows.append(Row(c["method"], labels[ident], dict(c.get("params") or {}),
                            [cast(int, r.config.get("seed")) for r in members],
                            [cast(dict[str, Any], r.metrics)["top1"] for r in members], members))
        baseline = _pick_baseline(rows)
        _fill_stats(rows, baseline, tolerance)
        search = pick_depth_search(rows)
        family, search_family = _holm_verdicts(rows, baseline, search)
        rows.sort(key=lambda row: (-(stats_of(row).top1_mean or 0), size_key(stats_of(row)), row.label))
        for rank, row in enumerate(rows, 1):
            stats_of(row).rank = rank
        by_seed = {id(row): dict(zip(row.seeds, row.top1)) for row in rows}
        shared = stats.tie_groups([id(row) for row in rows], by_seed, family=family)
        for row, tie_rank in zip(rows, shared):
            stats_of(row).tie_rank = tie_rank
            stats_of(row).tied = shared.count(tie_rank) > 1
        cut = [r for r in ok if cut_short_reason(r)]
        board = Board(*key, rows=rows, failed=failed, caption=_caption(key, rs), cut_short=cut,
                      packages=env_packages([r.env or {} for r in rs]),
                      tolerance=tolerance, baseline=baseline, search=search, family_size=family,
                      search_family_size=search_family, label_budgets=label_budgets)
        _add_references(board)
        boards.append(board)
    return boards


#: Stored roles of the depth comparison's rows (report.curves names them; here to pick the search row).
DEPTH_SEARCH_ROLE = "depth-search"


def pick_depth_search(rows: list[Row]) -> Row | None:
    """The depth search's row (ODN's): its stored role, or the legacy one of its method; the one closest to
    the method's defaults (fewest parameters set away from them, then the shortest label) first."""
    found = [r for r in rows if (next((x.role for x in r.results if x.role in ("depth-search", "depth-oracle")), None)
                                 or LEGACY_DEPTH_ROLES.get(r.method)) == DEPTH_SEARCH_ROLE]
    found.sort(key=lambda r: (bool(r.params_config) and r.label != r.method, _away_from_defaults(r),
                              len(r.label), r.label))
    return found[0] if found else None


def _away_from_defaults(row: Row) -> int:
    """How many of a row's parameters differ from the defaults stored with its first result."""
    defaults = row.results[0].defaults or {}  # a row always holds at least one result
    return sum(k not in defaults or canonical_json(defaults[k]) != canonical_json(v)
               for k, v in row.params_config.items())


def match_missed(row: Row) -> str | None:
    """"missed its match target on k/n seeds" when a matched control's records say so (the match rule
    stores ``within_tolerance: false`` in its method_info; no typed fact holds it yet), else None."""
    missed = [r.seed for r in row.results if (r.method_info or {}).get("within_tolerance") is False]
    return f"missed its match target on {len(missed)}/{len(row.results)} seeds" if missed else None


def _holm_verdicts(rows: list[Row], base: Row | None, search: Row | None) -> tuple[int, int]:
    """Holm's step-down over each family (every other row vs the baseline; every other row vs the
    depth search): adjusted p-values and the verdicts they decide. Returns the two family sizes."""
    by_seed = {id(row): dict(zip(row.seeds, row.top1)) for row in rows}
    sizes = []
    for ref in (base, search):
        if ref is None:
            sizes.append(0)
            continue
        tests = {}
        for row in rows:
            if row is not ref:
                tests[id(row)] = stats.paired(by_seed[id(row)], by_seed[id(ref)])
        adjusted = stats.holm({k: stats.p_value(d) for k, d in tests.items()})
        sizes.append(sum(p is not None for p in adjusted.values()))
        for row in rows:
            f = stats_of(row)
            diff = tests.get(id(row))
            if ref is base:
                if diff is not None:
                    f.delta_p, f.delta_p_holm = stats.p_value(diff), adjusted[id(row)]
                if f.verdict not in ("–",):
                    f.verdict = _verdict(row is ref, diff or stats.Interval(0, None), ref.method, f.delta_p_holm)
                continue
            f.search = ref.label
            if diff is None:
                f.verdict_vs_search = "reference"
                continue
            f.delta_search_n = diff.n
            f.delta_vs_search = diff.mean
            f.delta_search_ci = _bounds(diff)
            f.delta_search_p, f.delta_search_p_holm = stats.p_value(diff), adjusted[id(row)]
            f.verdict_vs_search = _verdict(False, diff, ref.method, f.delta_search_p_holm)
    return sizes[0], sizes[1]


def detectable(board: Board) -> list[dict[str, Any]]:
    """Per reference (the baseline, then the depth search): the smallest difference the board could
    detect at 80 % power (two-sided α = 0.05, paired t) from its number of seeds and the **median over
    rows** of the observed paired sd of (row − reference), each row's sd over the seeds it shares with it."""
    out = []
    for ref in (board.baseline, board.search):
        if ref is None:
            continue
        ref_seeds = dict(zip(ref.seeds, ref.top1))
        diffs = [stats.paired(dict(zip(r.seeds, r.top1)), ref_seeds) for r in board.rows if r is not ref]
        sds = [sd for d in diffs for sd in [stats.paired_sd(d)] if sd is not None]
        n = max((d.n for d in diffs), default=0)
        sd = statistics.median(sds) if sds else None
        out.append({"reference": ref.method, "n": n, "rows": len(sds), "paired_sd": sd,
                    "sd_rule": "median over rows of the paired sd of (row − reference)",
                    "detectable_points": stats.detectable_difference(n, sd),
                    "power": 0.8, "alpha": stats.ALPHA})
    return out


def usable(r: Result) -> bool:
    return isinstance(_get(r.metrics, "top1"), (int, float))


def cut_short_reason(r: Result) -> str | None:
    if r.facts.converged is False:
        return r.facts.cut_short or "the epoch cap ended training before patience (not converged)"
    return None


def failure_reason(r: Result) -> str:
    if not r.ok:
        err = str(r.error or "no error text").strip().splitlines() or ["?"]
        text = err[0]
        return f"{r.status or 'no status'}: " + (text[:300] + "…" if len(text) > 300 else text)
    return "stored result has no numeric metrics.top1 (check it with `odnbench leaderboard verify`)"


def _pick_baseline(rows: list[Row]) -> Row | None:
    candidates = [r for r in rows if any(res.role == BASELINE_ROLE for res in r.results)]
    candidates.sort(key=lambda r: (bool(r.params_config), r.label != r.method, -len(r.results), r.label))
    return candidates[0] if candidates else None


def _fill_stats(rows: list[Row], base: Row | None, tolerance: float) -> None:
    for row in rows:
        row.stats = _aggregate(row)
    b = stats_of(base) if base else None
    base_seeds = dict(zip(base.seeds, base.top1)) if base else {}
    reference_cut = _reference_cut_short(base) if base else None
    for row in rows:
        f = stats_of(row)
        f.baseline = base.label if base else None
        f.reference_cut_short = reference_cut
        f.top1_ci = _bounds(stats.mean_interval(row.top1, row.seeds))
        if b and f.top1_mean is not None and b.top1_mean is not None:
            diff = stats.paired(dict(zip(row.seeds, row.top1)), base_seeds)
            f.delta_n = diff.n
            # The paired mean over common seeds; the difference of the means when no seed is shared.
            f.delta_vs_baseline = diff.mean if diff.n else f.top1_mean - b.top1_mean
            f.delta_ci = None if row is base else _bounds(diff)  # the reference against itself: no interval
            f.verdict = _verdict(row is base, diff, base.method if base else "baseline")
        f.macs_speedup = _ratio(b and b.macs, f.macs)
        f.measured_speedup = _ratio(b and b.latency_p50, f.latency_p50)
        # Per seed, against the baseline's mean: the range a row of different networks shows.
        f.macs_speedup_range = _span([_ratio(b and b.macs, v) for v in f.macs_per_seed])
        f.measured_speedup_range = _span([_ratio(b and b.latency_p50, v) for v in f.latency_p50_per_seed])
        why = _latency_unreliable(row) or (base and row is not base and _latency_unreliable(base, "the baseline's"))
        f.measured_speedup_reliable, f.latency_unreliable_reason = not why, why or None
        if f.latency_batched_batch is not None:
            bb = b if b and b.latency_batched_batch == f.latency_batched_batch else None  # the same batch only
            f.measured_speedup_batched = _ratio(bb and bb.latency_batched_p50, f.latency_batched_p50)
            f.measured_speedup_batched_range = _span([_ratio(bb and bb.latency_batched_p50, v)
                                                      for v in f.latency_batched_p50_per_seed or []])
            f.measured_speedup_batched_reliable = not (
                _latency_unreliable(row, key=BATCHED_KEY)
                or (base and row is not base and _latency_unreliable(base, key=BATCHED_KEY)))
        f.size_reduction = (100 * (1 - f.size_mb / b.size_mb) if b and f.size_mb is not None and b.size_mb
                            else None)
        f.size_reduction_range = _span([_reduction(v, b and b.size_mb) for v in _numbers(f.size_mb_per_seed)])
        f.meets_target, f.meets_target_verdict, f.meets_target_seeds, f.meets_target_basis = _meets_target(
            row, row is base, f, base_seeds, tolerance)
        # The one rule of Meets target (the paired interval, not the mean), and the baseline itself.
        f.iso_accuracy = f.meets_target is True or (base is not None and row is base)
        f.own_target = _own_target(row)
        f.match_missed = match_missed(row)
        f.cost_deps_train_macs = (f.cost_train_macs - f.cost_own_train_macs
                                  if f.cost_train_macs is not None and f.cost_own_train_macs is not None else None)


def _bounds(interval: stats.Interval) -> list[Any] | None:
    return [interval.low, interval.high] if interval.exists else None


def _verdict(is_baseline: bool, diff: stats.Interval, baseline: str, p_holm: float | None = None) -> str:
    """Against a reference (named by its method), by the paired test: "better" or "worse" only when the
    interval excludes 0 and, when given, the Holm-adjusted p-value is below stats.ALPHA."""
    if is_baseline:
        return "reference"
    if diff.low is None or diff.high is None or diff.mean is None:  # no interval (spelt out for the checker)
        return f"n={diff.n}, no interval"
    if diff.significant and (p_holm is None or p_holm < stats.ALPHA):
        return f"better than {baseline}" if diff.mean > 0 else f"worse than {baseline}"
    return f"not distinguishable from {baseline}"


def _reference_cut_short(base: Row) -> str | None:
    cut = [r for r in base.results if r.facts.converged is False]
    if not cut:
        return None
    return (f"the baseline {base.method} was cut short by an epoch cap on {len(cut)}/{len(base.results)} seeds "
            f"({', '.join(str(r.seed) for r in cut)}): Δ is measured against an undertrained reference")


def _latency_unreliable(row: Row, whose: str = "its", key: str = "latency_ms") -> str | None:
    """Why a row's measured latency (``metrics[key]``) cannot carry a speed-up: a busy measurement, or timed
    windows whose slowest took more than LATENCY_SPREAD_BOUND × the fastest."""
    for r in row.results:
        lat = _get(r.metrics, key)
        if latency_busy(lat):
            return f"{whose} latency was measured on a busy machine (seed {r.seed})"
        windows = _numbers((lat or {}).get("windows_ms") or [])
        if windows and min(windows) > 0 and max(windows) / min(windows) > LATENCY_SPREAD_BOUND:
            return (f"{whose} latency windows spread {max(windows) / min(windows):.2f}× > "
                    f"{LATENCY_SPREAD_BOUND:g}× (seed {r.seed})")
    return None


def _ratio(a: Any, b: Any) -> Any:
    return a / b if a and b else None


def _span(values: Iterable[Any]) -> list[Any] | None:
    """[min, max] of the numbers among ``values`` (None when there are none)."""
    nums = _numbers(values)
    return [min(nums), max(nums)] if nums else None


def _meets_target(row: Row, is_baseline: bool, f: RowStats, base_seeds: dict[Any, float], tolerance: float) -> tuple[Any, ...]:
    """The board's one rule, Δ vs baseline ≥ −tolerance, decided on the paired interval: "yes" when its
    lower bound is ≥ −tolerance, "no" when its upper bound is below, else "undecided" (also without an
    interval). (meets_target: True/False/None, its word, seeds whose own Δ meets it "k/n", basis)."""
    basis = f"95 % CI of Δ ≥ −{fmt_value(float(tolerance))}"
    if is_baseline:
        return None, "–", None, "the baseline"
    if f.delta_vs_baseline is None:
        return None, "–", None, "no baseline"
    per_seed = [t - base_seeds[s] for s, t in zip(row.seeds, row.top1) if s in base_seeds]
    seeds = f"{sum(round(d, 6) >= -tolerance for d in per_seed)}/{len(per_seed)}" if per_seed else None
    if f.delta_ci is None:
        return None, "undecided", seeds, basis + f" (n={f.delta_n}, no interval)"
    low, high = f.delta_ci
    if round(low, 6) >= -tolerance:
        return True, "yes", seeds, basis
    if round(high, 6) < -tolerance:
        return False, "no", seeds, basis
    return None, "undecided", seeds, basis


def _own_target(row: Row) -> dict[str, Any] | None:
    """A method's own target (its threshold on validation top-1 and whether it reached it), per
    seed: shown in its row beside the board's rule, which it does not replace."""
    thresholds = _numbers([r.facts.threshold for r in row.results])
    reached = [r.facts.reached_target for r in row.results if isinstance(r.facts.reached_target, bool)]
    if not thresholds and not reached:
        return None
    return {"threshold": _span(thresholds), "reached": sum(reached) if reached else None,
            "of": len(reached) if reached else None, "n": len(row.results)}


def distinct(values: Iterable[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if v is not None and v not in seen:
            seen.append(v)
    return sorted(seen, key=lambda v: (str(type(v)), v))


def own_cost(cost: dict[str, Any]) -> dict[str, Any]:
    """The method's own part of a stored cost: ``cost.own``, or for results stored before it was
    recorded (odnbench 0.1), the total less the parts named "... (dependency)"."""
    cost = cost or {}
    if isinstance(cost.get("own"), dict):
        return cast(dict[str, Any], cost["own"])
    parts = cost.get("parts")
    if isinstance(parts, dict) and parts:
        mine = [p for name, p in parts.items() if isinstance(p, dict) and not str(name).endswith("(dependency)")]
        return {k: sum(_numbers([p.get(k) for p in mine])) for k in ("epochs", "sample_steps", "train_seconds")}
    return {k: cost.get(k) for k in ("epochs", "sample_steps", "train_seconds")}


def _count_converged(results: list[Result]) -> dict[str, Any]:
    states = [r.facts.converged for r in results]
    return {"yes": sum(s is True for s in states), "no": sum(s is False for s in states),
            "unknown": sum(s is None for s in states), "n": len(states)}


def _aggregate(row: Row) -> RowStats:
    ms = [r.metrics or {} for r in row.results]
    cs = [r.cost or {} for r in row.results]
    own = [own_cost(c) for c in cs]
    lat = [m.get("latency_ms") or {} for m in ms]
    networks = {(m.get("params"), m.get("macs"), m.get("size_mb")) for m in ms}
    busy = [latency_busy(x) for x in lat]

    def per_seed(key: str) -> list[Any]:
        return [m.get(key) for m in ms]

    differ = len(networks) > 1

    def one_network(key: str) -> float | None:
        """The value of the one network every seed exported; None when they differ (never their mean)."""
        return None if differ else _mean(per_seed(key))

    return RowStats(
        method=row.label,
        method_name=row.method,
        method_params=row.params_config,
        n=len(row.results),
        seeds=row.seeds,
        top1_mean=_mean(row.top1),
        top1_std=_std(row.top1),
        top1_per_seed=row.top1,
        depth=distinct([r.facts.depth for r in row.results if isinstance(r.facts.depth, int)]),
        depth_per_seed=[r.facts.depth for r in row.results],
        networks_differ=differ,
        params=one_network("params"),
        params_per_seed=per_seed("params"),
        size_mb=one_network("size_mb"),
        size_mb_per_seed=per_seed("size_mb"),
        size_mib=one_network("size_mib"),
        size_mib_per_seed=per_seed("size_mib"),
        macs=one_network("macs"),
        macs_per_seed=per_seed("macs"),
        flops=one_network("flops"),
        latency_p50=_mean([x.get("p50") for x in lat]),
        latency_p90=_mean([x.get("p90") for x in lat]),
        latency_p50_per_seed=[x.get("p50") for x in lat],
        latency_p90_per_seed=[x.get("p90") for x in lat],
        latency_busy_seeds=sum(b is True for b in busy),
        latency_batch=lat[0].get("batch_size") if lat else None,
        latency_threads=distinct([x.get("threads") for x in lat]),
        latency_device=distinct([x.get("device") for x in lat]),
        throughput=_mean([_get(m, "throughput", "images_per_s") for m in ms]),
        throughput_batch=_get(ms[0], "throughput", "batch_size") if ms else None,
        cost_epochs=_mean([c.get("epochs") for c in cs]),
        cost_sample_steps=_mean([c.get("sample_steps") for c in cs]),
        cost_seconds=_mean([c.get("train_seconds") for c in cs]),
        cost_own_epochs=_mean([c.get("epochs") for c in own]),
        cost_own_sample_steps=_mean([c.get("sample_steps") for c in own]),
        cost_own_seconds=_mean([c.get("train_seconds") for c in own]),
        cost_train_macs=_mean_of_all([c.get("train_macs") for c in cs]),
        cost_own_train_macs=_mean_of_all([c.get("train_macs") for c in own]),
        latency_remeasured=any(isinstance(x.get("remeasured"), dict) for x in lat),
        **_batched_latency([m.get(BATCHED_KEY) for m in ms]),
        cost_device=distinct([c.get("device") for c in cs]),
        converged=_count_converged(row.results),
        keys=[r.key for r in row.results],
    )


def precision_label(env: dict[str, Any]) -> str:
    """How a result computed, from its env (results made before env.precision existed ran in fp32);
    channels-last named where it is not the device's usual layout (a CPU's is contiguous)."""
    label = "bf16 autocast" if env.get("precision") == "bf16" else (
        "fp32 (TF32 conv/matmul)" if env.get("tf32") else "fp32")
    if env.get("memory_format") == "channels_last" and env.get("device", "cpu") == "cpu":
        label += ", channels-last"
    return label


#: ``env`` keys that say how a cell ran (``executor``, odnbench.execution's settings), not a package.
RUN_SETTING_KEYS = ("executor", "precision", "tf32", "memory_format", "compile", "cudnn_benchmark", "execution_notes")


def env_packages(envs: list[dict[str, Any]]) -> list[str]:
    """The env keys of the package versions methods declared (``Method.env_packages``, stored
    beside the fingerprint): every key that is neither the fingerprint's nor a run setting, sorted."""
    known = {*FINGERPRINT_KEYS, *RUN_SETTING_KEYS}
    return sorted({k for e in envs for k in e if isinstance(k, str) and k not in known})


def _caption(key: tuple[Any, ...], results: list[Result]) -> dict[str, Any]:
    envs = [r.env or {} for r in results]
    seeds = distinct([r.config.get("seed") for r in results])
    lat = [_get(r.metrics, "latency_ms") or {} for r in results]
    grids = distinct([f"{p['grid']} (sha256 {str(p.get('grid_sha256'))[:12]})" for r in results
                      for p in [r.provenance] if isinstance(p, dict) and isinstance(p.get("grid"), str)])
    together = max([n for e in envs if isinstance(e.get("executor"), dict)
                    for n in [e["executor"].get("cells_at_once")] if isinstance(n, int)], default=1)
    return {
        "measured": measured(results),
        # Only when cells ran side by side (compare --jobs / Ray): their timings shared the machine.
        **({"cells_at_once": together} if together > 1 else {}),
        **_remeasured(results),
        "dataset": key[0], "backbone": key[1], "preset": key[2], "device": key[3],
        "device_name": distinct([e.get("device_name") for e in envs]),
        "cpu": distinct([e.get("cpu") for e in envs]),
        "threads": distinct([x.get("threads") for x in lat]) or distinct([e.get("threads") for e in envs]),
        "python": distinct([e.get("python") for e in envs]),
        "torch": distinct([e.get("torch") for e in envs]),
        "torchvision": distinct([e.get("torchvision") for e in envs]),
        "timm": distinct([e.get("timm") for e in envs]),
        # each declared package under its env key (their names in Board.packages)
        **{name: distinct([e.get(name) for e in envs]) for name in env_packages(envs)},
        "odnbench": distinct([e.get("odnbench") for e in envs]),
        "git_commit": distinct([e.get("git_commit") for e in envs]),
        "protocol": distinct([r.config.get("protocol") for r in results]),
        "seeds": seeds,
        "precision": ", ".join(distinct([precision_label(e) for e in envs])) or "fp32",
        "results": len(results),
        # The grid files that produced the results (compare --grid), each with its sha256; only when any did.
        **({"grids": grids, "cells_wall_seconds": round(sum(r.wall_seconds or 0 for r in results), 1),
            **_elapsed(results)} if grids else {}),
    }


#: A ResNet's standard stage widths, against which a board names the scale it measured ("¼ width").
RESNET_WIDTHS = (64, 128, 256, 512)
_FRACTIONS = {0.125: "⅛", 0.25: "¼", 0.5: "½", 1.0: "1×"}


def _widths(results: list[Result]) -> list[str]:
    return distinct([str(w) for r in results for w in [(r.config.get("input") or {}).get("width")
                                                         or (r.config.get("recipe") or {}).get("width")] if w])


def width_scale(backbone: str, width: str) -> str | None:
    """"¼" when every stage of a ResNet is a quarter of its standard width, else None."""
    try:
        ws = [int(x) for x in str(width).split(",")]
    except ValueError:
        return None
    if not backbone.startswith("resnet") or len(ws) != len(RESNET_WIDTHS):
        return None
    ratios = {w / s for w, s in zip(ws, RESNET_WIDTHS)}
    return _FRACTIONS.get(ratios.pop()) if len(ratios) == 1 else None


def _epoch_budget(r: Result) -> dict[str, Any]:
    """A cell's epoch budget and caps as stored: the recipe's cap, patience and schedule, and every
    parameter of its method that sets epochs or patience (those left unset are left out)."""
    recipe = r.config.get("recipe") or {}
    own = {k: v for k, v in sorted((r.config.get("params") or {}).items())
           if _sets_epochs(k, v)}
    return {"recipe_epochs": recipe.get("epochs"), "recipe_patience": recipe.get("patience"),
            "schedule": recipe.get("schedule"), **own}


def measured(results: list[Result]) -> dict[str, Any]:
    """What a board measured, from its stored records alone: the backbone's widths, the full network's
    parameters (the baseline's exported model), the image counts of each split, each method's epoch
    budget and caps, and how many cells an epoch cap cut short."""
    ok = [r for r in results if r.ok and usable(r)]
    sizes = [r.data.get("sizes") for r in ok if isinstance(r.data, dict) and isinstance(r.data.get("sizes"), dict)]
    budgets: dict[str, list[Any]] = {}
    for r in ok:
        budgets.setdefault(r.method, [])
        budget = _epoch_budget(r)
        if budget not in budgets[r.method]:
            budgets[r.method].append(budget)
    search = [r for r in ok if (r.role or LEGACY_DEPTH_ROLES.get(r.method)) == DEPTH_SEARCH_ROLE]
    cut = [r for r in ok if r.facts.converged is False]
    return {
        "widths": _widths(ok),
        "full_params": distinct([_get(r.metrics, "params") for r in ok if r.role == BASELINE_ROLE]),
        "images": {split: distinct([s.get(split) for s in sizes if s is not None]) for split in ("train", "val", "test")},
        "epoch_budgets": budgets,
        "cells": len(ok), "cut_short": len(cut),
        "train_limit": distinct([(r.config.get("recipe") or {}).get("train_limit") for r in ok]),
        "search_threshold_auto": bool(search) and all((r.config.get("params") or {}).get("target") is None
                                                      for r in search),
    }


def _elapsed(results: list[Result]) -> dict[str, float]:
    """Seconds from the first cell's start (finished_at - wall_seconds) to the last cell's end: the time the
    board took to produce with its cells side by side; it includes any pause between resumed runs."""
    spans = []
    for r in results:
        try:
            end = datetime.fromisoformat(str(r.finished_at)).timestamp()
        except ValueError:
            continue
        if isinstance(r.wall_seconds, (int, float)):
            spans.append((end - r.wall_seconds, end))
    return {"elapsed_seconds": round(max(e for _, e in spans) - min(s for s, _ in spans), 1)} if spans else {}


def _batched_latency(lat: list[Any]) -> dict[str, Any]:
    """A row's larger-batch latency (``--remeasure-latency``), per image; nothing when no seed has one."""
    lat = [x if isinstance(x, dict) else {} for x in lat]
    batches = distinct([x.get("batch_size") for x in lat])
    if not batches:
        return {}
    p50s, p90s = [x.get("ms_per_image_p50") for x in lat], [x.get("ms_per_image_p90") for x in lat]
    return {"latency_batched_batch": batches[0] if len(batches) == 1 and all(lat) else None,
            "latency_batched_p50": _mean_of_all(p50s) if len(batches) == 1 else None,
            "latency_batched_p90": _mean_of_all(p90s) if len(batches) == 1 else None,
            "latency_batched_p50_per_seed": p50s, "latency_batched_p90_per_seed": p90s}


def _remeasured(results: list[Result]) -> dict[str, Any]:
    """How ``--remeasure-latency`` measured the latency it put in place of the stored one (report.remeasure),
    as data (``latency_measurement``) and as the sentence the page prints (``latency_remeasured``); nothing
    when the board uses stored latencies."""
    lat = [x for r in results for x in [_get(r.metrics, "latency_ms")] if isinstance(_get(x, "remeasured"), dict)]
    if not lat:
        return {}
    batched = [x for r in results for x in [_get(r.metrics, BATCHED_KEY)] if isinstance(_get(x, "remeasured"), dict)]
    how = {"serial": True, "models": len(lat), "results": len(results),
           "cpu": distinct([x["remeasured"].get("cpu") for x in lat]),
           "threads": distinct([x.get("threads") for x in lat]),
           "batch_sizes": distinct([x.get("batch_size") for x in lat + batched]),
           "windows": distinct([x.get("windows") for x in lat + batched]),
           "iters_per_window": distinct([x.get("iters_per_window") for x in lat + batched]),
           "warmup": distinct([x["remeasured"].get("warmup") for x in lat + batched])}
    # latencies timed on test images (early exits) stay as their cells measured them: the page says how many
    kept = sum(1 for r in results for x in [_get(r.metrics, "latency_ms")]
               if isinstance(x, dict) and x.get("input") == "images" and not isinstance(x.get("remeasured"), dict))
    if kept:
        how["kept_on_images"] = kept
    return {"latency_remeasured": remeasured_text(how), "latency_measurement": how}


def remeasured_text(how: dict[str, Any], escape: Callable[[object], str] = str) -> str:
    """The sentence saying how ``--remeasure-latency`` measured (``how``: caption.latency_measurement);
    ``escape`` is applied to each stored value (the page escapes the CPU's name for markdown)."""
    larger = [b for b in how.get("batch_sizes") or [] if b != 1]

    def listed(values: list[Any] | None) -> str:
        return "/".join(escape(v) for v in values or []) or "?"

    threads = how.get("threads") or []
    return (f"Latency re-measured serially (`--remeasure-latency`), one model at a time, after training: "
            f"{how.get('models')} of {how.get('results')} stored models reloaded and timed again on "
            f"{listed(how.get('cpu'))} with {listed(threads)} thread{'' if threads == [1] else 's'}, in the precision "
            f"and memory format each cell ran in, at batch 1" + (f" and batch {listed(larger)}" if larger else "")
            + f"; p50 and p90 of {listed(how.get('windows'))} timed windows × {listed(how.get('iters_per_window'))} "
            f"calls each, after {listed(how.get('warmup'))} warm-up calls"
            + (f"; batch {listed(larger)} in ms per image (a call's time / {listed(larger)})" if larger else "")
            + ". Latency and measured speed-ups use those numbers, stored beside each record in "
            "latency-remeasured.json; the result.json files keep their own."
            + (f" {how['kept_on_images']} {'latency' if how['kept_on_images'] == 1 else 'latencies'} timed on test "
               "images (early-exit networks, whose cost depends on the image; the report loads no data set) are "
               "kept as their cells measured them, while the grid ran: their measured speed-ups are withheld "
               "where that timing was busy." if how.get("kept_on_images") else ""))


def _add_references(board: Board) -> None:
    """Attach the published numbers stored with this board's results (paper preset only)."""
    for method in sorted({row.method for row in board.rows}):
        rows = [row for row in board.rows if row.method == method]
        ref = next((r.reference for row in rows for r in row.results if r.reference), None)
        if not ref:
            continue
        if board.preset != ref.get("preset"):  # the preset that follows the paper's recipe (the plugin says)
            board.reference_elsewhere.append((method, ref))
            board.reference_notes.append(reference_note(board, method, ref))
            continue
        for row in rows:
            f = stats_of(row)
            board.reported.append({
                "method": row.label,
                "depth_reported": ref.get("depth"), "depth_measured": f.depth,
                "top1_reported": ref.get("top1"), "top1_measured": f.top1_mean,
                "size_reduction_reported": ref["size_reduction"] if ref.get("size_reduction") is not None
                else _reduction(ref.get("size_mb"), ref.get("full_size_mb")),
                # seeds of different networks: [min, max] over seeds, never their mean
                "size_reduction_measured": f.size_reduction_range if f.networks_differ else f.size_reduction,
                "size_mb_reported": ref.get("size_mb"),
                "size_mb_measured": _span(f.size_mb_per_seed) if f.networks_differ else f.size_mb,
                "source": ref.get("source"),
            })


def reference_note(board: Board, method: str, ref: dict[str, Any], text: Callable[[object], str] = str,
                   code: Callable[[object], str] = lambda v: f"`{v}`") -> str:
    """Why a method's published numbers are not beside its measured ones on this board; ``text`` and
    ``code`` escape each stored piece for the medium (plain for board.json, markdown for a page)."""
    return (f"{text(method)}: the paper reports {text(_describe_reference(ref))} on {text(board.dataset)}/"
            f"{text(board.backbone)}; those numbers come from the paper's recipe, so they are compared on "
            f"{code(ref.get('preset'))}-preset boards only (this board is preset {code(board.preset)}).")


def _reduction(small: Any, full: Any) -> Any:
    return 100 * (1 - small / full) if small is not None and full else None


def _describe_reference(ref: dict[str, Any]) -> str:
    parts = []
    if ref.get("depth") is not None:
        parts.append(f"optimal depth {ref['depth']}")
    if ref.get("top1") is not None:
        parts.append(f"top-1 {ref['top1']:.2f} %")
    red = ref["size_reduction"] if ref.get("size_reduction") is not None else _reduction(ref.get("size_mb"),
                                                                                         ref.get("full_size_mb"))
    if red is not None:
        parts.append(f"size −{red:.2f} %")
    return ", ".join(parts) or "numbers"

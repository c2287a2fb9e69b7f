"""Every quantity a board shows, declared once.

- :data:`STORED`: the per-row fields of a board as data (``board.json``, ``board.csv``,
  ``leaderboard --format json``), in their CSV order, each with its unit. They are the fields of
  :class:`~odnbench.report.boards.RowStats` (a test ties the two); :data:`RECORD_FIELDS` is their names.
- :data:`COLUMNS`: every displayed column: its title (``{baseline}`` is the baseline's method name,
  e.g. "Δ vs dense"), the stored fields it reads, its markdown cell and, for the few the terminal
  summary shows, its terminal title and cell.
- The tables are tuples of column keys: :data:`MAIN`, :data:`DETAIL`, :data:`ISO` (the page),
  :data:`TERMINAL` (``compare``'s summary) and :data:`REPORTED` (reported-vs-measured numbers).

A new column: declare its stored fields in :data:`STORED` (and in ``RowStats``, computed in
``report/boards``), its :class:`Column` in :data:`COLUMNS`, and name its key in the tables that
show it. Nothing else names a column.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from odnbench.report.boards import Board, Row, RowStats
from odnbench.report.fmt import (
    fmt_converged,
    fmt_depths,
    fmt_epochs,
    fmt_f,
    fmt_int,
    fmt_list,
    fmt_macs,
    fmt_seconds,
    fmt_span,
    fmt_value,
    fmt_x,
    md_text,
    terminal_text,
)
from odnbench.report.stats import ALPHA


@dataclass(frozen=True)
class Stored:
    """One field stored per row: its name in board.json / board.csv and its unit ("" when none).
    ``optional``: stored only on boards that have it (:func:`has_optional`), so that boards without
    it keep their bytes."""

    name: str
    unit: str = ""
    optional: bool = False


#: Per-seed lists are in ``seeds`` order; ``_range`` fields are [min, max] over seeds.
STORED: tuple[Stored, ...] = (
    Stored("rank"), Stored("method", "label"), Stored("method_name"), Stored("method_params"), Stored("n", "seeds"),
    Stored("seeds"), Stored("top1_mean", "%"), Stored("top1_std", "points"), Stored("top1_per_seed", "%"),
    Stored("delta_vs_baseline", "points"), Stored("depth", "blocks"), Stored("depth_per_seed", "blocks"),
    Stored("networks_differ"), Stored("params", "parameters"), Stored("params_per_seed", "parameters"),
    Stored("size_mb", "MB"), Stored("size_mb_per_seed", "MB"), Stored("size_mib", "MiB"),
    Stored("size_mib_per_seed", "MiB"), Stored("size_reduction", "%"), Stored("size_reduction_range", "%"), Stored("macs", "MACs per image"),
    Stored("macs_per_seed", "MACs per image"), Stored("flops", "FLOPs per image"), Stored("latency_p50", "ms"),
    Stored("latency_p90", "ms"), Stored("latency_p50_per_seed", "ms"), Stored("latency_p90_per_seed", "ms"),
    Stored("latency_busy_seeds", "seeds"), Stored("latency_batch", "images"), Stored("latency_threads"),
    Stored("latency_device"), Stored("throughput", "images/s"), Stored("throughput_batch", "images"),
    Stored("macs_speedup", "×"), Stored("macs_speedup_range", "×"), Stored("measured_speedup", "×"),
    Stored("measured_speedup_range", "×"), Stored("cost_epochs", "epochs"), Stored("cost_sample_steps", "samples"),
    Stored("cost_seconds", "s"), Stored("cost_own_epochs", "epochs"), Stored("cost_own_sample_steps", "samples"),
    Stored("cost_own_seconds", "s"), Stored("cost_device"), Stored("converged", "seeds"), Stored("meets_target"),
    Stored("meets_target_seeds", "seeds"), Stored("meets_target_basis"), Stored("own_target"),
    Stored("iso_accuracy"), Stored("baseline", "label"), Stored("keys"), Stored("top1_ci", "%"),
    Stored("delta_n", "seeds"), Stored("delta_ci", "points"), Stored("verdict"), Stored("tie_rank"),
    Stored("tied"), Stored("meets_target_verdict"), Stored("cost_train_macs", "MACs"),
    Stored("cost_own_train_macs", "MACs"), Stored("measured_speedup_reliable"), Stored("latency_unreliable_reason"),
    Stored("latency_remeasured"), Stored("reference_cut_short"), Stored("delta_p"), Stored("delta_p_holm"),
    Stored("search", "label"), Stored("delta_vs_search", "points"), Stored("delta_search_n", "seeds"),
    Stored("delta_search_ci", "points"), Stored("delta_search_p"), Stored("delta_search_p_holm"),
    Stored("verdict_vs_search"), Stored("match_missed"),
    Stored("cost_deps_train_macs", "MACs"),
    # The larger batch `--remeasure-latency` times (report.remeasure): on re-measured boards only.
    Stored("latency_batched_batch", "images", optional=True), Stored("latency_batched_p50", "ms per image", optional=True),
    Stored("latency_batched_p90", "ms per image", optional=True),
    Stored("latency_batched_p50_per_seed", "ms per image", optional=True),
    Stored("latency_batched_p90_per_seed", "ms per image", optional=True),
    Stored("measured_speedup_batched", "×", optional=True), Stored("measured_speedup_batched_range", "×", optional=True),
    Stored("measured_speedup_batched_reliable", optional=True),
)
#: The row fields stored per row in board.json / board.csv, in this order.
RECORD_FIELDS: tuple[str, ...] = tuple(s.name for s in STORED)
#: The fields stored only on boards that have them (the larger batch's latency).
OPTIONAL_FIELDS: tuple[str, ...] = tuple(s.name for s in STORED if s.optional)


def has_optional(board: Board) -> bool:
    """Whether a board stores and shows the optional fields: some row has one (a re-measured board)."""
    return any(getattr(row.stats, name) is not None for row in board.rows for name in OPTIONAL_FIELDS)



def clean(v: Any) -> Any:
    """Stable numbers for JSON/CSV: integral floats become ints, others are rounded to 6 places."""
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        return int(v) if v.is_integer() and abs(v) < 2**53 else round(v, 6)
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    return v


def row_record(board: Board, row: Row) -> dict[str, Any]:
    """One row as data: the board it is on, then every :data:`STORED` field (stable numbers)."""
    rec: dict[str, Any] = {"dataset": board.dataset, "backbone": board.backbone, "preset": board.preset,
                           "device": board.device}
    fields = RECORD_FIELDS if has_optional(board) else tuple(n for n in RECORD_FIELDS if n not in OPTIONAL_FIELDS)
    rec.update({name: clean(getattr(row.stats, name)) for name in fields})
    return rec


#: Marks a Δ measured against a baseline an epoch cap cut short.
REFERENCE_MARK = "⚠"


# --- formatting shared by several columns -------------------------------------------------------------------

def fmt_interval(mean: float | None, ci: Sequence[float] | None, n: int, signed: bool = False) -> str:
    """``98.74 ± 0.40`` (half-width of the 95 % t-interval), or ``98.74 (n=1, no interval)``."""
    if mean is None:
        return "–"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    if ci is None:
        return f"{text} (n={n}, no interval)"
    return f"{text} ± {(ci[1] - ci[0]) / 2:.2f}"


def fmt_rank(f: RowStats) -> str:
    """The shared rank of the row's tie group, ``=`` when it shares it."""
    return f"{f.tie_rank}{'=' if f.tied else ''}"


def fmt_p(p: float) -> str:
    """Two significant digits, more when two would round across α (0.0498 is not "0.05" beside "worse")."""
    digits = 2
    while digits < 6 and (float(f"{p:.{digits}g}") < ALPHA) != (p < ALPHA):
        digits += 1
    return f"{p:.{digits}g}"


def fmt_holm(p: float | None) -> str:
    return "" if p is None else f" (Holm p={fmt_p(p)})"


def fmt_verdict(f: RowStats) -> str:
    if f.verdict in ("–", "reference"):
        return f.verdict
    return f"{f.verdict}{fmt_holm(f.delta_p_holm)} · target {f.meets_target_verdict}"


def _md_delta_search(f: RowStats) -> str:
    """Δ vs the depth search, paired by seed, with its Holm-adjusted verdict."""
    if f.search is None:
        return "–"
    if f.verdict_vs_search == "reference":
        return "reference"
    if f.delta_vs_search is None:
        return "–"
    return (f"{fmt_interval(f.delta_vs_search, f.delta_search_ci, f.delta_search_n, signed=True)}: "
            f"{short_verdict(f.verdict_vs_search)}{fmt_holm(f.delta_search_p_holm)}")


def fmt_compute(v: float | None) -> str:
    return "not recorded" if v is None else fmt_macs(v)


def _md_compute(f: RowStats) -> str:
    """The method's own training compute, then its dependencies' (the total is their sum)."""
    if f.cost_own_train_macs is None or not f.cost_deps_train_macs:
        return fmt_compute(f.cost_train_macs)
    return f"{fmt_macs(f.cost_own_train_macs)} + {fmt_macs(f.cost_deps_train_macs)}"


def fmt_meets(f: RowStats) -> str:
    """The board's verdict (yes / no / undecided / –) and on how many seeds Δ alone meets it, then the
    method's own target when it has one."""
    word = f.meets_target_verdict + (f" ({f.meets_target_seeds} seeds)" if f.meets_target_seeds else "")
    own = f.own_target
    if not own:
        return word
    parts = []
    if own.get("threshold"):
        parts.append(f"val ≥ {fmt_span(own['threshold'], lambda v: f'{v:.2f}')}")
    if own.get("of"):
        parts.append(f"reached {own['reached']}/{own['of']}")
    return f"{word}; own target: {', '.join(parts)}"


def signed_span(values: Iterable[object]) -> str:
    """Signed percentages over seeds: "-93.34 % to -85.26 %" (a dash would read as a minus)."""
    nums = [v for v in values if isinstance(v, (int, float))]
    if not nums:
        return "–"
    lo, hi = f"{min(nums):+.2f} %", f"{max(nums):+.2f} %"
    return lo if lo == hi else f"{lo} to {hi}"


def reductions(f: RowStats) -> list[float]:
    """The smallest and largest of the seeds' sizes against the baseline's, in % (negative = smaller)."""
    return [0.0 - v for v in f.size_reduction_range or []]


def fmt_size_change(f: RowStats) -> str:
    """The row's size against the baseline's: one signed % or, for seeds of different networks, a range."""
    if f.networks_differ:
        return signed_span(reductions(f))
    return "–" if f.size_reduction is None else f"{0.0 - round(f.size_reduction, 2):+.2f} %"


def _net(f: RowStats, key: str, fmt: Callable[[Any], str], span: Callable[..., str] = fmt_span) -> str:
    """One network's value, or min–max over seeds when the seeds exported different networks."""
    return span(getattr(f, f"{key}_per_seed"), fmt) if f.networks_differ else fmt(getattr(f, key))


def _delta_mark(f: RowStats) -> str:
    return f" {REFERENCE_MARK}" if f.reference_cut_short and f.delta_vs_baseline is not None else ""


def _md_missed(f: RowStats) -> str:
    """A matched control whose records say its match missed its target: flagged wherever it is named."""
    return f" {REFERENCE_MARK} _{md_text(f.match_missed)}_" if f.match_missed else ""


def _md_delta_ci(f: RowStats) -> str:
    if f.delta_vs_baseline is None:
        return "–"
    if f.verdict == "reference":
        return "reference" + _delta_mark(f)
    return fmt_interval(f.delta_vs_baseline, f.delta_ci, f.delta_n, signed=True) + _delta_mark(f)


def _md_latency(f: RowStats) -> str:
    if f.networks_differ:
        text = f"{fmt_span(f.latency_p50_per_seed, fmt_f)} / {fmt_span(f.latency_p90_per_seed, fmt_f)}"
    else:
        text = f"{fmt_f(f.latency_p50)} / {fmt_f(f.latency_p90)}"
    return text + (" _busy_" if f.latency_busy_seeds else "")


def _md_measured(f: RowStats) -> str:
    measured = fmt_span(f.measured_speedup_range, fmt_x) if f.networks_differ else fmt_x(f.measured_speedup)
    return measured if f.measured_speedup_reliable or measured == "–" else "_unreliable_"


def fmt_per_image(v: float | None) -> str:
    return fmt_f(v, 4)


def _md_latency_batched(f: RowStats) -> str:
    if f.networks_differ:
        return (f"{fmt_span(f.latency_batched_p50_per_seed, fmt_per_image)} / "
                f"{fmt_span(f.latency_batched_p90_per_seed, fmt_per_image)}")
    return f"{fmt_per_image(f.latency_batched_p50)} / {fmt_per_image(f.latency_batched_p90)}"


def _md_measured_batched(f: RowStats) -> str:
    measured = (fmt_span(f.measured_speedup_batched_range, fmt_x) if f.networks_differ
                else fmt_x(f.measured_speedup_batched))
    return measured if f.measured_speedup_batched_reliable or measured == "–" else "_unreliable_"


# --- the terminal's cells: each number whole, a range or an interval on two lines ---------------------------

def _t_span(values: Iterable[object] | None, fmt: Callable[[float], str]) -> str:
    """min–max over seeds on two lines (``lo–`` above ``hi``), so that a range is no wider than one value."""
    text = fmt_span(values, fmt)
    return text.replace("–", "–\n", 1) if "–" in text[1:] else text


def _t_net(f: RowStats, key: str, fmt: Callable[[Any], str]) -> str:
    if f.networks_differ:
        return _t_span(getattr(f, f"{key}_per_seed"), fmt)
    return "–" if getattr(f, key) is None else fmt(getattr(f, key))


def _t_interval(mean: float | None, ci: Sequence[float] | None, signed: bool = False) -> str:
    if mean is None:
        return "–"
    text = f"{mean:+.2f}" if signed else f"{mean:.2f}"
    # The half-width under the mean, so that an interval is no wider than one value.
    return f"{text}\nn=1" if ci is None else f"{text}\n±{(ci[1] - ci[0]) / 2:.2f}"


def short_verdict(verdict: str) -> str:
    """The verdict in a few characters (the legend under the terminal table spells them out)."""
    if verdict.startswith("better than "):
        return "better"
    if verdict.startswith("worse than "):
        return "worse"
    if verdict.startswith("not distinguishable from "):
        return "≈ " + verdict.removeprefix("not distinguishable from ")
    return {"reference": "ref.", "–": "–"}.get(verdict, "n=1")


def _t_verdict(f: RowStats) -> str:
    verdict = short_verdict(f.verdict)
    if f.verdict not in ("reference", "–"):
        verdict += "\n" + {"undecided": "undec."}.get(f.meets_target_verdict, f.meets_target_verdict)
    return verdict


def _t_delta(f: RowStats) -> str:
    delta = "ref." if f.verdict == "reference" else _t_interval(f.delta_vs_baseline, f.delta_ci, signed=True)
    return delta + ("!" if f.reference_cut_short and f.delta_vs_baseline is not None else "")


# --- the columns -------------------------------------------------------------------------------------------

Align = Literal["left", "right"]


@dataclass(frozen=True)
class Column:
    """One displayed column. ``title`` may name ``{baseline}`` (the baseline's method name);
    ``title_of`` replaces it where the title says more of the board (latency's batch and threads).
    ``markdown`` makes a page's cell from a row's numbers (None: the section fills it, e.g. a rank in
    the iso-accuracy view); ``terminal`` the summary's, where the summary shows the column."""

    key: str
    title: str
    reads: tuple[str, ...]
    markdown: Callable[[RowStats], str] | None
    align: Align = "right"
    title_of: Callable[[Board], str] | None = None
    terminal_title: str | None = None
    terminal: Callable[[RowStats], str] | None = None
    terminal_align: Align | None = None  # where it differs from the page's
    shown: Callable[[Board], bool] | None = None  # None: on every board; else only where it says so

    def header(self, board: Board | None) -> str:
        if board is not None and self.title_of is not None:
            return self.title_of(board)
        return self.title.format(baseline=md_text(board.baseline_name) if board is not None else "baseline",
                                 search=md_text(board.search_name) if board is not None else "depth search")

    def terminal_header(self, board: Board) -> str:
        return (self.terminal_title or self.title).format(baseline=terminal_text(board.baseline_name),
                                                          search=terminal_text(board.search_name))


def latency_title(board: Board) -> str:
    from odnbench.report.boards import distinct, stats_of

    rows = board.rows
    batch = distinct([stats_of(r).latency_batch for r in rows])
    threads = distinct([t for r in rows for t in stats_of(r).latency_threads or []])
    devices = distinct([d for r in rows for d in stats_of(r).latency_device or []])
    return (f"Latency p50 / p90 ms (mean over seeds ‡; batch {fmt_list(batch)}, {threads_text(threads)}, "
            f"{fmt_list(devices)})")


def batched_latency_title(board: Board) -> str:
    from odnbench.report.boards import distinct, stats_of

    batch = distinct([stats_of(r).latency_batched_batch for r in board.rows])
    threads = distinct([t for r in board.rows for t in stats_of(r).latency_threads or []])
    return (f"Latency at batch {fmt_list(batch)}, ms per image p50 / p90 (mean over seeds ‡; "
            f"{threads_text(threads)})")


def batched_speedup_title(board: Board) -> str:
    from odnbench.report.boards import distinct, stats_of

    return f"Speed-up measured at batch {fmt_list(distinct([stats_of(r).latency_batched_batch for r in board.rows]))} ‡"


def threads_text(values: Iterable[object] | None) -> str:
    return f"{fmt_list(values)} thread{'' if list(values or []) == [1] else 's'}"


def meets_title(board: Board) -> str:
    return (f"Meets target (95 % CI of Δ ≥ −{fmt_value(float(board.tolerance))} points; seeds whose Δ meets it; "
            f"own target beside it)")


def _top1(f: RowStats) -> str:
    """Mean ± sample std (n); one seed has no spread to show, so no "± 0.00"."""
    if f.top1_mean is None:
        return "–"
    return f"{f.top1_mean:.2f} (n={f.n})" if f.n < 2 else f"{f.top1_mean:.2f} ± {f.top1_std:.2f} (n={f.n})"


# ‡ marks a value of each seed's exported network: one value when every seed exported the same network,
# min–max over seeds when they differ (markdown's NETWORK_NOTE).
COLUMNS: tuple[Column, ...] = (
    Column("rank", "Rank", ("rank",), lambda f: str(f.rank)),
    Column("ranked", "Rank · method", ("tie_rank", "tied", "method", "match_missed"),
           lambda f: f"{fmt_rank(f)} {md_text(f.method)}{_md_missed(f)}", "left"),
    Column("tie_rank", "#", ("tie_rank", "tied"), fmt_rank, terminal=fmt_rank),
    Column("method", "Method", ("method", "match_missed"), lambda f: md_text(f.method) + _md_missed(f), "left",
           terminal=lambda f: terminal_text(f.method)),
    Column("iso_rank", "Rank", (), None),
    Column("depth", "Depth ‡", ("depth",), lambda f: fmt_depths(f.depth), terminal_title="Depth",
           terminal=lambda f: fmt_depths(f.depth)),
    Column("top1", "Top-1 % (mean ± std, n)", ("top1_mean", "top1_std", "n"), _top1),
    Column("top1_ci", "Top-1 % (mean ± 95 % CI)", ("top1_mean", "top1_ci", "n"),
           lambda f: fmt_interval(f.top1_mean, f.top1_ci, f.n), terminal_title="Top-1 %\n±95% CI",
           terminal=lambda f: _t_interval(f.top1_mean, f.top1_ci)),
    Column("delta", "Δ vs {baseline}", ("delta_vs_baseline", "reference_cut_short"),
           lambda f: "–" if f.delta_vs_baseline is None else f"{f.delta_vs_baseline:+.2f}{_delta_mark(f)}"),
    Column("delta_ci", "Δ vs {baseline} (paired, 95 % CI)",
           ("delta_vs_baseline", "delta_ci", "delta_n", "verdict", "reference_cut_short"), _md_delta_ci,
           terminal_title="Δ {baseline}\npaired", terminal=_t_delta),
    Column("delta_search", "Δ vs {search} (paired, 95 % CI; Holm verdict)",
           ("search", "delta_vs_search", "delta_search_ci", "delta_search_n", "verdict_vs_search",
            "delta_search_p_holm"), _md_delta_search),
    Column("params", "Params ‡", ("params", "params_per_seed", "networks_differ"), lambda f: _net(f, "params", fmt_int)),
    Column("size_mb", "Size MB ‡", ("size_mb", "size_mb_per_seed", "networks_differ"),
           lambda f: _net(f, "size_mb", fmt_f), terminal_title="MB",
           terminal=lambda f: _t_net(f, "size_mb", lambda v: f"{v:.3f}")),
    Column("size_mb_saved", "Size MB (saved) ‡", ("size_mb", "size_mb_per_seed", "networks_differ"),
           lambda f: _net(f, "size_mb", fmt_f)),
    Column("size_mib", "Size MiB (fp32) ‡", ("size_mib", "size_mib_per_seed", "networks_differ"),
           lambda f: _net(f, "size_mib", fmt_f)),
    Column("reduction", "Size vs {baseline} ‡", ("size_reduction", "size_reduction_range", "networks_differ"),
           fmt_size_change),
    Column("macs", "MACs ‡", ("macs", "macs_per_seed", "networks_differ"), lambda f: _net(f, "macs", fmt_macs),
           terminal_title="MACs", terminal=lambda f: _t_net(f, "macs", lambda v: fmt_macs(v, ".3g"))),
    Column("latency", "Latency p50 / p90 ms",
           ("latency_p50", "latency_p90", "latency_p50_per_seed", "latency_p90_per_seed", "latency_busy_seeds",
            "latency_batch", "latency_threads", "latency_device"), _md_latency, title_of=latency_title),
    Column("macs_speedup", "Speed-up MACs ‡", ("macs_speedup", "macs_speedup_range", "networks_differ"),
           lambda f: fmt_span(f.macs_speedup_range, fmt_x) if f.networks_differ else fmt_x(f.macs_speedup)),
    Column("measured_speedup", "Speed-up measured ‡",
           ("measured_speedup", "measured_speedup_range", "measured_speedup_reliable", "networks_differ"),
           _md_measured),
    Column("latency_batched", "Latency at the larger batch, ms per image p50 / p90",
           ("latency_batched_batch", "latency_batched_p50", "latency_batched_p90", "latency_batched_p50_per_seed",
            "latency_batched_p90_per_seed", "latency_threads"), _md_latency_batched, title_of=batched_latency_title,
           shown=has_optional),
    Column("measured_speedup_batched", "Speed-up measured at the larger batch ‡",
           ("latency_batched_batch", "measured_speedup_batched", "measured_speedup_batched_range",
            "measured_speedup_batched_reliable", "networks_differ"), _md_measured_batched,
           title_of=batched_speedup_title, shown=has_optional),
    Column("compute", "Training compute, MACs (own + dependencies)",
           ("cost_train_macs", "cost_own_train_macs", "cost_deps_train_macs"), _md_compute, terminal_title="Train\ncompute",
           terminal=lambda f: "n/r" if f.cost_train_macs is None else fmt_macs(f.cost_train_macs, ".3g")),
    Column("cost_own", "Cost, own part (compute / epochs / wall)",
           ("cost_own_train_macs", "cost_own_epochs", "cost_own_seconds"),
           lambda f: f"{fmt_compute(f.cost_own_train_macs)} / {fmt_epochs(f.cost_own_epochs)} / "
                     f"{fmt_seconds(f.cost_own_seconds)}"),
    Column("cost", "Cost, total with dependencies (epochs / sample-steps / wall)",
           ("cost_epochs", "cost_sample_steps", "cost_seconds"),
           lambda f: f"{fmt_epochs(f.cost_epochs)} / {fmt_int(f.cost_sample_steps)} / {fmt_seconds(f.cost_seconds)}"),
    Column("verdict", "Verdict vs {baseline} · target", ("verdict", "meets_target_verdict"),
           lambda f: md_text(fmt_verdict(f)), "left", terminal_title="Vs {baseline}\ntarget", terminal=_t_verdict),
    Column("meets", "Meets target", ("meets_target_verdict", "meets_target_seeds", "own_target"),
           lambda f: md_text(fmt_meets(f)), "left", title_of=meets_title),
    Column("converged", "Converged (seeds)", ("converged",), lambda f: fmt_converged(f.converged),
           terminal_title="Con-\nverged", terminal=lambda f: fmt_converged(f.converged), terminal_align="left"),
)
BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}

#: The page opens with these 9 columns (what a reader decides on); everything else is in DETAIL.
MAIN = ("ranked", "depth", "top1_ci", "delta_ci", "delta_search", "size_mb", "macs", "compute", "verdict")
DETAIL = ("ranked", "top1", "params", "size_mib", "latency", "latency_batched", "macs_speedup", "measured_speedup",
          "measured_speedup_batched", "cost_own", "cost", "meets", "converged")
ISO = ("iso_rank", "method", "top1_ci", "delta_ci", "size_mb_saved", "reduction", "macs", "macs_speedup",
       "measured_speedup", "compute", "converged")
#: ``compare``'s summary: the main table's columns, narrow enough for 100 columns.
TERMINAL = ("tie_rank", "method", "depth", "top1_ci", "delta_ci", "size_mb", "macs", "compute", "verdict",
            "converged")


def columns(keys: Sequence[str], board: Board | None = None) -> tuple[Column, ...]:
    """The columns of ``keys``; with ``board``, those it shows (a column with ``shown`` may leave it out)."""
    return tuple(c for c in (BY_KEY[k] for k in keys) if board is None or c.shown is None or c.shown(board))


def cells(f: RowStats) -> dict[str, str]:
    """Every column's markdown cell of one row, by column key."""
    return {c.key: c.markdown(f) for c in COLUMNS if c.markdown is not None}


def terminal_cells(f: RowStats) -> list[str]:
    """The terminal summary's cells of one row, in :data:`TERMINAL` order."""
    return [terminal_text(cast(Callable[[RowStats], str], c.terminal)(f)) for c in columns(TERMINAL)]


# --- reported-vs-measured numbers (one row per reported number, from Board.reported) ------------------------

@dataclass(frozen=True)
class ReportedColumn:
    key: str
    title: str
    markdown: Callable[[dict[str, Any]], str]
    align: Align = "right"

    def header(self, board: Board | None) -> str:
        return self.title.format(baseline=md_text(board.baseline_name) if board is not None else "baseline")


def _pair(rep: Any, meas: Any, fmt: Callable[[Any], str]) -> str:
    return f"{fmt(rep) if rep is not None else '–'} / {fmt(meas) if meas is not None else '–'}"


def _fmt_reduction(v: Any) -> str:
    """A size reduction, or [min, max] over seeds of different networks."""
    if isinstance(v, list):
        lo, hi = (f"−{x:.2f} %" for x in v)
        return lo if lo == hi else f"{lo} to {hi}"
    return f"−{v:.2f} %"


REPORTED: tuple[ReportedColumn, ...] = (
    ReportedColumn("method", "Method", lambda x: md_text(x["method"]), "left"),
    ReportedColumn("depth", "Optimal depth reported / measured",
                   lambda x: _pair(x["depth_reported"], x["depth_measured"] or None,
                                   lambda v: fmt_depths(v) if isinstance(v, list) else str(v))),
    ReportedColumn("top1", "Top-1 % reported / measured",
                   lambda x: _pair(x["top1_reported"], x["top1_measured"], lambda v: f"{v:.2f}")),
    ReportedColumn("reduction", "Size reduction vs {baseline} reported / measured",
                   lambda x: _pair(x["size_reduction_reported"], x["size_reduction_measured"], _fmt_reduction)),
    ReportedColumn("source", "Source", lambda x: md_text(x["source"] or "–"), "left"),
)

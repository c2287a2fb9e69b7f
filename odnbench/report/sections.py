"""A board's sections, in page order: the one list every output of a board is made from.

Each :class:`Section` says which boards it applies to, its markdown, its part of the board's JSON
document and the plots it owns. ``leaderboard.md`` (what ``compare`` writes), a published page
(``leaderboard publish``), ``board.json`` and ``leaderboard --format json`` are all made by walking
:data:`SECTIONS`, so they cannot disagree. A new section: write it here and put it in
:data:`SECTIONS` where it belongs on the page.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from odnbench.report import curves, plots, stats
from odnbench.report.boards import (
    RESNET_WIDTHS,
    Board,
    cut_short_reason,
    detectable,
    failure_reason,
    reference_note,
    remeasured_text,
    stats_of,
    width_scale,
)
from odnbench.report.columns import (
    DETAIL,
    ISO,
    MAIN,
    REFERENCE_MARK,
    REPORTED,
    Column,
    ReportedColumn,
    cells,
    clean,
    columns,
    fmt_holm,
    has_optional,
    row_record,
    threads_text,
)
from odnbench.report.fmt import fmt_list, fmt_value, md_code, md_list, md_text
from odnbench.result import Result
from odnbench.store import cell_dirname


@dataclass(frozen=True)
class View:
    """How a board is being rendered: the level of its section headings, and whether its plot files
    are written beside it (a published page) or not (``leaderboard.md``)."""

    level: int
    plots: bool


@dataclass(frozen=True)
class Plot:
    """A PNG a section owns: its file name in the board's folder, its alt text, when it exists, how it is drawn."""

    file: str
    alt: str
    applies: Callable[[Board], bool]
    draw: Callable[[Board], bytes]


def _nothing(board: Board) -> dict[str, Any]:
    return {}


def _always(board: Board) -> bool:
    return True


@dataclass(frozen=True)
class Section:
    """One part of a board. ``markdown`` returns its lines (none: nothing to show); ``document`` its
    keys in the board's JSON document (written whether or not the section shows)."""

    name: str
    markdown: Callable[[Board, View], list[str]]
    applies: Callable[[Board], bool] = _always
    document: Callable[[Board], dict[str, Any]] = _nothing
    plots: tuple[Plot, ...] = ()


# --- shared pieces --------------------------------------------------------------------------------------------

def markdown_table(rows: Sequence[dict[str, str]], table: Sequence[Column | ReportedColumn],
                   board: Board | None = None) -> str:
    """A GitHub table of ``rows`` (cells by column key) under ``table``'s headers (named for ``board``)."""
    head = "| " + " | ".join(c.header(board) for c in table) + " |"
    sep = "|" + "|".join("---" if c.align == "left" else "--:" for c in table) + "|"
    body = ["| " + " | ".join(r[c.key] for c in table) + " |" for r in rows]
    return "\n".join([head, sep, *body])


NETWORK_NOTE = ("‡ Each seed's exported network: one value when every seed exported the same network (latency: "
                "the mean over seeds), min–max over seeds when they chose different networks (never a mean of "
                "different networks). Top-1 and cost are means over seeds; converged counts seeds.")
BUSY_NOTE = ("_unreliable_: the measured speed-up is withheld when the row's or the baseline's latency was "
             "measured while other processes held the CPU (busy: p90/p50, spread of the timed windows or CPU "
             "share) or its slowest timed window took more than 1.5× its fastest; the MACs speed-up stands. "
             "`odnbench leaderboard publish --remeasure-latency` measures the stored models again, one at a time.")
REPRODUCIBLE = ("Numbers reproduce only on the same hardware and library versions: the same cell (same key) has "
                "given a different top-1 on another CPU model.")


def caption_line(board: Board) -> str:
    c = board.caption
    gpu = f", host CPU {md_list(c['cpu'])}" if board.device.startswith("cuda") else ""
    protocols = fmt_list(c["protocol"])
    mixed = " (**mixed protocol versions: rows may not be comparable**)" if len(c["protocol"]) > 1 else ""
    seeds = c["seeds"]
    n_seeds = f"{len(seeds)} seed{'' if len(seeds) == 1 else 's'}"
    how = c.get("latency_measurement")
    # A board whose latency was re-measured serially (--remeasure-latency) says how, here; the rest was
    # still timed as the cells ran.
    timed = "Throughput and training time were" if how else "Latency, throughput and training time were"
    shared = (f" {timed} measured while up to {c['cells_at_once']} cells ran "
              "at once (compare --jobs / Ray): compare them only with the same setting, or rerun serially."
              if c.get("cells_at_once") else "")
    if how:
        shared += " " + remeasured_text(how, md_text)
    # Declared packages by their distribution name (env keys spell "-" as "_"), each escaped too.
    packages = "".join(f", {md_text(name.replace('_', '-'))} {md_list(c.get(name))}" for name in board.packages)
    # Every stored value escaped on its own (env strings are data: no newline, markup or HTML).
    return (
        f"Device: {md_text(c['device'])} ({md_list(c['device_name'])}{gpu}), {md_text(threads_text(c['threads']))}, "
        f"{md_text(c['precision'])}; preset {md_code(c['preset'])}; protocol "
        f"v{md_text(protocols)}{mixed}; {n_seeds} "
        f"({md_list(seeds)}); python {md_list(c.get('python'))}, torch {md_list(c['torch'])}, "
        f"torchvision {md_list(c.get('torchvision'))}, timm {md_list(c['timm'])}{packages}; "
        f"odnbench {md_list(c['odnbench'])}.{shared} {REPRODUCIBLE}"
        + (f" Produced by grid file {md_list(c['grids'])} (`odnbench compare --grid`); its cells ran "
           f"{c['cells_wall_seconds'] / 60:.{0 if c['cells_wall_seconds'] >= 600 else 1}f} minutes of wall time in all (summed over cells"
           + (f", up to {c['cells_at_once']} at once" if c.get("cells_at_once") else "") + ")"
           + (f", {c['elapsed_seconds'] / 60:.0f} minutes from the first cell's start to the last one's end"
              if c.get("elapsed_seconds") else "") + "."
           if c.get("grids") else ""))


def tolerance_line(board: Board) -> str:
    tol = fmt_value(float(board.tolerance))
    return (f"Tolerance: **{tol} points** of top-1 below {md_text(board.baseline_name)}, the one rule for _Meets "
            f"target_ and the iso-accuracy view on this board, applied to the paired 95 % CI of Δ vs "
            f"{md_text(board.baseline_name)} (its lower bound ≥ −{tol}), not to the mean. A method's own target (a depth search's stop threshold "
            f"on validation top-1) decides when that method stops; it is shown in its row, beside the board's verdict.")


def statistics_note(board: Board) -> str:
    """How the intervals, ties and verdicts are made, and which differences are significant after Holm."""
    base = md_text(board.baseline_name)
    ns = sorted({stats_of(r).delta_n for r in board.rows
                 if stats_of(r).delta_vs_baseline is not None and r is not board.baseline})
    n_text = "/".join(map(str, ns)) or "0"
    sig = [r for r in board.rows if stats_of(r).verdict.startswith(("better than ", "worse than "))]
    found = ("; ".join(f"{md_text(r.label)} {md_text(stats_of(r).verdict)}{fmt_holm(stats_of(r).delta_p_holm)}"
                       for r in sig) if sig
             else "none after Holm's adjustment")
    raw = [r for r in board.rows if r is not board.baseline and stats_of(r).delta_p is not None
           and cast(float, stats_of(r).delta_p) < stats.ALPHA]
    search = ""
    if board.search is not None:
        sn = md_text(board.search_name)
        ssig = [r for r in board.rows if stats_of(r).verdict_vs_search.startswith(("better than ", "worse than "))]
        search = (f" Against {sn} (the depth search; its own family of {board.search_family_size} contrasts, "
                  f"Holm-adjusted the same way): "
                  + ("; ".join(f"{md_text(r.label)} {md_text(stats_of(r).verdict_vs_search)}" for r in ssig)
                     if ssig else "no row differs significantly") + ".")
    return (f"Statistics: ± is the half-width of a 95 % Student t-interval over seeds; Δ vs {base} is a **paired "
            f"t-interval over n={n_text} seeds** (each seed fixes the split and the batch order, so each row is "
            f"compared with {base} seed by seed). Verdicts are corrected for multiplicity with **Holm's step-down "
            f"over this board's family of {board.family_size} contrasts** (every row vs {base}): a row is called "
            f"better or worse than {base} only when its paired t-test's Holm-adjusted p-value is below "
            f"{stats.ALPHA:g} (family-wise error ≤ 5 %); the printed intervals are the per-contrast 95 % intervals, "
            "so one may exclude 0 while the verdict says not distinguishable. With one seed no interval exists "
            "(\"n=1, no interval\"). Ranks: by mean top-1, but a row that its tie group's leader (the best row not "
            f"yet separated) does not beat at {stats.ALPHA:g}/{max(board.family_size, 1)} (Holm's strictest step), "
            "or that has no interval, shares the leader's rank (marked `=`). Target: yes when the interval's "
            f"lower bound is ≥ −{fmt_value(float(board.tolerance))} points, no when its upper bound is below, "
            f"else undecided. Significant differences from {base} on this board after Holm: {found} "
            f"({len(raw)} before the adjustment).{search}")


def definitions(board: Board) -> str:
    tol = fmt_value(float(board.tolerance))
    base = md_text(board.baseline_name)
    return ("Columns: top-1 on the test split (model chosen on validation), mean ± sample std over seeds. "
            "Size MB = saved `state_dict` bytes / 1e6 (the paper's MB); MiB = fp32 parameter + buffer bytes / 2^20. "
            f"MACs = multiply-accumulates for one image (FLOPs / 2). Δ and speed-ups are against the "
            f"{md_code(board.baseline_name)} row "
            "(speed-up measured = its latency p50 / this row's"
            + (", at the larger batch its ms per image / this row's" if has_optional(board) else "")
            + "). Training compute = forward MACs per image of the network "
            "trained at each step × samples × 3 (forward + backward), summed over every phase (a depth search's "
            "warm-up, each searched depth, fine-tuning); the main table shows the method's own part + its "
            "dependencies' (every result it needed, each counted once: the trained network it started from, the "
            f"{base} run whose validation top-1 set a depth search's threshold, the depth search that chose its "
            "depth or size); \"not recorded\" for results "
            "stored before odnbench 0.2 counted it. Epochs, sample-steps and training wall time are in the details. "
            "Converged: training ended on patience, not on an epoch cap (– when the result does not say). "
            f"Meets target: the 95 % CI of Δ vs {base} ≥ −{tol} points (– for the baseline); a method's own target is its "
            "threshold on validation top-1 and on how many seeds it reached it.")


def _result_line(r: Result, why: str | None) -> str:
    c = r.config
    try:
        folder = r.folder or cell_dirname(c)  # the store names folders; results read from it carry theirs
    except KeyError:  # a config too broken to name a folder
        folder = r.key
    return f"- {md_code(folder)}: {md_text(c.get('method'))} seed {md_text(c.get('seed'))}: {md_text(why)}"


def _h(view: View) -> str:
    return "#" * view.level


# --- the sections -------------------------------------------------------------------------------------------

def _caption(board: Board, view: View) -> list[str]:
    return [caption_line(board), "", measured_line(board), "", tolerance_line(board)]


def _budget_text(budget: dict[str, Any]) -> str:
    own = ", ".join(f"{md_text(k)} {fmt_value(v)}" for k, v in budget.items()
                    if k not in ("recipe_epochs", "recipe_patience", "schedule"))
    return own or "the recipe's"


def measured_line(board: Board) -> str:
    """What the board measured, from its records (board.json's caption.measured holds the same)."""
    m = board.caption.get("measured") or {}
    parts = []
    for w in m.get("widths") or []:
        frac = width_scale(board.backbone, w)
        parts.append(f"{md_text(board.backbone)} with stage widths {md_text(w.replace(',', '-'))}"
                     + (f" ({frac} of ResNet's standard {'-'.join(map(str, RESNET_WIDTHS))})"
                        if frac and frac != "1×" else ""))
    if m.get("full_params"):
        parts.append(f"{' / '.join(f'{p:,}' for p in m['full_params'])} parameters in "
                     f"{md_text(board.baseline_name)}'s exported network (every block)")
    images = m.get("images") or {}
    if any(images.values()):
        parts.append(f"{md_text(board.dataset)} with " + ", ".join(
            f"{'/'.join(f'{v:,}' for v in images[k])} {name}" for k, name in
            (("train", "training"), ("val", "validation"), ("test", "test")) if images.get(k)) + " images")
    budgets = m.get("epoch_budgets") or {}
    recipes = {(b.get("recipe_epochs"), b.get("recipe_patience"), b.get("schedule"))
               for bs in budgets.values() for b in bs}
    recipe = "; ".join(f"≤ {e} epochs, patience {p}, {md_text(sch)} schedule" for e, p, sch in sorted(recipes, key=str))
    texts = {meth: [_budget_text(b) for b in bs] for meth, bs in sorted(budgets.items())}
    own = "; ".join(f"{md_text(meth)}: " + " | ".join(ts) for meth, ts in texts.items()
                    if any(t != "the recipe's" for t in ts))
    cells, cut = m.get("cells") or 0, m.get("cut_short") or 0
    text = ("What was measured: " + "; ".join(parts) + ". " if parts else "")
    if budgets:
        text += (f"Epoch budgets as stored: the shared recipe caps training at {recipe}; method parameters that set "
                 f"epochs or patience: {own or 'none'}. ")
    if cells:
        text += (f"**{cut} of {cells} cells ({100 * cut / cells:.0f} %) were cut short** (stopped on an epoch cap "
                 "before patience: their results say converged = false).")
    if board.preset == "quick":
        search = md_text(board.search_name)
        text += (" Preset `quick` is a reduced CPU budget, not the paper's recipe ("
                 + (f"{'/'.join(f'{v:,}' for v in images['train'])} training images, "
                    if images.get("train") else "") + "the epoch caps above"
                 + (f", and {search}'s threshold set from {md_text(board.baseline_name)}'s validation top-1 rather than a "
                    "fixed target"
                    if m.get("search_threshold_auto") else "") + ").")
    return text.strip()


def _caption_document(board: Board) -> dict[str, Any]:
    return {"board": {"dataset": board.dataset, "backbone": board.backbone, "preset": board.preset,
                      "device": board.device, "slug": board.slug},
            "caption": board.caption, "tolerance": float(board.tolerance)}


def _ranked(board: Board, view: View) -> list[str]:
    if not board.rows:
        return ["_No finished results on this board._"]
    rows = [cells(stats_of(r)) for r in board.rows]
    out = [markdown_table(rows, columns(MAIN, board), board), "", statistics_note(board)]
    if board.baseline is not None and (cut := stats_of(board.baseline).reference_cut_short):
        out += ["", f"{REFERENCE_MARK} **Reference not converged:** "
                    f"{md_text(cut)} (every Δ marked {REFERENCE_MARK})."]
    out += ["", f"{_h(view)} Details", "", markdown_table(rows, columns(DETAIL, board), board)]
    unreliable = any(not stats_of(r).measured_speedup_reliable for r in board.rows)
    out += ["", NETWORK_NOTE + (" " + BUSY_NOTE if unreliable else "")]
    return out


def _ranked_document(board: Board) -> dict[str, Any]:
    return {"baseline": board.baseline.label if board.baseline else None,
            "rows": [row_record(board, row) for row in board.rows]}


def _power(board: Board, view: View) -> list[str]:
    parts = []
    for d in detectable(board):
        if d["detectable_points"] is None:
            parts.append(f"vs {md_text(d['reference'])}: none (fewer than two paired seeds)")
            continue
        parts.append(f"**{d['detectable_points']:.2f} points vs {md_text(d['reference'])}** (n = {d['n']} seeds; "
                     f"paired sd {d['paired_sd']:.2f} points, the median over {d['rows']} rows of the sd of "
                     f"(row − {md_text(d['reference'])}))")
    if not parts:
        return []
    return [f"Detectable difference: the smallest true difference this board finds with 80 % power (two-sided "
            f"α = {stats.ALPHA:g}, paired t-test, before the Holm adjustment, which makes it larger): "
            + "; ".join(parts) + ". A smaller difference between two rows is not evidence that they are equal."]


def _iso(board: Board, view: View) -> list[str]:
    if board.baseline is None:
        return ["_No baseline on this board (no result of a method whose role is `baseline`): Δ, speed-ups and "
                "the iso-accuracy view are not available._"]
    tol = fmt_value(float(board.tolerance))
    base = md_text(board.baseline_name)
    out = [f"{_h(view)} Iso-accuracy: meets the target (95 % CI of Δ vs {base} ≥ −{tol} points), smallest first",
           ""]
    iso = board.iso_rows
    undecided = board.iso_undecided
    left_out = ([f"Left out by the same rule: {', '.join(md_text(r.label) for r in undecided)} (mean Δ within "
                 f"{tol} points of {base}, but the interval reaches below −{tol} or there is none: target undecided)."]
                if undecided else [])
    if not iso:
        return [*out, "_No row meets the target._", *([""] + left_out if left_out else [])]
    iso_cells = []
    for i, row in enumerate(iso, 1):
        cl = cells(stats_of(row))
        cl["iso_rank"] = str(i)
        iso_cells.append(cl)
    ranges = (["Rows whose seeds exported different networks sort by their largest seed's size (what every seed "
               "delivers), never by a mean."] if any(stats_of(r).networks_differ for r in iso) else [])
    notes = ranges + left_out
    return [*out, markdown_table(iso_cells, columns(ISO, board), board), *([""] + [" ".join(notes)] if notes else [])]


def _reported(board: Board, view: View) -> list[str]:
    out = [f"{_h(view)} Reported by the paper vs measured here", ""]
    if board.reported:
        out.append(markdown_table([{c.key: c.markdown(x) for c in REPORTED} for x in board.reported], REPORTED,
                                  board))
    for method, reference in board.reference_elsewhere:  # each stored piece escaped, our code spans kept
        out += ["", reference_note(board, method, reference, md_text, md_code)]
    return out


def _plot_links(board: Board, view: View, shown: Sequence[Plot]) -> list[str]:
    out: list[str] = []
    for plot in shown:
        if plot.applies(board):
            out += [f"![{plot.alt}]({plot.file})", ""]
    return out


def _plots(board: Board, view: View) -> list[str]:
    links = _plot_links(board, view, PLOTS) if view.plots else []
    return [f"{_h(view)} Plots", "", *links[:-1]] if links else []


def _problems(board: Board, view: View) -> list[str]:
    out = [f"{_h(view)} Failed or cut-short cells", ""]
    if board.failed:
        out += ["Failed (not ranked):", ""]
        out += [_result_line(r, failure_reason(r)) for r in board.failed]
        out.append("")
    if board.cut_short:
        out += ["Cut short (ranked, read with care):", ""]
        out += [_result_line(r, cut_short_reason(r)) for r in board.cut_short]
        out.append("")
    return out[:-1]


def _problems_document(board: Board) -> dict[str, Any]:
    return {"failed": [{"key": r.key, "method": r.config.get("method"), "seed": r.config.get("seed"),
                        "reason": failure_reason(r)} for r in board.failed],
            "cut_short": [{"key": r.key, "method": r.config.get("method"), "seed": r.config.get("seed"),
                           "reason": cut_short_reason(r)} for r in board.cut_short]}


def _curves(board: Board, view: View) -> list[str]:
    shown = {p.alt: p.file for p in CURVE_PLOTS} if view.plots else {}
    return curves.curve_sections(board, shown, level=view.level)


def _curves_document(board: Board) -> dict[str, Any]:
    document = curves.curves_document(board)
    return {"curves": document} if document else {}


SIZE_LABEL = "Size (MB, saved state_dict)"
MACS_LABEL = "MACs per image"
COMPUTE_LABEL = "Training compute, total with dependencies (MACs)"

PLOTS: tuple[Plot, ...] = (
    Plot("accuracy-vs-size.png", "Top-1 against size, Pareto front marked", lambda b: bool(b.rows),
         lambda b: plots.pareto_png(b, "size_mb", SIZE_LABEL)),
    Plot("accuracy-vs-macs.png", "Top-1 against MACs, Pareto front marked", lambda b: bool(b.rows),
         lambda b: plots.pareto_png(b, "macs", MACS_LABEL)),
    Plot("accuracy-vs-compute.png", "Top-1 against total training compute (with dependencies)",
         lambda b: any(stats_of(r).cost_train_macs for r in b.rows),
         lambda b: plots.pareto_png(b, "cost_train_macs", COMPUTE_LABEL)),
    Plot("depth-curve.png", "Validation top-1 against depth", lambda b: bool(plots.depth_curves(b)),
         plots.depth_curve_png),
)
CURVE_PLOTS: tuple[Plot, ...] = (
    Plot("curves-vs-size.png", "Trade-off curves: top-1 against size", curves.has_curves,
         lambda b: plots.curves_png(b, "size_mb", SIZE_LABEL)),
    Plot("curves-vs-macs.png", "Trade-off curves: top-1 against MACs", curves.has_curves,
         lambda b: plots.curves_png(b, "macs", MACS_LABEL)),
)

#: A board's sections in page order (the curves come last, after the definitions of the columns).
SECTIONS: tuple[Section, ...] = (
    Section("caption", _caption, document=_caption_document),
    Section("ranked", _ranked, document=_ranked_document),
    Section("detectable-difference", _power, document=lambda b: {"detectable_difference": detectable(b)}),
    Section("iso-accuracy", _iso, document=lambda b: {"iso_accuracy": [row.label for row in b.iso_rows],
                                                      "iso_accuracy_undecided": [row.label for row in b.iso_undecided]}),
    Section("reported", _reported, applies=lambda b: bool(b.reported or b.reference_notes),
            document=lambda b: {"reported": b.reported, "reference_notes": b.reference_notes}),
    Section("plots", _plots, plots=PLOTS),
    Section("problems", _problems, applies=lambda b: bool(b.failed or b.cut_short), document=_problems_document),
    Section("definitions", lambda b, view: [definitions(b)]),
    Section("curves", _curves, applies=curves.has_curves, document=_curves_document, plots=CURVE_PLOTS),
)


def board_body(board: Board, view: View) -> list[str]:
    """The markdown of every section that applies to ``board``, a blank line between two."""
    out: list[str] = []
    for section in SECTIONS:
        block = section.markdown(board, view) if section.applies(board) else []
        if block:
            out += ([""] if out else []) + block
    return out


def board_document(board: Board) -> dict[str, Any]:
    """One board as JSON (``board.json``, and each element of ``leaderboard --format json``): every
    section's part, numbers made stable (:func:`odnbench.report.columns.clean`)."""
    document: dict[str, Any] = {}
    for section in SECTIONS:
        document.update(section.document(board))
    return dict(clean(document))


def board_plots(board: Board) -> list[tuple[Plot, bool]]:
    """Every plot a section owns, each with whether it is drawn for ``board``."""
    return [(plot, section.applies(board) and plot.applies(board)) for section in SECTIONS for plot in section.plots]


def plot_files() -> tuple[str, ...]:
    return tuple(plot.file for section in SECTIONS for plot in section.plots)


def dump_json(document: Any) -> str:
    """JSON as board.json and ``--format json`` write it: UTF-8 text, and every control character
    escaped (json escapes C0 itself; DEL and C1, which some terminals obey, as ``\\u007f`` ...)."""
    text = json.dumps(document, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
    return _C1.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


_C1 = re.compile(r"[\x7f-\x9f]")

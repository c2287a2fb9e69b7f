"""Plots derived from stored results, written as byte-identical PNGs on every run.

Matplotlib is driven through ``Figure`` + the Agg canvas (no pyplot, so no global backend or
figure state), under matplotlib's default style plus pinned settings (a user's matplotlibrc cannot
change the picture), with a fixed size and dpi and no "Software"/date metadata in the file.

- :func:`pareto_png`: top-1 against size or MACs for every row of a board, Pareto front marked,
  one colour and marker per configuration named in a legend beside the axes (no point labels);
- :func:`plot_depth_curves`: accuracy against depth (ODN's curve, any method's ``depth_curve``);
  :func:`depth_curve_figure`: a board's, framed on the band around its stop thresholds.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from odnbench.report.boards import Board, Row, stats_of
from odnbench.report.curves import Family, Point, all_families, board_seeds, pareto_front, pareto_points
from odnbench.report.fmt import fmt_value, terminal_text
from odnbench.report.stats import t975
from odnbench.store import atomic_write_bytes

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from matplotlib.figure import Figure

    from odnbench.result import Result

FIGSIZE = (7.0, 4.5)
DPI = 110
#: Pinned so that a user's matplotlibrc cannot change the pictures.
RC = {
    "font.family": "DejaVu Sans", "font.size": 9.0, "axes.titlesize": 10.0, "axes.labelsize": 9.0,
    "legend.fontsize": 8.0, "figure.dpi": DPI, "savefig.dpi": DPI, "path.simplify": False,
}
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]
PNG_METADATA = {"Software": None}  # matplotlib would otherwise write its version into every file


def _style() -> AbstractContextManager[Any]:
    import matplotlib.style
    from cycler import cycler

    rc = dict(RC)
    rc["axes.prop_cycle"] = cycler(color=COLORS)
    # matplotlib's defaults first, so that a user's matplotlibrc cannot change the picture
    return matplotlib.style.context(["default", rc])


def _text(name: str, limit: int = 80) -> str:
    """Stored text as a plot label: one line of at most ``limit`` characters (a longer one would push
    the axes out of the figure), no control characters, no matplotlib mathtext (``$``)."""
    text = " ".join(terminal_text(name).split())
    if len(text) > limit:  # cut the middle: the end says which row (the parameter that varies, the seed)
        head = (limit - 1) // 2
        text = text[:head] + "…" + text[len(text) - (limit - 1 - head):]
    return text.replace("$", r"\$")


def _png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    # bbox "tight": the legend below the axes is part of the picture, however many rows a board has
    fig.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA, bbox_inches="tight")
    return buffer.getvalue()


def _fit_legend(fig: Figure, legend_rows: int, per_row: float = 0.17, room: int = 8) -> None:
    """Grow the figure by the legend rows beyond ``room`` (the axes keep their height), then lay it out."""
    width, height = fig.get_size_inches()
    fig.set_size_inches(width, height + per_row * max(0, legend_rows - room))
    fig.tight_layout()


MARKERS = ["o", "s", "^", "D", "v", "P", "X", "<", ">", "h", "p", "*"]
PARETO_FIGSIZE = (7.6, 6.0)


#: Method colours: matplotlib's tab10 then ten darker distinct ones; each method's is picked by a hash of its
#: name (method_colours), so a method keeps its colour on every board unless another method there hashed
#: to the same one first.
METHOD_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                 "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
                 "#e6550d", "#31a354", "#756bb1", "#636363"]


def _name_hash(method: str) -> int:
    return int(hashlib.sha256(method.encode()).hexdigest(), 16)


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """A colour per method, by a hash of its name: in hash order, each takes its hashed colour, or the
    next one free on this board (the same set of methods gets the same colours on every board)."""
    taken: dict[str, str] = {}
    for method in sorted(set(methods), key=lambda m: (_name_hash(m) % len(METHOD_COLORS), m)):
        i = _name_hash(method) % len(METHOD_COLORS)
        while METHOD_COLORS[i] in taken.values():
            i = (i + 1) % len(METHOD_COLORS)
        taken[method] = METHOD_COLORS[i]
    return taken


def method_marker(method: str, variant: int = 0) -> str:
    """A method's marker, by a hash of its name; its variants (prune at several ratios) take the next ones."""
    return MARKERS[(_name_hash(method) // len(METHOD_COLORS) + variant) % len(MARKERS)]


#: How a method's variants shade its colour: (toward black or white, by how much); the first is the method's own.
SHADES = ((0.0, 0.0), (0.0, 0.35), (1.0, 0.35), (0.0, 0.6), (1.0, 0.55), (0.0, 0.15), (1.0, 0.2), (0.0, 0.75))


def shade(colour: str, variant: int) -> str:
    """The method's colour for its ``variant``-th configuration: the same hue, darker or lighter, so that
    prune at three ratios reads as prune and still tells its three points apart."""
    if variant == 0:
        return colour
    target, amount = SHADES[variant % len(SHADES)] if variant % len(SHADES) else (0.0, 0.85)
    rgb = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    mixed = [c + (target - c) * amount for c in rgb]
    return "#" + "".join(f"{round(255 * c):02x}" for c in mixed)


def board_colours(board: Board) -> dict[str, str]:
    return method_colours(r.method for r in board.rows)


def row_styles(board: Board) -> dict[str, tuple[str, str]]:
    """One (colour, marker) per configuration (row label): its method's colour, the same on every board
    with the same methods, its variants (in label order) in shades of it and the next markers."""
    colours = board_colours(board)
    out: dict[str, tuple[str, str]] = {}
    for method in sorted(colours):
        for i, label in enumerate(sorted({r.label for r in board.rows if r.method == method})):
            out[label] = (shade(colours[method], i), method_marker(method, i))
    return out


def ci_half(std: float | None, n: int) -> float:
    """Half-width of the 95 % t-interval of a mean of n values of sample std ``std`` (0 when n < 2)."""
    return t975(n - 1) * std / math.sqrt(n) if std and n > 1 else 0.0


def _overlap_counts(points: list[tuple[float, float]], log_x: bool, near: float = 0.03) -> list[int]:
    """For each point, how many earlier points sit on top of it (within ``near`` of the axes'
    spans): those are drawn smaller and above, so that every marker stays visible."""
    import math

    if not points:
        return []
    xs = [math.log10(x) if log_x and x > 0 else x for x, _ in points]
    ys = [y for _, y in points]
    sx = (max(xs) - min(xs)) or 1.0
    sy = (max(ys) - min(ys)) or 1.0
    counts = []
    for i in range(len(points)):
        counts.append(sum(abs(xs[i] - xs[j]) / sx < near and abs(ys[i] - ys[j]) / sy < near for j in range(i)))
    return counts


def pareto_png(board: Board, x_field: str, x_label: str) -> bytes:
    """:func:`pareto_figure` as PNG bytes."""
    with _style():
        return _png_bytes(pareto_figure(board, x_field, x_label))


def pareto_figure(board: Board, x_field: str, x_label: str) -> Figure:
    """Top-1 (mean ± std over seeds) against ``x_field`` for every row, each configuration in its
    own colour and marker, named in a legend beside the plot (no labels on the points, so none can
    overprint another). Filled markers are on the Pareto front (no other row has a smaller x and
    a higher top-1), joined by a step line. A row whose seeds exported different networks spans
    min–max of x over seeds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    scale = {"macs": 1e6, "cost_train_macs": 1e12}.get(x_field, 1.0)
    # A row of different networks has no x of its own (no mean of different networks): it is drawn seed by
    # seed and is no front candidate. Training compute is a cost per seed, not a property of one network:
    # its mean is meaningful.
    seeds_of = {id(r): _seed_xs(r, x_field, scale) for r in board.rows
                if stats_of(r).networks_differ and x_field != "cost_train_macs"}
    rows = [r for r in board.rows if stats_of(r).top1_mean is not None
            and (seeds_of[id(r)] if id(r) in seeds_of else getattr(stats_of(r), x_field))]
    styles = row_styles(board)
    with _style():  # the figure keeps the style it was drawn with
        fig = Figure(figsize=PARETO_FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        one = [i for i, r in enumerate(rows) if id(r) not in seeds_of]
        points: dict[int, tuple[float, float]] = {
            i: (getattr(stats_of(rows[i]), x_field) / scale, cast(float, stats_of(rows[i]).top1_mean)) for i in one}
        front = {one[k] for k in pareto_front([points[i] for i in one])}
        xs = [p[0] for p in points.values()] + [x for r in rows for x, _ in seeds_of.get(id(r), [])]
        log_x = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 20
        stacked = dict(zip(one, _overlap_counts([points[i] for i in one], log_x)))
        handles, spans, single = [], False, False
        for i, row in enumerate(rows):
            colour, marker = styles[row.label]
            face = colour if i in front else "white"
            if id(row) in seeds_of:
                ax.plot([x for x, _ in seeds_of[id(row)]], [t for _, t in seeds_of[id(row)]], ls=":", lw=0.8,
                        marker=marker, ms=5, color=colour, mfc="white", mew=1.2, zorder=3)
                spans = True
            else:
                x, y = points[i]
                f = stats_of(row)
                half = (f.top1_ci[1] - f.top1_ci[0]) / 2 if f.top1_ci else 0.0
                single = single or f.n < 2
                ax.errorbar([x], [y], yerr=[half], fmt=marker,
                            ms=max(4.0, 11.0 - 4.0 * stacked[i]), color=colour, mfc=face, mew=1.6, capsize=3,
                            elinewidth=1.0, zorder=3 + stacked[i],
                            alpha=0.4 if f.n < 2 else 1.0)  # one seed: no interval, faded (no text on points)
            handles.append(Line2D([], [], color=colour, marker=marker, ms=8, mfc=face, mew=1.6, ls="none",
                                  label=_text(row.label)))
        if front:
            fx = [points[i] for i in sorted(front, key=lambda i: points[i][0])]
            handles += ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", color="black", lw=1.0,
                               ls="-", alpha=0.6, label="Pareto front (filled markers)", zorder=2)
        base = board.baseline.stats if board.baseline else None
        if base and base.top1_mean is not None:
            name = _text(board.baseline_name)
            handles.append(ax.axhline(base.top1_mean, color="grey", lw=0.8, ls=":", label=f"baseline ({name})"))
            handles.append(ax.axhline(base.top1_mean - board.tolerance, color="grey", lw=0.8, ls="--",
                                      label=f"{name} − {fmt_value(float(board.tolerance))} (target: paired 95 % CI of Δ above it)"))
        if log_x:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01, not 10^-2
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(x_label + {"macs": " (millions)", "cost_train_macs": " (×10¹²)"}.get(x_field, ""))
        ax.set_ylabel("Top-1 % on test (mean, 95 % CI over seeds)")
        what = {"size_mb": "size", "macs": "MACs", "cost_train_macs": "training compute"}.get(x_field, x_field)
        ax.set_title(f"{_text(board.key_title)}: top-1 against {what}")
        ax.grid(True, lw=0.4, alpha=0.5)
        # Below the axes, never over a point; one entry per configuration at one size.
        title = ("bars: 95 % t-interval over seeds" + ("; faded: one seed, no interval" if single else "")
                 + ("\nsmall markers on a dotted line: each seed of a row whose seeds exported different networks"
                    if spans else ""))
        ax.set_ylim(top=min(ax.get_ylim()[1], 100.5))  # an interval may pass 100 %; top-1 cannot
        floor = _band_floor(board)
        if floor is not None:
            handles += _floor_far_points(ax, floor,
                                         [(points[i][0], points[i][1], styles[rows[i].label][0]) for i in one]
                                         + [(x, t, styles[r.label][0]) for r in rows for x, t in seeds_of.get(id(r), [])])
        # Two columns while labels are short; one, on a taller figure, when many long labels would not fit.
        ncol = 2 if max((len(str(h.get_label())) for h in handles), default=0) <= 45 else 1
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=ncol, frameon=False,
                  title=title, title_fontsize=8.0)
        _fit_legend(fig, math.ceil(len(handles) / ncol))
        return fig


#: A Pareto plot's y axis ends this many tolerances under the baseline when points lie lower: the band where
#: "as accurate as full" is decided stays readable, and a row 15 points down is an arrow on the floor.
PARETO_FLOOR_TOLERANCES = 3.0


def _band_floor(board: Board) -> float | None:
    """Where the Pareto and curves plots may end their y axis: :data:`PARETO_FLOOR_TOLERANCES` under the
    baseline's mean top-1 (None without a baseline)."""
    base = board.baseline.stats if board.baseline else None
    if base is None or base.top1_mean is None:
        return None
    return base.top1_mean - PARETO_FLOOR_TOLERANCES * float(board.tolerance)


def _floor_far_points(ax: Any, floor: float, points: Sequence[tuple[float, float, str]]) -> list[Any]:
    """When a point (x, top-1, colour) lies under ``floor``, end the y axis there, mark the points as ↓ in
    their colour on the floor and return one legend entry saying how many and how low (else nothing). Points
    of one colour that would sit on one another share an arrow with their count beside it; colours that would
    share a place stand side by side."""
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    below = [(x, t, colour) for x, t, colour in points if t < floor]
    if not below:
        return []
    ax.set_ylim(floor, ax.get_ylim()[1])
    counted = False
    for place in _near_groups(ax, sorted(x for x, _, _ in below)):
        here = [(x, colour) for x, _, colour in below if place[0] <= x <= place[-1]]
        colours = list(dict.fromkeys(colour for _, colour in here))
        for j, colour in enumerate(colours):
            dx = (j - (len(colours) - 1) / 2) * FLOOR_DODGE_PT  # side by side, centred on the place
            at = offset_copy(ax.transData, fig=ax.figure, x=dx, y=0, units="points")
            ax.plot([place[0]], [floor], marker=BELOW_MARKER, ms=10, color=colour, clip_on=False, zorder=4,
                    ls="none", transform=at)
            k = sum(c == colour for _, c in here)
            if k > 1:
                counted = True
                ax.annotate(f"×{k}", (place[0], floor), xytext=(dx + 4, 3), textcoords="offset points",
                            fontsize=7, color=colour, annotation_clip=False, zorder=4)
    n, lowest = len(below), min(t for _, t, _ in below)
    return [Line2D([], [], marker=BELOW_MARKER, ms=10, color="black", ls="none",
                   label=f"{n} point{'s' if n > 1 else ''} below {floor:.2f} % (lowest {lowest:.1f} %), on the axis floor"
                   + ("; ×k: k points at one place" if counted else ""))]


#: Arrows on a Pareto plot's floor closer than this fraction of the axes' width share a place; colours there
#: stand this many points apart.
FLOOR_NEAR_FRACTION = 0.012
FLOOR_DODGE_PT = 8.0


def _near_groups(ax: Any, xs: Sequence[float]) -> list[list[float]]:
    """Sorted ``xs`` in groups whose members lie within :data:`FLOOR_NEAR_FRACTION` of the axes' width of the
    group's first (on the axis's own scale, log or linear)."""
    ax.get_xlim()  # settles the autoscaled limits that the transform reads

    def frac(x: float) -> float:
        return float(ax.transLimits.transform(ax.transScale.transform((x, 0.0)))[0])

    groups: list[list[float]] = []
    for x in xs:
        if groups and frac(x) - frac(groups[-1][0]) < FLOOR_NEAR_FRACTION:
            groups[-1].append(x)
        else:
            groups.append([x])
    return groups


def _seed_xs(row: Row, x_field: str, scale: float) -> list[tuple[float, float]]:
    """(x, top-1) of each seed of a row whose seeds exported different networks, by x (seeds without x left out)."""
    values = getattr(stats_of(row), f"{x_field}_per_seed", None) or []
    return sorted((v / scale, t) for v, t in zip(values, row.top1)
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)


def depth_curves(board: Board) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(label, records)`` for every ranked result that states a depth curve."""
    curves = []
    for row in board.rows:
        for seed, r in zip(row.seeds, row.results):
            points = _curve_points(r)
            if points:
                curves.append((f"{row.label} seed {seed}", points))
    return curves


def _curve_points(r: Result) -> list[dict[str, Any]]:
    curve = r.facts.depth_curve
    if not isinstance(curve, list):
        return []
    return [p for p in curve if isinstance(p, dict) and "depth" in p and "val" in p]


def depth_marks(board: Board) -> tuple[list[tuple[str, float, str]], list[tuple[str, float, float]]]:
    """Stop thresholds (label, value, curve label) and each curve's chosen depth (curve label,
    depth, value), for the depth plot; both are drawn in their curve's colour."""
    # One line per threshold value, in the colour of the first curve that had it; the label names
    # every curve that shares it (two seeds often land on the same threshold).
    hlines: dict[float, tuple[str, list[tuple[str, object]]]] = {}
    marks: list[tuple[str, float, float]] = []
    for row in board.rows:
        for seed, r in zip(row.seeds, row.results):
            curve = r.facts.depth_curve
            if not isinstance(curve, list):
                continue
            name = f"{row.label} seed {seed}"
            thr = _threshold(r)
            if thr is not None:
                hlines.setdefault(thr, (name, []))[1].append((row.label, seed))
            depth = r.facts.depth
            best = [p.get("val") for p in curve if isinstance(p, dict) and p.get("depth") == depth]
            if isinstance(depth, int) and best and isinstance(best[0], (int, float)):
                marks.append((name, depth, best[0]))
    return [(f"threshold {value:.2f} ({_curve_names(seeds)})", value, first)
            for value, (first, seeds) in sorted(hlines.items())], marks


def _threshold(r: Result) -> float | None:
    """A result's stop threshold as its depth plot draws it (to 2 decimals), None when it states none."""
    thr = r.facts.threshold
    return round(float(thr), 2) if isinstance(thr, (int, float)) and not isinstance(thr, bool) else None


def _curve_names(curves: list[tuple[str, object]]) -> str:
    """'odn seed 1' or 'odn seeds 1, 2' (grouped by configuration label)."""
    by_label: dict[str, list[str]] = {}
    for label, seed in curves:
        by_label.setdefault(label, []).append(str(seed))
    return "; ".join(f"{label} seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}" for label, seeds in by_label.items())


def depth_curve_png(board: Board) -> bytes:
    """:func:`depth_curve_figure` as PNG bytes."""
    with _style():
        return _depth_png_bytes(depth_curve_figure(board))


def depth_curve_figure(board: Board) -> Figure:
    """Validation top-1 against depth for every result on ``board`` that states a depth curve, one
    colour per seed (one marker per configuration), with each curve's threshold and chosen depth
    in its colour; the y axis framed on the decision band (:data:`DEPTH_BAND_BELOW`)."""
    hlines, marks = depth_marks(board)
    curves = depth_curves(board)
    seeds = sorted({seed for row in board.rows for seed, r in zip(row.seeds, row.results) if _curve_points(r)})
    labels = sorted({row.label for row in board.rows})
    styles = {}
    for row in board.rows:
        for seed in row.seeds:
            styles[f"{row.label} seed {seed}"] = {
                "color": COLORS[seeds.index(seed) % len(COLORS)] if seed in seeds else "grey",
                "marker": MARKERS[labels.index(row.label) % len(MARKERS)]}
    title = f"{board.key_title}: validation top-1 by depth"
    # in the same order on every board (by label, not by rank), so that boards read side by side
    panels = sorted((row for row in board.rows if any(_curve_points(r) for r in row.results)), key=lambda r: r.label)
    with _style():
        if len(panels) <= 1:
            return depth_figure(curves, title=title, hlines=hlines, marks=marks, styles=styles,
                                band_below=DEPTH_BAND_BELOW)
        return _depth_panels(panels, curves, hlines, marks, styles, seeds, title)


#: Panels side by side on a board's depth plot when several configurations state depth curves.
DEPTH_PANEL_COLUMNS = 2


def _depth_panels(panels: Sequence[Row], curves: Sequence[tuple[str, Sequence[dict[str, Any]]]],
                  hlines: Sequence[tuple[str, float, str]], marks: Sequence[tuple[str, float, float]],
                  styles: dict[str, dict[str, Any]], seeds: Sequence[Any], title: str) -> Figure:
    """One panel per configuration (its seeds' curves, their stop thresholds and chosen depths), on one
    y scale framed on the whole board's decision band, and one legend for the figure: a seed keeps its
    colour in every panel, so ten seeds of five configurations read as five small plots, not fifty lines."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    thresholds = {f"{row.label} seed {seed}": _threshold(r) for row in panels for seed, r in zip(row.seeds, row.results)}
    frame = band_frame(curves, [h[1] for h in hlines], "val", DEPTH_BAND_BELOW)
    rows_of = math.ceil(len(panels) / DEPTH_PANEL_COLUMNS)
    with matplotlib.style.context("default"):
        fig = Figure(figsize=(DEPTH_FIGSIZE[0] * 1.6, 3.0 * rows_of + 0.4), dpi=DEPTH_DPI)
        FigureCanvasAgg(fig)
        axes = fig.subplots(rows_of, DEPTH_PANEL_COLUMNS, sharey=True, squeeze=False)
        for ax, row in zip(axes.flat, panels):
            names = {f"{row.label} seed {seed}" for seed in row.seeds}
            mine = [(name, records) for name, records in curves if name in names]
            # each seed's threshold in its colour; one line where the seeds share it (a fixed target)
            lines: dict[float, list[str]] = {}
            for name, _ in mine:
                value = thresholds.get(name)
                if value is not None:
                    lines.setdefault(value, []).append(name)
            drawn = [("_nolegend_", value, *owners[:1]) if len(owners) == 1 else ("_nolegend_", value)
                     for value, owners in sorted(lines.items())]  # shared by several seeds: grey
            _draw_depth(ax, mine, "val", drawn, [m for m in marks if m[0] in names], styles, frame, mark_label=None)
            ax.set_title(_text(row.label, 64), fontsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel("validation top-1 (%)")
        spare = list(axes.flat[len(panels):])
        for ax in spare:
            ax.axis("off")
        handles = [Line2D([], [], color=COLORS[i % len(COLORS)], linewidth=2, label=f"seed {seed}")
                   for i, seed in enumerate(seeds)]
        handles.append(Line2D([], [], color="grey", linestyle="--", linewidth=1,
                              label="stop threshold, in its seed's colour\n(grey: one line several seeds share)"))
        if marks:
            handles.append(Line2D([], [], marker="*", markersize=12, markeredgecolor="black", color="white",
                                  linestyle="none", label="chosen depth"))
        if frame is not None and frame.below:
            handles.append(Line2D([], [], marker=BELOW_MARKER, ms=10, ls="none", color="black",
                                  label=_below_text(frame.below, frame.low)))
        fig.suptitle(_text(title), fontsize=10)
        if spare:  # the empty panel holds the legend
            spare[0].legend(handles=handles, loc="center", fontsize="small", frameon=False)
            fig.tight_layout()
        else:  # below the panels, in the room added for it
            width, height = fig.get_size_inches()
            room = 0.2 * (len(handles) + 1)
            fig.set_size_inches(width, height + room)
            fig.legend(handles=handles, loc="lower center", fontsize="small", frameon=False)
            fig.tight_layout(rect=(0.0, room / (height + room), 1.0, 1.0))
        return fig


DEPTH_FIGSIZE = (6.4, 4.0)
DEPTH_DPI = 120
#: The depth curve's y axis starts this many points below the lowest stop threshold (or just under the lowest
#: reading, when that is higher): the band where a depth decision is made, not 50-100 % where it is a hairline.
DEPTH_BAND_BELOW = 3.0


@dataclass(frozen=True)
class BandFrame:
    """The y limits of a depth plot framed on its decision band, and the readings below its floor."""

    low: float
    high: float
    below: list[tuple[str, int, float]]  # (curve label, depth, value) of each reading under ``low``


def band_frame(curves: Sequence[tuple[str, Sequence[dict[str, Any]]]], thresholds: Sequence[float], y_key: str = "val",
               below: float = DEPTH_BAND_BELOW) -> BandFrame | None:
    """From ``below`` points under the lowest threshold (or 0.5 under the lowest reading, when that is higher)
    to 0.5 over the highest reading or threshold (at most 100.5: top-1 cannot pass 100); None without a
    threshold or a reading."""
    points = [(label, int(r["depth"]), float(r[y_key])) for label, records in curves for r in records
              if r.get(y_key) is not None]
    if not thresholds or not points:
        return None
    values = [v for _, _, v in points] + [float(t) for t in thresholds]
    low = max(min(thresholds) - below, min(values) - 0.5)
    high = min(max(values) + 0.5, 100.5)
    return BandFrame(low, high, [p for p in points if p[2] < low])


def _figure(legend_entries: int = 0) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # room below the axes for the legend, one line per entry
    fig = Figure(figsize=(DEPTH_FIGSIZE[0], DEPTH_FIGSIZE[1] + 0.2 * legend_entries), dpi=DEPTH_DPI)
    FigureCanvasAgg(fig)
    return fig


def _depth_png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DEPTH_DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def plot_depth_curves(curves: Sequence[tuple[str, Sequence[dict[str, Any]]]], path: str | Path, title: str = "",
                      **kwargs: Any) -> Path:
    """Write :func:`depth_figure` as a PNG at ``path``; returns ``path``."""
    path = Path(path)
    atomic_write_bytes(path, _depth_png_bytes(depth_figure(curves, title, **kwargs)))
    return path


def depth_figure(curves: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str = "", *,
                 y_key: str = "val", y_label: str = "validation top-1 (%)",
                 hlines: Sequence[tuple[Any, ...]] = (),
                 marks: Sequence[tuple[str, float, float]] = (), mark_label: str = "chosen depth",
                 styles: dict[str, dict[str, Any]] | None = None, band_below: float | None = None) -> Figure:
    """Accuracy against depth, one line per ``(label, records)``; each record needs ``depth`` and
    ``y_key`` (records without a value are skipped). ``hlines``: labelled horizontal lines
    ``(label, value)`` or ``(label, value, curve label)`` (e.g. a stop threshold, then drawn in
    that curve's colour); ``marks``: points ``(curve label, depth, value)`` drawn as stars in that
    curve's colour (a star on the same spot as another is dodged sideways), with one legend
    entry ``mark_label``. ``styles``: matplotlib line options per curve label (colour, marker).
    ``band_below``: frame the y axis on the decision band (:func:`band_frame`, from that many points under
    the lowest of ``hlines``); each reading below it is drawn as ↓ on the axis floor and counted in the legend."""
    import matplotlib.style

    frame = band_frame(curves, [h[1] for h in hlines], y_key, band_below) if band_below is not None else None
    with matplotlib.style.context("default"):
        fig = _figure(len(curves) + len(hlines) + (1 if marks else 0) + (1 if frame and frame.below else 0))
        ax = fig.add_subplot(1, 1, 1)
        _draw_depth(ax, curves, y_key, hlines, marks, styles, frame, mark_label=mark_label)
        ax.set_ylabel(y_label)
        if title:
            ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            # below the axes: a legend inside them would cover the curves
            ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), fontsize="small", frameon=False)
        fig.tight_layout()
        return fig


def _draw_depth(ax: Any, curves: Sequence[tuple[str, Sequence[dict[str, Any]]]], y_key: str,
                hlines: Sequence[tuple[Any, ...]], marks: Sequence[tuple[str, float, float]],
                styles: dict[str, dict[str, Any]] | None, frame: BandFrame | None, mark_label: str | None) -> None:
    """One depth plot's curves, thresholds, stars and floor arrows on ``ax`` (see :func:`depth_figure`);
    ``mark_label`` None: the stars get no legend entry (a figure-wide legend names them)."""
    depths: set[int] = set()
    colours: dict[str, Any] = {}  # matplotlib colour values
    for label, records in curves:
        pts = sorted((int(r["depth"]), float(r[y_key])) for r in records if r.get(y_key) is not None)
        if not pts:
            continue
        depths.update(d for d, _ in pts)
        style = {"marker": "o", **((styles or {}).get(label) or {})}
        (line,) = ax.plot([d for d, _ in pts], [v for _, v in pts], label=_text(label), **style)
        colours.setdefault(label, line.get_color())
    dashes = ["--", ":", "-.", (0, (5, 1))]
    for i, (label, value, *owner) in enumerate(hlines):
        ax.axhline(value, linestyle=dashes[i % len(dashes)], linewidth=1,
                   color=colours.get(owner[0], "grey") if owner else "grey", label=_text(label))
    if frame is not None:
        ax.set_ylim(frame.low, frame.high)
        _mark_below(ax, frame, colours, legend=mark_label is not None)
    low, high = ax.get_ylim()
    placed: list[tuple[float, float]] = []
    for curve, depth, value in marks:
        # a star on (nearly) the same spot as an earlier one is dodged sideways (depths are whole
        # numbers, so the shift cannot be misread), smaller and on top, so that both show
        under = sum(d == depth and abs(v - value) < 0.03 * (high - low) for d, v in placed)
        placed.append((depth, value))
        ax.plot([depth + 0.18 * under], [value], marker="*", markersize=max(8, 15 - 3 * under),
                markeredgecolor="black", linestyle="none", color=colours.get(curve, "grey"),
                label="_nolegend_", zorder=3 + under)
    if marks and mark_label is not None:  # one neutral legend entry: each star has its curve's colour
        ax.plot([], [], marker="*", markersize=12, markeredgecolor="black", color="white", linestyle="none",
                label=mark_label)
    if depths:
        ax.set_xticks(sorted(depths))
    ax.set_xlabel("depth (residual blocks kept)")
    ax.grid(True, alpha=0.3)


#: A reading under the depth plot's frame, on its floor: an arrow, not a triangle (curves use those as markers).
BELOW_MARKER = r"$\downarrow$"


def _mark_below(ax: Any, frame: BandFrame, colours: dict[str, Any], legend: bool = True) -> None:
    """Each reading of ``ax``'s curves under the frame as ↓ in its curve's colour on the axis floor (those at
    one depth side by side), and (``legend``) one legend entry that says how many and how low."""
    below = [b for b in frame.below if b[0] in colours]
    if not below:
        return
    at: dict[int, int] = {}
    for _, depth, _ in below:
        at[depth] = at.get(depth, 0) + 1
    seen: dict[int, int] = {}
    for label, depth, _ in below:
        k = seen[depth] = seen.get(depth, -1) + 1
        ax.plot([depth + 0.09 * (k - (at[depth] - 1) / 2)], [frame.low], marker=BELOW_MARKER, ms=10, ls="none",
                color=colours.get(label, "grey"), clip_on=False, zorder=4, label="_nolegend_")
    if legend:
        ax.plot([], [], marker=BELOW_MARKER, ms=10, ls="none", color="black", label=_below_text(below, frame.low))


def _below_text(below: Sequence[tuple[str, int, float]], low: float) -> str:
    n, lowest = len(below), min(v for _, _, v in below)
    return f"{n} reading{'s' if n > 1 else ''} below {low:.2f} % (lowest {lowest:.1f} %), drawn on the axis floor"


CURVES_FIGSIZE = (7.6, 6.4)
#: Points of per-depth curves this far (top-1 points) below every other row's lowest reading would squash
#: the band where the rows differ: the axis then stops under the rows and marks those points at its floor.
CURVES_CLIP_SPAN = 5.0


def curves_png(board: Board, x_field: str, x_label: str) -> bytes:
    """:func:`curves_figure` as PNG bytes."""
    with _style():
        return _png_bytes(curves_figure(board, x_field, x_label))


def curves_figure(board: Board, x_field: str, x_label: str) -> Figure:
    """Top-1 against ``x_field`` (size_mb or macs) for every family of :mod:`odnbench.report.curves`:
    a line per family (a marker alone for a one-point family), bars ± std over seeds, the baseline's
    top-1 and the Pareto front over every point (black step line)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure


    families = all_families(board)
    board_n = board_seeds(board)
    colours = board_colours(board)
    attr = "size_mb" if x_field == "size_mb" else "macs"
    scale = 1e6 if attr == "macs" else 1.0
    with _style():
        fig = Figure(figsize=CURVES_FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        # an early-exit network is one network at every τ: only MACs move, so its τ curve is not drawn on size
        drawn = [f for f in families if not (f.kind == "exits" and attr == "size_mb")]
        for fam in drawn:
            pts = sorted(fam.points, key=lambda p: getattr(p, attr))
            xs = [getattr(p, attr) / scale for p in pts]
            ys = [p.top1 for p in pts]
            colour = colours.get(fam.method, "grey")
            marker = method_marker(fam.method, {"depth": 1, "exits": 2}.get(fam.kind, 0))
            ax.errorbar(xs, ys, yerr=[ci_half(p.std, p.n) for p in pts], fmt=marker,
                        ls={"depth": "--", "seeds": "none", "exits": "-."}.get(fam.kind, "-"), color=colour, ms=6,
                        capsize=3, lw=1.2, elinewidth=0.9,
                        label=_text(fam.name + (" (each seed)" if fam.kind == "seeds" else "")), zorder=3)
            for p in pts:  # a point on fewer seeds than the board: hollow, with its n
                if p.marked(board_n) and fam.kind != "seeds":
                    x = getattr(p, attr) / scale
                    ax.plot([x], [p.top1], marker=marker, ms=6, color=colour, mfc="white", ls="none", zorder=4)
                    ax.annotate(f"n={p.n}", (x, p.top1), textcoords="offset points", xytext=(4, 4), fontsize=6.5,
                                color=colour)
        front = pareto_points(families, attr, board_seeds(board))
        if front:
            ax.step([getattr(p, attr) / scale for _, p in front], [p.top1 for _, p in front], where="post",
                    color="black", lw=1.0, alpha=0.6, label="Pareto front over the points on every seed", zorder=2)
        base = board.baseline.stats if board.baseline else None
        if base and base.top1_mean is not None:
            ax.axhline(base.top1_mean, color="grey", lw=0.8, ls=":", label=f"baseline ({_text(board.baseline_name)})")
        xs_all = [getattr(p, attr) for f in families for p in f.points if getattr(p, attr) > 0]
        if xs_all and max(xs_all) / min(xs_all) > 5:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        floor_labels, floor_note = _clip_low_curve_points(ax, drawn, attr, scale, colours, _band_floor(board))
        ax.set_ylim(top=min(ax.get_ylim()[1], 100.5))  # an interval may pass 100 %; top-1 cannot
        ax.set_xlabel(x_label + (" (millions)" if attr == "macs" else ""))
        ax.set_ylabel("Top-1 % on test (mean, 95 % CI over seeds)")
        ax.set_title(f"{_text(board.key_title)}: trade-off curves, top-1 against {'size' if attr == 'size_mb' else 'MACs'}")
        ax.grid(True, lw=0.4, alpha=0.5)
        legend = ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False, fontsize=7.0,
                           title="dashed: one result's models per depth (a depth search's below its chosen "
                                 "depth: intermediate models)"
                           + (f"\n{floor_note}" if floor_note else ""),
                           title_fontsize=7.5)
        _fit_legend(fig, len(legend.get_texts()))
        _stack_floor_labels(fig, floor_labels)  # after the layout: it moves the axes, and with them the labels
        return fig


#: The ▼ marking a point under the axis, in points.
FLOOR_MARKER_PT = 7
#: More floor marks than this get no value labels (stacked, they would climb over the curves); the legend
#: counts them and the page's curves table lists every value.
FLOOR_LABELS_MAX = 12


def _stack_floor_labels(fig: Figure, labels: Sequence[Any]) -> None:
    """Left to right, each floor label goes on the lowest line where it covers neither a label placed
    before it nor another point's ▼ (measured as drawn, after the layout, so long labels fit too)."""
    from matplotlib.transforms import Bbox

    renderer = cast(Any, fig.canvas).get_renderer()  # every figure here is drawn on an Agg canvas
    half = FLOOR_MARKER_PT / 2 * fig.dpi / 72
    markers = []
    for text in labels:
        x, y = text.axes.transData.transform(text.xy)
        markers.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
    placed: list[Any] = []
    for i, text in enumerate(labels):
        obstacles = placed + markers[:i] + markers[i + 1:]
        line = 0
        while True:
            text.set_horizontalalignment("left")
            text.xyann = (5, 3 + 8 * line)
            box = text.get_window_extent(renderer)
            if box.x1 > fig.bbox.x1:  # past the figure's right edge: the label goes left of its ▼
                text.set_horizontalalignment("right")
                text.xyann = (-5, 3 + 8 * line)
                box = text.get_window_extent(renderer)
            box = Bbox.from_extents(box.x0 - 3, box.y0, box.x1 + 3, box.y1)  # a gap between words, not lines
            if not any(box.overlaps(other) for other in obstacles):
                break
            line += 1
        placed.append(box)


def _clip_low_curve_points(ax: Any, families: Sequence[Family], attr: str, scale: float,
                           board_colours_of: dict[str, str] | None = None,
                           band_floor: float | None = None) -> tuple[list[Any], str]:
    """When per-depth or per-τ points reach far below every other point (a 1-block net at 70 % against
    rows at 95-98 %), or any point lies under ``band_floor`` (the Pareto plots' floor, 3 tolerances under
    the baseline), end the y axis there and mark each lower point at the floor with its value (a row's seeds
    at one x share a mark: "3 seeds: 83.0–90.8"; past :data:`FLOOR_LABELS_MAX` marks, none is labelled).
    Returns the value labels, left to right, for :func:`_stack_floor_labels` once the figure is laid out,
    and the legend's line about the floor ("" when the axis was left as it was)."""
    def low(p: Point) -> float:
        return p.top1 - ci_half(p.std, p.n)

    # the weak end of a curve (a shallow depth, a τ that exits everything early) may be clipped; rows only
    # under the band where "as accurate as the baseline" is decided
    rows = [low(p) for f in families if f.kind not in ("depth", "exits") for p in f.points]
    points = [(i, p) for i, f in enumerate(families) for p in f.points]
    if not rows:
        return [], ""
    floor = min(rows) - 1.0
    far = min(low(p) for _, p in points) <= min(rows) - CURVES_CLIP_SPAN
    if band_floor is not None and any(p.top1 < band_floor for _, p in points):
        floor, far = max(floor, band_floor), True
    if not far:
        return [], ""
    board_colours_of = board_colours_of or {}
    ax.set_ylim(floor, min(ax.get_ylim()[1], max(p.top1 + ci_half(p.std, p.n) for _, p in points) + 0.5))
    marks: dict[tuple[int, float], list[Point]] = {}  # one mark per family and x
    for i, p in points:
        if p.top1 < floor:
            marks.setdefault((i, getattr(p, attr) / scale), []).append(p)
    labelled = len(marks) <= FLOOR_LABELS_MAX  # a taller stack would cover the curves: the legend counts them
    labels = []
    for (i, x), here in sorted(marks.items(), key=lambda m: m[0][1]):
        colour = board_colours_of.get(families[i].method, "grey")
        ax.plot([x], [floor], marker="v", color=colour, ms=FLOOR_MARKER_PT, clip_on=False, zorder=4)
        if not labelled:
            continue
        values = sorted(p.top1 for p in here)
        text = (f"{here[0].label}: {values[0]:.1f}" if len(here) == 1
                else f"{len(here)} {'seeds' if families[i].kind == 'seeds' else 'points'}: "
                     f"{values[0]:.1f}–{values[-1]:.1f}")
        labels.append(ax.annotate(text, (x, floor), xytext=(5, 3), textcoords="offset points",
                                  fontsize=6.5, color=colour))
    if not labelled:
        lowest = min(p.top1 for here in marks.values() for p in here)
        return [], (f"▼ at the floor: {sum(map(len, marks.values()))} points below {floor:.2f} % "
                    f"(lowest {lowest:.1f} %); the tables on the page give the values")
    return labels, "▼ at the floor: a point below the axis, with its top-1" if labels else ""

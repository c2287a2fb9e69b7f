"""Plots derived from stored results, written as byte-identical PNGs on every run.

Matplotlib is driven through ``Figure`` + the Agg canvas (no pyplot, so no global backend or
figure state), under matplotlib's default style plus pinned settings (a user's matplotlibrc cannot
change the picture), with a fixed size and dpi and no "Software"/date metadata in the file.

- :func:`pareto_png`: top-1 against size or MACs for every row of a board, Pareto front marked;
- :func:`plot_depth_curves`: accuracy against depth (ODN's curve, any method's ``depth_curve``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

from odnbench.report.boards import Board
from odnbench.report.fmt import fmt_value
from odnbench.store import atomic_write_bytes

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


def _style():
    import matplotlib.style
    from cycler import cycler

    rc = dict(RC)
    rc["axes.prop_cycle"] = cycler(color=COLORS)
    # matplotlib's defaults first, so that a user's matplotlibrc cannot change the picture
    return matplotlib.style.context(["default", rc])


def _png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def pareto_png(board: Board, x_field: str, x_label: str) -> bytes:
    """Top-1 (mean ± std over seeds) against ``x_field`` for every row; the Pareto front is the
    set of rows no other row beats on both, joined by a step line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [r for r in board.rows if r.fields.get(x_field) and r.fields.get("top1_mean") is not None]
    with _style():
        fig = Figure(figsize=FIGSIZE, dpi=DPI)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        scale = 1e6 if x_field == "macs" else 1.0
        points = [(r.fields[x_field] / scale, r.fields["top1_mean"]) for r in rows]
        front = set(pareto_front(points))
        methods = sorted({r.method for r in rows})
        colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
        labelled = set()
        for i, (row, (x, y)) in enumerate(zip(rows, points)):
            on_front = i in front
            legend = row.method if row.method not in labelled else None
            labelled.add(row.method)
            ax.errorbar([x], [y], yerr=[row.fields["top1_std"] or 0.0], fmt="o", ms=7 if on_front else 6,
                        color=colors[row.method], mfc=colors[row.method] if on_front else "white",
                        mew=1.5, capsize=3, label=legend, zorder=3)
            ax.annotate(row.label, (x, y), xytext=(5, 5), textcoords="offset points", fontsize=7)
        if front:
            fx = [points[i] for i in sorted(front, key=lambda i: points[i][0])]
            ax.step([p[0] for p in fx], [p[1] for p in fx], where="post", color="black", lw=1.0, ls="-",
                    alpha=0.6, label="Pareto front (filled markers)", zorder=2)
        base = board.baseline.fields if board.baseline else None
        if base and base.get("top1_mean") is not None:
            ax.axhline(base["top1_mean"], color="grey", lw=0.8, ls=":", label="full depth")
            ax.axhline(base["top1_mean"] - board.tolerance, color="grey", lw=0.8, ls="--",
                       label=f"full − {fmt_value(float(board.tolerance))} (iso-accuracy bound)")
        xs = [p[0] for p in points]
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))  # 0.01, not 10^-2
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(x_label + (" (millions)" if x_field == "macs" else ""))
        ax.set_ylabel("Top-1 % on test (mean ± std over seeds)")
        ax.set_title(f"{board.title}: top-1 against {'size' if x_field == 'size_mb' else 'MACs'}")
        ax.grid(True, lw=0.4, alpha=0.5)
        ax.legend(loc="best")
        fig.tight_layout()
        return _png_bytes(fig)


def depth_curves(board: Board) -> list[tuple[str, list[dict]]]:
    """``(label, records)`` for every ranked result that states a depth curve."""
    curves = []
    for row in board.rows:
        for seed, r in zip(row.seeds, row.results):
            points = _curve_points(r)
            if points:
                curves.append((f"{row.label} seed {seed}", points))
    return curves


def _curve_points(r) -> list[dict]:
    curve = r.facts.depth_curve
    if not isinstance(curve, list):
        return []
    return [p for p in curve if isinstance(p, dict) and "depth" in p and "val" in p]


def depth_marks(board: Board) -> tuple[list[tuple[str, float]], list[tuple[str, float, float]]]:
    """Stop thresholds (one line per distinct value) and each curve's chosen depth, for the depth plot."""
    hlines: dict[float, str] = {}
    marks = []
    for row in board.rows:
        for seed, r in zip(row.seeds, row.results):
            curve = r.facts.depth_curve
            if not isinstance(curve, list):
                continue
            thr = r.facts.threshold
            if isinstance(thr, (int, float)) and not isinstance(thr, bool) and round(thr, 2) not in hlines:
                hlines[round(thr, 2)] = f"threshold {thr:.2f} ({row.label} seed {seed})"
            depth = r.facts.depth
            best = [p.get("val") for p in curve if isinstance(p, dict) and p.get("depth") == depth]
            if isinstance(depth, int) and best and isinstance(best[0], (int, float)):
                marks.append((f"chosen depth {depth} ({row.label} seed {seed})", depth, best[0]))
    return [(label, value) for value, label in sorted(hlines.items())], marks


def depth_curve_png(board: Board) -> bytes:
    """Validation top-1 against depth for every result on ``board`` that states a depth curve,
    with each method's threshold and chosen depth marked."""
    hlines, marks = depth_marks(board)
    with _style():
        fig = depth_figure(depth_curves(board), title=f"{board.title}: validation top-1 by depth", hlines=hlines,
                           marks=marks)
        return _depth_png_bytes(fig)


DEPTH_FIGSIZE = (6.4, 4.0)
DEPTH_DPI = 120


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=DEPTH_FIGSIZE, dpi=DEPTH_DPI)
    FigureCanvasAgg(fig)
    return fig


def _depth_png_bytes(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DEPTH_DPI, metadata=PNG_METADATA)
    return buffer.getvalue()


def plot_depth_curves(curves: Sequence[tuple[str, Sequence[dict]]], path, title: str = "", **kwargs) -> Path:
    """Write :func:`depth_figure` as a PNG at ``path``; returns ``path``."""
    path = Path(path)
    atomic_write_bytes(path, _depth_png_bytes(depth_figure(curves, title, **kwargs)))
    return path


def depth_figure(curves: Sequence[tuple[str, Sequence[dict]]], title: str = "", *,
                 y_key: str = "val", y_label: str = "validation top-1 (%)",
                 hlines: Sequence[tuple[str, float]] = (),
                 marks: Sequence[tuple[str, float, float]] = (), mark_label: str = "chosen depth"):
    """Accuracy against depth, one line per ``(label, records)``; each record needs ``depth`` and
    ``y_key`` (records without a value are skipped). ``hlines``: labelled horizontal lines (e.g. a
    stop threshold); ``marks``: points ``(curve label, depth, value)`` drawn as stars in that
    curve's colour, with one legend entry ``mark_label``."""
    import matplotlib.style

    with matplotlib.style.context("default"):
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        depths: set[int] = set()
        colours: dict[str, str] = {}
        for label, records in curves:
            pts = sorted((int(r["depth"]), float(r[y_key])) for r in records if r.get(y_key) is not None)
            if not pts:
                continue
            depths.update(d for d, _ in pts)
            (line,) = ax.plot([d for d, _ in pts], [v for _, v in pts], marker="o", label=label)
            colours.setdefault(label, line.get_color())
        styles = ["--", ":", "-.", (0, (5, 1))]
        for i, (label, value) in enumerate(hlines):
            ax.axhline(value, linestyle=styles[i % len(styles)], linewidth=1, color="grey", label=label)
        for i, (curve, depth, value) in enumerate(marks):
            ax.plot([depth], [value], marker="*", markersize=15, markeredgecolor="black", linestyle="none",
                    color=colours.get(curve, "grey"), label=mark_label if i == 0 else "_nolegend_", zorder=3)
        if depths:
            ax.set_xticks(sorted(depths))
        ax.set_xlabel("depth (residual blocks kept)")
        ax.set_ylabel(y_label)
        if title:
            ax.set_title(title)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize="small")
        fig.tight_layout()
        return fig

"""Plots derived from stored results, written as byte-identical PNGs on every run.

Matplotlib is driven through ``Figure`` + the Agg canvas (no pyplot, so no global backend or
figure state), under matplotlib's default style (a user's matplotlibrc cannot change the
picture), with a fixed size and dpi and no "Software"/date metadata in the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

FIGSIZE = (6.4, 4.0)
DPI = 120


def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    import io

    from odnbench.store import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def plot_depth_curves(curves: Sequence[tuple[str, Sequence[dict]]], path, title: str = "", *,
                      y_key: str = "best_val", y_label: str = "validation top-1 (%)",
                      hlines: Sequence[tuple[str, float]] = (),
                      marks: Sequence[tuple[str, float, float]] = (), mark_label: str = "chosen depth") -> Path:
    """Accuracy against depth, one line per ``(label, records)``; each record needs ``depth`` and
    ``y_key`` (records without a value are skipped). ``hlines``: labelled horizontal lines (e.g. a
    stop threshold); ``marks``: points ``(curve label, depth, value)`` drawn as stars in that
    curve's colour, with one legend entry ``mark_label``. Returns ``path``."""
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
        return _save(fig, path)

"""``odnbench odn-curve``: the accuracy-vs-depth table (and plot) of stored ODN results."""

from __future__ import annotations

import json
from pathlib import Path

import click

from odnbench.errors import OdnbenchError


def load_odn_result(cell_dir: Path):
    """The stored result of an ODN cell folder, with a one-line error when it is not one."""
    from odnbench.store import RESULT_FILE, ResultStore

    f = Path(cell_dir) / RESULT_FILE
    if not f.is_file():
        raise OdnbenchError(f"{cell_dir}: no result.json here; pass a cell folder such as "
                            "odnbench-results/odn-mnist5k-resnet18-s0-<key>")
    try:
        result = ResultStore(Path(cell_dir).parent).read(cell_dir)
    except (json.JSONDecodeError, ValueError) as exc:
        raise OdnbenchError(f"{f}: not a readable result ({exc})") from None
    assert result is not None  # its result.json is there (checked above)
    if result.method != "odn":
        raise OdnbenchError(f"{cell_dir}: holds a {result.method!r} result; odn-curve needs an 'odn' result")
    if not result.ok or not result.method_info.get("depth_curve"):
        raise OdnbenchError(f"{cell_dir}: the ODN run did not finish ({result.error or 'no depth curve'})")
    return result


def curve_table(result) -> str:
    """Plain-text table: one row per depth tried, the optimal depth marked."""
    info = result.method_info
    c = result.config
    lines = [
        f"ODN {c['dataset']} / {c['backbone']} / seed {c['seed']} / {c['preset']}: threshold "
        f"{info['threshold']:.2f}% ({info['target_mode']}: {info['target']:.2f} - {info['tolerance']}), "
        f"best reading {info['best_reading']}",
        f"{'depth':>5} {'best val %':>10} {'epochs':>6} {'samples':>9} {'seconds':>8} {'params':>11} {'size MB':>9}",
    ]
    for r in info["depth_curve"]:
        mark = "  <- optimal" if r["depth"] == info["optimal_depth"] else ""
        lines.append(f"{r['depth']:>5} {r['best_val']:>10.2f} {r['epochs']:>6} {r['sample_steps']:>9,} "
                     f"{r['seconds']:>8.1f} {r['params']:>11,} {r['size_mb']:>9.3f}{mark}")
    m = result.metrics or {}
    ft = info.get("finetune")
    tail = f"optimal depth {info['optimal_depth']} of {info['blocks']} blocks"
    tail += "" if info.get("reached_target") else " (threshold not reached: stopped at the last depth)"
    if ft:
        tail += f"; fine-tune {ft['epochs']} epochs, val {ft['start_val']} -> {ft['best_val']}"
    if m:
        tail += f"; exported model: test top-1 {m['top1']:.2f}%, {m['params']:,} params, {m['size_mb']:.3f} MB"
    lines.append(tail)
    return "\n".join(lines)


def _curve_marks(result) -> float:
    """The best validation top-1 at the optimal depth (StopIteration when the curve lacks that depth)."""
    info = result.method_info
    float(info["threshold"])  # a number, or TypeError/ValueError
    return float(next(x["best_val"] for x in info["depth_curve"] if x["depth"] == info["optimal_depth"]))


@click.command("odn-curve")
@click.argument("result_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--png", type=click.Path(path_type=Path), default=None, help="Also write the plot to this PNG file.")
def odn_curve(result_dirs, png):
    """Print (and plot) accuracy against depth of ODN results.

    RESULT_DIR is a cell folder holding an odn result.json. Prints, per depth tried, the best validation top-1, epochs, sample-steps, seconds, and the
    params and size of that depth's cut model; --png plots the curves (several folders = several lines).
    """
    results = [(d, load_odn_result(d)) for d in result_dirs]
    tables = []
    for d, result in results:
        try:
            tables.append(curve_table(result))
            _curve_marks(result)
        except (KeyError, TypeError, ValueError, AttributeError, StopIteration) as exc:
            # method_info is free-form JSON: a record verify --schema-only accepts may still not hold ODN's curve
            raise OdnbenchError(f"{d}: its method_info does not hold an ODN depth curve odn-curve can read "
                                f"({type(exc).__name__}: {' '.join(str(exc).split())[:120]}); "
                                "`odnbench leaderboard verify` checks the record") from None
    for i, table in enumerate(tables):
        if i:
            click.echo("")
        click.echo(table)
    if png:
        from odnbench.report.plots import plot_depth_curves

        labels = [f"{r.config['dataset']}/{r.config['backbone']} s{r.config['seed']} {r.config['preset']}"
                  for _, r in results]
        if len(set(labels)) < len(labels):  # same cell coordinates, other parameters: name the folders
            labels = [Path(d).name for d, _ in results]
        curves, hlines, marks = [], [], []
        for label, (_, r) in zip(labels, results):
            info = r.method_info
            curves.append((label, info["depth_curve"]))
            marks.append((label, info["optimal_depth"], _curve_marks(r)))
            hlines.append((f"threshold {info['threshold']:.2f}%" + (f" ({label})" if len(results) > 1 else ""),
                           info["threshold"]))
        c = results[0][1].config
        title = (f"ODN accuracy vs depth: {c['dataset']} / {c['backbone']} ({c['preset']})" if len(results) == 1
                 else "ODN accuracy vs depth")
        plot_depth_curves(curves, png, title, y_key="best_val", hlines=hlines, marks=marks, mark_label="optimal depth")
        click.echo(f"wrote {png}")

"""Leaderboards derived from stored ``result.json`` files only.

One board per (dataset, backbone, preset, device). Rows aggregate a method configuration over
seeds: top-1 mean ± std (n), Δ vs full depth, params, sizes, MACs, latency, speed-ups vs full
depth (by MACs and measured), and the cost of obtaining the model.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from odnbench import PROTOCOL_VERSION
from odnbench.store import canonical_json, iter_results

BASELINE = "full"


@dataclass
class Row:
    method: str
    label: str
    params_config: dict
    seeds: list[int]
    top1: list[float]
    results: list[dict]
    fields: dict = field(default_factory=dict)


@dataclass
class Board:
    dataset: str
    backbone: str
    preset: str
    device: str
    rows: list[Row]
    failed: list[dict]
    caption: dict

    @property
    def slug(self) -> str:
        return f"{self.dataset}-{self.backbone}-{self.preset}-{self.device}"


def load_results(results_dir) -> list[dict]:
    return [r for _, r in iter_results(Path(results_dir))]


def _mean(values):
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def _std(values):
    values = [v for v in values if v is not None]
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _board_key(r: dict) -> tuple:
    c = r["config"]
    device = (r.get("env") or {}).get("device") or (r.get("cost") or {}).get("device") or "?"
    return (c["dataset"], c["backbone"], c["preset"], device)


def _labels(rows_params: dict[str, list[dict]]) -> dict[tuple[str, str], str]:
    """Method label = name + the parameters that differ between its configurations on this board."""
    out = {}
    for method, configs in rows_params.items():
        varying = sorted({k for p in configs for k in p if any(q.get(k) != p.get(k) for q in configs)})
        for p in configs:
            extra = ", ".join(f"{k}={p.get(k)}" for k in varying)
            out[(method, canonical_json(p))] = f"{method} ({extra})" if extra else method
    return out


def build_boards(results: list[dict]) -> list[Board]:
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        if "config" in r:
            groups.setdefault(_board_key(r), []).append(r)
    boards = []
    for key in sorted(groups):
        rs = groups[key]
        ok = [r for r in rs if r.get("status") == "ok"]
        failed = [r for r in rs if r.get("status") != "ok"]
        by_conf: dict[tuple[str, str], list[dict]] = {}
        for r in ok:
            by_conf.setdefault((r["config"]["method"], canonical_json(r["config"]["params"])), []).append(r)
        per_method: dict[str, list[dict]] = {}
        for (method, pj) in by_conf:
            per_method.setdefault(method, []).append(json.loads(pj))
        labels = _labels(per_method)
        rows = []
        for (method, pj), members in by_conf.items():
            members.sort(key=lambda r: r["config"]["seed"])
            rows.append(Row(method, labels[(method, pj)], json.loads(pj), [r["config"]["seed"] for r in members],
                            [r["metrics"]["top1"] for r in members], members))
        _fill_fields(rows)
        rows.sort(key=lambda row: (-(row.fields["top1_mean"] or 0), row.fields["size_mb"] or 0, row.label))
        for rank, row in enumerate(rows, 1):
            row.fields["rank"] = rank
        boards.append(Board(*key, rows=rows, failed=failed, caption=_caption(key, rs)))
    return boards


def _fill_fields(rows: list[Row]) -> None:
    base = next((row for row in rows if row.method == BASELINE and not row.params_config), None)
    base = base or next((row for row in rows if row.method == BASELINE), None)
    base_f = _aggregate(base) if base else None
    for row in rows:
        f = _aggregate(row)
        if base_f:
            f["delta_vs_full"] = None if f["top1_mean"] is None else f["top1_mean"] - base_f["top1_mean"]
            f["macs_speedup"] = base_f["macs"] / f["macs"] if f["macs"] else None
            f["measured_speedup"] = base_f["latency_p50"] / f["latency_p50"] if f["latency_p50"] else None
        else:
            f["delta_vs_full"] = f["macs_speedup"] = f["measured_speedup"] = None
        row.fields = f


def _aggregate(row: Row) -> dict:
    ms = [r["metrics"] for r in row.results]
    cs = [r["cost"] or {} for r in row.results]
    return {
        "method": row.label,
        "n": len(row.results),
        "seeds": row.seeds,
        "top1_mean": _mean(row.top1),
        "top1_std": _std(row.top1),
        "params": _mean([m["params"] for m in ms]),
        "size_mb": _mean([m["size_mb"] for m in ms]),
        "size_mib": _mean([m["size_mib"] for m in ms]),
        "macs": _mean([m["macs"] for m in ms]),
        "latency_p50": _mean([m["latency_ms"]["p50"] for m in ms]),
        "latency_p90": _mean([m["latency_ms"]["p90"] for m in ms]),
        "latency_batch": ms[0]["latency_ms"]["batch_size"],
        "throughput": _mean([m["throughput"]["images_per_s"] for m in ms]),
        "cost_epochs": _mean([c.get("epochs") for c in cs]),
        "cost_sample_steps": _mean([c.get("sample_steps") for c in cs]),
        "cost_seconds": _mean([c.get("train_seconds") for c in cs]),
        "keys": [r["key"] for r in row.results],
    }


def _caption(key: tuple, results: list[dict]) -> dict:
    envs = [r.get("env") or {} for r in results]
    first = envs[0] if envs else {}
    seeds = sorted({r["config"]["seed"] for r in results})
    return {
        "dataset": key[0], "backbone": key[1], "preset": key[2], "device": key[3],
        "device_name": first.get("device_name"), "threads": first.get("threads"),
        "torch": first.get("torch"), "timm": first.get("timm"), "torch_pruning": first.get("torch_pruning"),
        "protocol": PROTOCOL_VERSION, "seeds": seeds, "precision": "fp32",
    }


# ----------------------------------------------------------------------------------- rendering

COLUMNS = [
    ("rank", "Rank"), ("method", "Method"), ("top1", "Top-1 % (mean ± std, n)"), ("delta", "Δ vs full"),
    ("params", "Params"), ("size_mb", "Size MB (saved)"), ("size_mib", "Size MiB (fp32)"), ("macs", "MACs"),
    ("latency", "Latency p50 / p90 ms (batch 1)"), ("macs_speedup", "Speed-up MACs"),
    ("measured_speedup", "Speed-up measured"), ("cost", "Cost to obtain (epochs / sample-steps / s)"),
]


def _fmt_int(v):
    return "–" if v is None else f"{round(v):,}"


def _fmt_macs(v):
    if v is None:
        return "–"
    for unit, div in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if v >= div:
            return f"{v / div:.2f} {unit}"
    return f"{v:.0f}"


def _fmt_x(v):
    return "–" if v is None else f"{v:.2f}×"


def cells(f: dict) -> dict[str, str]:
    delta = f.get("delta_vs_full")
    return {
        "rank": str(f["rank"]),
        "method": f["method"],
        "top1": f"{f['top1_mean']:.2f} ± {f['top1_std']:.2f} (n={f['n']})",
        "delta": "–" if delta is None else f"{delta:+.2f}",
        "params": _fmt_int(f["params"]),
        "size_mb": f"{f['size_mb']:.3f}",
        "size_mib": f"{f['size_mib']:.3f}",
        "macs": _fmt_macs(f["macs"]),
        "latency": f"{f['latency_p50']:.3f} / {f['latency_p90']:.3f}",
        "macs_speedup": _fmt_x(f.get("macs_speedup")),
        "measured_speedup": _fmt_x(f.get("measured_speedup")),
        "cost": f"{f['cost_epochs']:.0f} / {_fmt_int(f['cost_sample_steps'])} / {f['cost_seconds']:.0f}",
    }


def markdown_table(rows: list[dict], columns=COLUMNS) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" if k in ("method",) else "--:" for k, _ in columns) + "|"
    body = ["| " + " | ".join(r[k].replace("|", "\\|") for k, _ in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def caption_line(board: Board) -> str:
    c = board.caption
    return (f"Device: {c['device']} ({c['device_name']}), {c['threads']} threads, {c['precision']}; "
            f"preset `{c['preset']}`; protocol v{c['protocol']}; seeds {c['seeds']}; "
            f"torch {c['torch']}, timm {c['timm']}, torch-pruning {c['torch_pruning']}.")


def render_markdown(boards: list[Board], source: str) -> str:
    out = [f"<!-- Generated by odnbench from the result.json files in {source}; do not edit by hand. -->", ""]
    if not boards:
        out.append("_No results yet._")
    for board in boards:
        out += [f"## {board.dataset} · {board.backbone} · preset {board.preset} · {board.device}", "",
                caption_line(board), ""]
        if board.rows:
            out.append(markdown_table([cells(r.fields) for r in board.rows]))
        else:
            out.append("_No finished results on this board._")
        if board.failed:
            out += ["", "Failed cells (not ranked):", ""]
            out += [f"- `{r['config']['method']}` seed {r['config']['seed']}: {r.get('error')}" for r in board.failed]
        out.append("")
    return "\n".join(out)


def board_records(boards: list[Board]) -> list[dict]:
    records = []
    for board in boards:
        for row in board.rows:
            rec = {"dataset": board.dataset, "backbone": board.backbone, "preset": board.preset,
                   "device": board.device, **row.fields}
            records.append(rec)
    return records


def render_json(boards: list[Board]) -> str:
    return json.dumps(board_records(boards), indent=2, sort_keys=True, default=str) + "\n"


def render_csv(boards: list[Board]) -> str:
    records = board_records(boards)
    buffer = io.StringIO()
    if records:
        names = [k for k in records[0] if k != "keys"]
        writer = csv.DictWriter(buffer, fieldnames=names, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in rec.items()})
    return buffer.getvalue()


def render(results_dir, fmt: str = "md") -> str:
    boards = build_boards(load_results(results_dir))
    if fmt == "json":
        return render_json(boards)
    if fmt == "csv":
        return render_csv(boards)
    return render_markdown(boards, str(results_dir))

"""Regression check on same-run ratios, for a shared and noisy machine.

Absolute times move with whatever else the machine is doing; a ratio of two things measured in
the same run (the harness's epoch against a bare PyTorch loop's, interleaved; training GFLOP/s
against this CPU's matmul peak measured alongside) mostly does not. Each benchmark of the suite puts
such ratios in ``benchmark.extra_info["ratios"]`` (a name -> number mapping, higher is better).
This compares them between a saved run (``--benchmark-save NAME`` writes
``.benchmarks/<machine>/NNNN_NAME.json``) and the current one or another saved file:

    python -m pytest benchmarks --benchmark-only --ratio-baseline .benchmarks/*/0001_base.json
    python benchmarks/ratios.py .benchmarks/*/0001_base.json .benchmarks/*/0002_now.json --tolerance 0.1

A ratio regresses when it falls more than ``tolerance`` (a fraction of the baseline: 0.10 = 10 %)
below the baseline's; a rise is reported, never a failure.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

DEFAULT_TOLERANCE = 0.10

Ratios = dict[str, dict[str, float]]  # benchmark fullname -> {ratio name: value}


def resolve(spec: str, storage: str | Path = ".benchmarks") -> Path:
    """A saved run: a path, or a pytest-benchmark id (``0001`` or ``0001_base``) in ``storage``."""
    path = Path(spec)
    if path.is_file():
        return path
    found = sorted(glob.glob(str(Path(storage) / "*" / f"{spec}*.json")))
    if len(found) != 1:
        where = f"{storage}/*/{spec}*.json"
        raise ValueError(f"{spec}: no such file, and {len(found)} saved runs match {where} "
                         "(give a path, or an id such as 0001 that matches one)")
    return Path(found[0])


def ratios_in(saved: dict) -> Ratios:
    """The ``extra_info["ratios"]`` of each benchmark in a pytest-benchmark JSON file."""
    out: Ratios = {}
    for bench in saved.get("benchmarks", []):
        ratios = (bench.get("extra_info") or {}).get("ratios") or {}
        if ratios:
            out[bench["fullname"]] = {k: float(v) for k, v in ratios.items()}
    return out


def load(path: str | Path) -> Ratios:
    return ratios_in(json.loads(Path(path).read_text()))


def compare(baseline: Ratios, current: Ratios, tolerance: float = DEFAULT_TOLERANCE) -> tuple[list[str], list[str]]:
    """Lines of a report (one per ratio found in both runs) and the regressions among them."""
    lines, regressions = [], []
    for name in sorted(current):
        for key, now in sorted(current[name].items()):
            before = baseline.get(name, {}).get(key)
            label = f"{name.split('::', 1)[-1]} {key}"
            if before is None:
                lines.append(f"{label}: {now:.3f} (not in the baseline)")
                continue
            change = now / before - 1 if before else 0.0
            verdict = "REGRESSED" if now < before * (1 - tolerance) else "ok"
            line = f"{label}: {before:.3f} -> {now:.3f} ({change:+.1%}) {verdict}"
            lines.append(line)
            if verdict != "ok":
                regressions.append(line)
    missing = sorted(f"{n.split('::', 1)[-1]} {k}" for n in baseline for k in baseline[n]
                     if k not in current.get(n, {}))
    lines += [f"{label}: in the baseline, not measured now" for label in missing]
    return lines, regressions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("baseline", help="a saved pytest-benchmark JSON (or an id such as 0001)")
    parser.add_argument("current", help="the run to check, same forms")
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"allowed fall, a fraction of the baseline (default {DEFAULT_TOLERANCE})")
    args = parser.parse_args(argv)
    try:
        baseline, current = resolve(args.baseline), resolve(args.current)
    except ValueError as exc:
        parser.error(str(exc))
    lines, regressions = compare(load(baseline), load(current), args.tolerance)
    print("\n".join(lines) or "no ratios in common")
    print(f"{len(regressions)} of {len(lines)} ratios fell more than {args.tolerance:.0%}")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())

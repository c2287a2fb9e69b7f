"""``--remeasure-latency``: measure the latency of stored models again, one at a time, for a board.

A latency stored while cells ran side by side, or while other processes held the CPU, makes the
measured speed-up noise. This reloads each ok result's model file (checked against its stored
sha256; never unpickled), measures it with :func:`odnbench.metrics.latency_ms` under the stored
measurement settings (warm-up, windows, iterations, the thread count the stored latency used),
serially, and hands back results whose ``metrics.latency_ms`` is the new measurement, with the
stored one kept under ``remeasured.stored``. Nothing is written back: ``result.json`` files are
never changed, and the board says that its latency was re-measured, when and on what CPU.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path

from odnbench.result import Result


def remeasure_latency(results: list[Result], results_dir: str | Path, say: Callable[[str], None] | None = None) -> list[Result]:
    """Copies of ``results`` with re-measured latency (results without a loadable model stay as stored)."""
    import torch

    from odnbench.metrics import latency_ms
    from odnbench.recipes import Recipe
    from odnbench.store import load_model

    out = []
    for r in results:
        lat = (r.metrics or {}).get("latency_ms")
        shape = (r.metrics or {}).get("input_shape")
        if not (r.ok and isinstance(lat, dict) and r.model_file and r.folder and isinstance(shape, list)):
            out.append(r)
            continue
        path = Path(results_dir) / r.folder / r.model_file
        expected = ((r.files or {}).get(r.model_file) or {}).get("sha256")
        try:
            model = load_model(path, device=torch.device("cpu"), expected_sha256=expected)
            recipe = Recipe.from_dict(r.config.get("recipe") or {"preset": r.config.get("preset")})
        except Exception as exc:  # a missing or changed model file: keep the stored latency, say why
            if say:
                say(f"{r.folder}: latency not re-measured ({type(exc).__name__}: {str(exc)[:120]})")
            out.append(r)
            continue
        threads = lat.get("threads") if isinstance(lat.get("threads"), int) else recipe.threads
        new = latency_ms(model, tuple(shape), warmup=recipe.latency_warmup, windows=recipe.latency_windows,
                         iters=recipe.latency_iters, threads=threads)
        new["remeasured"] = {"stored": {k: v for k, v in lat.items() if k != "remeasured"}}
        metrics = copy.deepcopy(r.metrics or {})  # (set: lat came from it)
        metrics["latency_ms"] = new
        out.append(dataclasses.replace(r, metrics=metrics, folder=r.folder))
        if say:
            say(f"{r.folder}: latency p50 {lat.get('p50')} -> {new['p50']} ms{' (busy)' if new['busy'] else ''}")
    return out

"""``--remeasure-latency``: measure the latency of stored models again, one at a time, for a board.

A latency stored while cells ran side by side, or while other processes held the CPU, makes the
measured speed-up noise. This reloads each ok result's model file (checked against its stored
sha256; never unpickled), measures it with :func:`odnbench.metrics.latency_ms` under the stored
measurement settings (warm-up, windows, iterations, the thread count the stored latency used, and
the precision and memory format the cell ran in), serially, at batch 1 and at a larger batch
(``--latency-batch``, default :data:`LATENCY_BATCH`), and hands back results whose
``metrics.latency_ms`` is the new batch-1 measurement (the stored one kept under
``remeasured.stored``) and whose ``metrics.latency_ms_batched`` is the larger batch's (ms per call
and ``ms_per_image_p50``/``_p90``). Each carries ``remeasured`` with the CPU it ran on. The board
says how its latency was measured: serially, on which CPU, threads, both batch sizes, windows and
iterations.

``result.json`` files are never changed: each new measurement is stored beside its record, in
:data:`REMEASURED_FILE` (the cell's key and its model file's sha256 with both measurements), so that
every number on a published page traces to a stored file, and a later ``leaderboard`` or
``leaderboard publish`` without ``--remeasure-latency`` uses it again (:func:`stored_remeasures`):
republishing reproduces the page without timing anything. A file whose key or model sha256 does not
match its record is ignored with a line saying so.

A latency stored on test images (an early-exit network's, ``input: "images"``: its cost depends on
the image) is kept as stored, with a line saying so: the report layer does not load data sets.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from odnbench.result import Result

#: The larger batch ``--remeasure-latency`` times besides batch 1 (``--latency-batch`` changes it).
LATENCY_BATCH = 64
#: Where the larger batch's measurement goes in the in-memory ``metrics`` (never written to result.json).
BATCHED_KEY = "latency_ms_batched"
#: The file beside a result.json that keeps its re-measured latency (JSON; read as data only).
REMEASURED_FILE = "latency-remeasured.json"
#: Its largest allowed size (it holds two latency dicts).
MAX_REMEASURED_BYTES = 256 * 1024


def remeasure_latency(results: list[Result], results_dir: str | Path, say: Callable[[str], None] | None = None,
                      batch_size: int = LATENCY_BATCH) -> list[Result]:
    """Copies of ``results`` with re-measured latency at batch 1 and at ``batch_size`` (results without a
    loadable model, or whose latency ran on test images, stay as stored)."""
    import torch

    from odnbench.envinfo import cpu_name
    from odnbench.execution import Execution
    from odnbench.metrics import latency_ms
    from odnbench.recipes import Recipe
    from odnbench.store import load_model

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValueError(f"--latency-batch {batch_size!r} is not allowed; allowed: an integer >= 2 (batch 1 is "
                         "always measured)")
    cpu = cpu_name()
    out = []
    for r in results:
        lat = (r.metrics or {}).get("latency_ms")
        shape = (r.metrics or {}).get("input_shape")
        if not (r.ok and isinstance(lat, dict) and r.model_file and r.folder and isinstance(shape, list)):
            out.append(r)
            continue
        if lat.get("input") == "images":
            if say:
                say(f"{r.folder}: latency not re-measured (it ran on test images, which the report does not load)")
            out.append(r)
            continue
        path = Path(results_dir) / r.folder / r.model_file
        expected = ((r.files or {}).get(r.model_file) or {}).get("sha256")
        try:
            model = load_model(path, device=torch.device("cpu"), expected_sha256=expected)
            recipe = Recipe.from_dict(r.config.get("recipe") or {"preset": r.config.get("preset")})
            execution = Execution.for_recipe(recipe, torch.device("cpu"))  # the precision and layout it ran in
        except Exception as exc:  # a missing or changed model file: keep the stored latency, say why
            if say:
                say(f"{r.folder}: latency not re-measured ({type(exc).__name__}: {str(exc)[:120]})")
            out.append(r)
            continue
        model = execution.model(model).eval()
        threads = lat.get("threads") if isinstance(lat.get("threads"), int) else recipe.threads
        settings: dict[str, Any] = {"warmup": recipe.latency_warmup, "windows": recipe.latency_windows, "iters": recipe.latency_iters,
                    "threads": threads, "execution": execution}
        new = latency_ms(model, tuple(shape), **settings)
        batched = latency_ms(model, tuple(shape), batch_size=batch_size, **settings)
        where = {"cpu": cpu, "warmup": recipe.latency_warmup}
        new["remeasured"] = {"stored": {k: v for k, v in lat.items() if k != "remeasured"}, **where}
        batched["remeasured"] = where
        _store(Path(results_dir) / r.folder / REMEASURED_FILE, r.key, expected, new, batched)
        out.append(_with_latency(r, new, batched))
        if say:
            say(f"{r.folder}: latency p50 {lat.get('p50')} -> {new['p50']} ms{' (busy)' if new['busy'] else ''}; "
                f"batch {batch_size}: {batched['ms_per_image_p50']} ms per image{' (busy)' if batched['busy'] else ''}")
    return out


def _with_latency(r: Result, new: dict[str, Any], batched: dict[str, Any]) -> Result:
    metrics = copy.deepcopy(r.metrics or {})
    metrics["latency_ms"] = new
    metrics[BATCHED_KEY] = batched
    return dataclasses.replace(r, metrics=metrics, folder=r.folder)


def _store(path: Path, key: str | None, model_sha256: str | None, new: dict[str, Any], batched: dict[str, Any]) -> None:
    from odnbench.store import atomic_write_bytes

    doc = {"schema": 1, "key": key, "model_sha256": model_sha256, "latency_ms": new, BATCHED_KEY: batched}
    atomic_write_bytes(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


def stored_remeasures(results: list[Result], results_dir: str | Path,
                      say: Callable[[str], None] | None = None) -> list[Result]:
    """Copies of ``results`` with the latency an earlier ``--remeasure-latency`` stored beside each
    record (:data:`REMEASURED_FILE`), where its key and model sha256 match the record; the others as
    stored. Read as JSON only, bounded in size and nesting; a file that does not fit is named and ignored."""
    from odnbench.safeio import parse_json, read_regular

    out = []
    for r in results:
        path = Path(results_dir) / r.folder / REMEASURED_FILE if r.ok and r.folder else None
        if path is None or not path.is_file() or path.is_symlink():
            out.append(r)
            continue
        expected = ((r.files or {}).get(r.model_file or "") or {}).get("sha256")
        try:
            doc = parse_json(read_regular(path, MAX_REMEASURED_BYTES), strict=True)
            why = _remeasured_problem(doc, r.key, expected)
        except (OSError, ValueError) as exc:
            why = f"unreadable ({str(exc)[:120]})"
        if why:
            if say:
                say(f"{r.folder}: {REMEASURED_FILE} ignored: {why}")
            out.append(r)
            continue
        out.append(_with_latency(r, doc["latency_ms"], doc[BATCHED_KEY]))
    return out


def _remeasured_problem(doc: Any, key: str | None, model_sha256: str | None) -> str | None:
    if not isinstance(doc, dict) or doc.get("schema") != 1:
        return "not a schema-1 re-measurement"
    if doc.get("key") != key or not model_sha256 or doc.get("model_sha256") != model_sha256:
        return "its key or model sha256 is not this record's"
    for name in ("latency_ms", BATCHED_KEY):
        lat = doc.get(name)
        if not (isinstance(lat, dict) and isinstance(lat.get("remeasured"), dict)
                and all(isinstance(lat.get(k), (int, float)) and not isinstance(lat.get(k), bool)
                        and math.isfinite(lat[k]) and lat[k] >= 0 for k in ("p50", "p90"))):
            return f"its {name} is not a measured latency"
    return None


def with_latency(results: list[Result], results_dir: str | Path, remeasure: bool, batch_size: int | None,
                 say: Callable[[str], None] | None = None) -> list[Result]:
    """The latency a board shows: timed again now (``remeasure``), else an earlier re-measure's stored files."""
    if remeasure:
        return remeasure_latency(results, results_dir, say=say, batch_size=batch_size or LATENCY_BATCH)
    return stored_remeasures(results, results_dir, say=say)

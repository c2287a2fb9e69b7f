"""``odnbench leaderboard verify``: check stored results before anyone ranks them.

For every cell folder, each finding is one line:

- ``result.json``: readable, strict JSON (no NaN/Infinity), conforming to the result schema, its
  folder named after its config's key, and (schema 3) its ``digest`` matching its content, which
  shows any hand edit since it was written, of fields that cannot be re-measured too.
- files: every model file ``files`` records is there with the recorded sha256; an ``ok`` result
  without its model fails, unless no cell of the folder has a model file (records published
  without models, such as ``leaderboards/results/``: said once, the rest checked); a pickled
  ``model.pt`` (odnbench 0.1) is refused, never loaded.
- re-measured from the reloaded model on the cell's data (loaded as the harness loads it, from
  the data folder recorded in the result unless ``data_dir`` is given, never downloading into a
  folder only a record names (:func:`data_source`); the data's fingerprint
  must match the stored one): top-1 and validation top-1 within ``tolerance``
  points; parameters, MACs, FLOPs and the test-split size exactly; saved size (MB) and fp32 size
  (MiB) within a few bytes; the depth a DepthNet states. Each artifact model (``artifacts``, e.g.
  ODN's ``depth-K``) is reloaded and its parameters and size compared with those recorded for it.
- re-timed: latency p50 and throughput (the fastest of several windows), reported as the ratio
  re-measured / stored. Timings depend on the machine and its load, so a ratio is a note; it is a
  problem only when absurd: the stored value claims more than ``TIMING_FACTOR`` times better than
  anything re-measured on the same kind of device (load can slow a model down, never speed it up).
- stale temporary files (``.NAME.XXXX.tmp``) from interrupted writes, and ``result.json.corrupt-N``
  files set aside by a run, are listed as notes.

- strays: a folder that looks like a cell but is not the one its record names (a copy, a backup,
  a renamed or planted folder, a symbolic link) is a problem: it is never read as a cell, counted
  on a board or used as a dependency (:func:`odnbench.store.cell_problem`).
- signature: with ``ODNBENCH_SIGNING_KEY`` set, each record must carry a good HMAC signature made
  with that key (``unsigned`` and ``bad signature`` are problems; ``good signature`` a note).

What cannot be checked is said in the summary: the recorded config and the cost of obtaining a
model (epochs, sample-steps, training seconds), ``method_info``,
``env`` and the run's times were observed once, when the cell ran. The digest is unkeyed: whoever
edits a record can recompute it, so a forged record (a model trained another way, relabelled,
every hash recomputed) passes every check above. What can tell: ``--rerun`` makes every check
above, then trains the cell again from its recorded config (checked by
:func:`odnbench.plan.check_config` first) and compares (:func:`rerun`); and a signature made with a
key the forger does not hold. Each record's line and the summary list the checks it passed
(:data:`CHECKS`).
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from odnbench.errors import OdnbenchError
from odnbench.result import Result, plain_file_name, schema_problems
from odnbench.store import (
    LEGACY_MODEL_FILE,
    MAX_RECORD_BYTES,
    MODEL_FILE,
    RESULT_FILE,
    ResultStore,
    UnsafePathError,
    cell_key,
    cell_problem,
    is_real_dir,
    parse_json,
    read_regular,
    result_digest,
    signature_status,
    signing_key,
)

TOP1_TOLERANCE = 0.01
#: A model saved on a GPU pickles "cuda:0" as each tensor's location and one re-measured on the CPU
#: "cpu": a few bytes per tensor. 2 kB absorbs that; a different architecture differs far more.
SIZE_TOLERANCE_MB = 0.002
SIZE_TOLERANCE_MIB = 1e-6
#: A stored latency (throughput) this many times better than the best re-timed on the same device type
#: is a problem (an edited number): CPUs of one kind differ by a few times. Worse-than-now is only a note.
TIMING_FACTOR = 20.0
TIMING_ATTEMPTS = 3

NOT_CHECKABLE = ("not re-measurable: cost (epochs, sample-steps, training seconds), the recorded config (how the "
                 "model was trained), method_info, env, wall_seconds and "
                 "finished_at were observed once, when the cell ran. The digest is unkeyed: a forged record "
                 "(a model trained another way, relabelled, every hash recomputed) passes these checks; "
                 "`leaderboard verify --rerun` trains a cell again from its config and compares, and records "
                 "signed with ODNBENCH_SIGNING_KEY show edits to anyone holding the key")
#: Top-1 points a --rerun may differ by (CPU training is deterministic; another device is not).
RERUN_TOLERANCE = 0.01
#: The largest --tolerance (points of top-1): beyond it nothing would ever differ.
MAX_TOLERANCE = 100.0


@dataclass
class CellCheck:
    folder: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reevaluated: bool = False
    #: The checks this record passed, in order (:data:`CHECKS` names them): what its line and the
    #: summary say, so that what was not checked is as visible as what was.
    passed: list[str] = field(default_factory=list)
    rerun: bool = False  # checked by --rerun: a PROBLEM line lists what it passed too

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        if self.problems:
            return f"PROBLEM  {self.folder}: " + "; ".join(self.problems) + (
                f" (passed: {', '.join(self.passed)})" if self.passed and self.rerun else "")
        return f"ok       {self.folder}: " + "; ".join(self.notes) + (
            f"; passed: {', '.join(self.passed)}" if self.passed else "")


@dataclass
class VerifyReport:
    results_dir: Path
    cells: list[CellCheck]
    notes: list[str] = field(default_factory=list)  # about the folder itself (stale temporary files)

    @property
    def problems(self) -> list[CellCheck]:
        return [c for c in self.cells if not c.ok]

    def summary(self) -> str:
        ok = [c for c in self.cells if c.ok]
        again = sum(c.reevaluated for c in ok)
        counts = {check: sum(check in c.passed for c in self.cells) for check in CHECKS}
        passed = ", ".join(f"{check} {n}/{len(self.cells)}" for check, n in counts.items()
                           if n or check in ("schema", "model files", "re-measured"))
        return (f"verified {len(self.cells)} results in {self.results_dir}: {len(ok)} ok ({again} re-evaluated, "
                f"{len(ok) - again} schema only), {len(self.problems)} with problems"
                + (f"; passed: {passed}" if self.cells else ""))


#: Every check a record can pass, in the order verify makes them.
CHECKS = ("schema", "digest", "signature", "model files", "re-measured", "rerun")


def check_schema(raw, folder_name: str) -> list[str]:
    """Problems with one stored result.json (parsed, unchecked) and its folder's key."""
    problems = schema_problems(raw)
    if problems and problems[0].startswith(("result.json holds", "status is")):
        return problems
    config = raw.get("config")
    if isinstance(config, dict):
        key = cell_key(config)
        if not folder_name.endswith(f"-{key}"):
            problems.append(f"folder name does not end with the config's key -{key} (config edited or folder renamed)")
        elif raw.get("key") not in (None, key):
            problems.append(f"stored key {raw.get('key')!r} differs from the config's key {key!r}")
        else:
            stray = cell_problem(folder_name, raw)
            if stray:
                problems.append(f"stray: {stray}")
    else:
        problems.append("config is missing")
    return problems


def digest_problem(raw: dict) -> str | None:
    if isinstance(raw.get("digest"), str) and raw["digest"] != result_digest(raw):
        return "result.json was edited after it was written (its digest does not match its content)"
    return None


def check_tolerance(tolerance, what: str = "--tolerance") -> float:
    """A finite number of points in 0..MAX_TOLERANCE (nan or inf would disable the check silently)."""
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not math.isfinite(tolerance) \
            or not 0 <= tolerance <= MAX_TOLERANCE:
        raise OdnbenchError(f"{what} {tolerance!r} is not allowed; allowed: a finite number of top-1 points, "
                            f"0 <= {what.lstrip('-')} <= {MAX_TOLERANCE:g}")
    return float(tolerance)


def _temp_notes(store: ResultStore, folder: Path) -> list[str]:
    notes = [f"stale temporary file {p.name} (left by an interrupted write; safe to delete)"
             for p in store.stale_temp_files(folder)]
    notes += [f"{p.name} (an unreadable result.json a run set aside)" for p in sorted(folder.glob(f"{RESULT_FILE}.corrupt-*"))]
    return notes


def data_dir_for(result: Result, data_dir: Path | None) -> tuple[Path, str | None]:
    """Where to load a result's dataset from: ``data_dir`` when given, else the folder the result
    was run with (stored in ``data.data_dir``) when it exists here, else the default folder.
    Returns the folder and a note when the recorded one could not be used."""
    if data_dir is not None:
        return Path(data_dir), None
    from odnbench.runtime import default_data_dir

    recorded = (result.data or {}).get("data_dir") if isinstance(result.data, dict) else None
    if isinstance(recorded, str) and recorded and Path(recorded).is_dir():
        return Path(recorded), None
    default = default_data_dir()
    if isinstance(recorded, str) and recorded:
        if Path(recorded).absolute() == Path(default).absolute():
            return default, (f"the recorded data folder {recorded} (the default) does not exist here; datasets "
                             "that need files are looked for there (pass --data-dir to point elsewhere)")
        return default, f"the recorded data folder {recorded} is not here; used {default}"
    return default, None


def data_source(result: Result, data_dir: Path | None, download: bool) -> tuple[Path, bool, str | None]:
    """:func:`data_dir_for`, and whether datasets may be downloaded there: a folder named by a record
    (``data.data_dir``: anyone who can write the record chose it) is only ever read, never written,
    unless it is the default data folder; ``--data-dir`` and the default folder download as asked."""
    from odnbench.runtime import default_data_dir

    folder, note = data_dir_for(result, data_dir)
    chosen = data_dir is not None or Path(folder).absolute() == Path(default_data_dir()).absolute()
    if not chosen and download:
        note = (f"{note + '; ' if note else ''}the recorded data folder {folder} is read only (a record names it; "
                "nothing is downloaded there: pass --data-dir to download)")
    return Path(folder), download and chosen, note


def verify(results_dir, *, data_dir: Path | None = None, download: bool = True, device=None,
           tolerance: float = TOP1_TOLERANCE, schema_only: bool = False,
           only: set[str] | None = None) -> VerifyReport:
    """Check every cell folder of ``results_dir`` (``only``: those folder names). A folder whose ok
    records have none of their model files (records published without models, such as
    ``leaderboards/results/``) is said so once and checked as far as it can be: schema, keys,
    digests, signatures, and the checksum of any file that is there."""
    results_dir = Path(results_dir)
    tolerance = check_tolerance(tolerance)
    if not results_dir.is_dir():
        raise OdnbenchError(f"results folder {results_dir} does not exist")
    store = ResultStore(results_dir)
    checks: dict[str, CellCheck] = {}
    to_reevaluate: list[tuple[Path, Result, CellCheck]] = []
    key = signing_key()
    every = store.folders(links=True)
    folders = [f for f in every if only is None or f.name in only]
    without_models = not schema_only and _no_model_files(every)  # of the whole folder, not just those chosen
    for folder in folders:
        check = checks.setdefault(folder.name, CellCheck(folder.name))
        if not is_real_dir(folder):
            check.problems.append("a symbolic link: never followed inside a results folder (it could lead "
                                  "anywhere); not a cell, not counted")
            continue
        path = folder / RESULT_FILE
        try:
            raw = parse_json(read_regular(path, MAX_RECORD_BYTES), strict=True)
        except FileNotFoundError:
            check.problems.append(f"model file without {RESULT_FILE}")
            continue
        except UnsafePathError as exc:
            check.problems.append(str(exc).replace(str(folder) + "/", ""))
            continue
        except (OSError, UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
            check.problems.append(f"{RESULT_FILE} is not readable JSON ({type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:160]})")
            continue
        check.problems += check_schema(raw, folder.name)
        if check.problems:
            continue
        result = Result.from_dict(raw)
        check.notes.append("schema ok")
        check.passed.append("schema")
        edited = digest_problem(raw)  # reported, and the cell is still re-measured: say what changed
        if edited:
            check.problems.append(edited)
        elif isinstance(raw.get("digest"), str):
            check.passed.append("digest")
        if key is not None:
            signed = signature_status(raw, key)
            (check.notes if signed == "good signature" else check.problems).append(
                signed if signed == "good signature" else f"{signed} (ODNBENCH_SIGNING_KEY is set: every record "
                                                          "written under it carries its HMAC)")
            if signed == "good signature":
                check.passed.append("signature")
        elif raw.get("signature") is not None:
            check.notes.append("signed (set ODNBENCH_SIGNING_KEY to check the signature)")
        if not result.ok:
            check.notes.append("failed cell (recorded as failed; nothing to re-measure)")
        elif schema_only:
            check.notes.append("schema only (--schema-only)")
        elif without_models:
            present = _file_problems(folder, result, present_only=True)
            check.problems += present
            check.notes.append("schema only (not re-measured: see the note on model files)")
        else:
            missing = _file_problems(folder, result)
            check.problems += missing
            if not missing:
                check.passed.append("model files")
                to_reevaluate.append((folder, result, check))
        check.notes += _temp_notes(store, folder)
    if to_reevaluate:
        _reevaluate_all(to_reevaluate, data_dir=data_dir, download=download, device=device, tolerance=tolerance)
    report = VerifyReport(results_dir, list(checks.values()))
    report.notes += _temp_notes(store, results_dir)
    if without_models:
        report.notes.append(f"no model files in {results_dir} (records published without their models): schema, "
                            "keys, digests, signatures and the checksums of the files present were checked; no model "
                            "was re-measured (run verify where the models are to re-measure them)")
    if not schema_only:
        report.notes.append(NOT_CHECKABLE)
    return report


def _no_model_files(folders: list[Path]) -> bool:
    """True when no cell folder holds a model file at all (records published without models)."""
    from odnbench.store import is_real_file

    cells = [f for f in folders if is_real_dir(f)]
    return bool(cells) and not any(is_real_file(f / name) for f in cells for name in (MODEL_FILE, LEGACY_MODEL_FILE)) \
        and not any(is_real_file(p) for f in cells for p in f.glob("*.safetensors"))


def _file_problems(folder: Path, result: Result, present_only: bool = False) -> list[str]:
    """The model files an ok result needs: present, never pickled, with the recorded checksums
    (``present_only``: the checksums of those that are there)."""
    from odnbench import modelio

    if present_only:
        return [problem for name, entry in sorted((result.files or {}).items())
                if plain_file_name(name) and (folder / name).exists()
                for problem in _checksum_problem(folder / name, entry)]

    model_file = result.model_file
    if model_file is None or model_file == LEGACY_MODEL_FILE or result.schema < 3:
        from odnbench.store import is_real_file

        legacy = folder / LEGACY_MODEL_FILE
        if is_real_file(legacy):
            with open(legacy, "rb") as f:  # the first bytes say what it is; it is never unpickled
                head = f.read(4)
            return [modelio.legacy_reason(head, LEGACY_MODEL_FILE)
                    or f"{LEGACY_MODEL_FILE} is not in the current model format; it is not loaded"]
        return [f"the model file is missing: an ok result (schema {result.schema}) must keep its {MODEL_FILE} to be "
                "re-evaluated (for records published without models, use --schema-only)"]
    problems = []
    for name, entry in sorted((result.files or {}).items()):
        if not plain_file_name(name):
            problems.append(f"files names {name!r:.60}, not a file of this cell")
            continue
        try:
            modelio.read_bytes(folder / name, entry["sha256"])
        except modelio.ModelFileError as exc:
            missing = not (folder / name).exists()
            problems.append(f"{name} is missing: an ok result must keep its model files (for records published "
                            "without models, use --schema-only)" if missing else str(exc))
    return problems


def _checksum_problem(path: Path, entry) -> list[str]:
    from odnbench import modelio

    try:
        modelio.read_bytes(path, entry.get("sha256") if isinstance(entry, dict) else None)
    except modelio.ModelFileError as exc:
        return [str(exc)]
    return []


def _reevaluate_all(items, *, data_dir, download, device, tolerance) -> None:
    from odnbench.registry import get_registry
    from odnbench.runtime import pick_device

    registry = get_registry()  # the datasets, to load each cell's test split as the harness did
    device = device or pick_device("cpu")
    # Same dataset and seed next to each other: the harness's data cache holds one at a time.
    items = sorted(items, key=lambda it: (it[1].config["dataset"], it[1].config["seed"], it[0].name))
    for folder, result, check in items:
        try:
            found = reevaluate(folder, result, data_dir=data_dir, download=download, device=device,
                               registry=registry, tolerance=tolerance, notes=check.notes)
            check.problems += found
            check.reevaluated = True
            if not found:
                check.passed.append("re-measured")
        except OdnbenchError as exc:
            check.problems.append(f"could not re-evaluate: {' '.join(str(exc).split())[:300]}")
        except Exception as exc:  # an unloadable or wrong model file is a finding, not a crash
            check.problems.append(f"could not re-evaluate {result.model_file}: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:300]}")


def reevaluate(folder: Path, result: Result, *, data_dir, download, device, registry, tolerance,
               notes: list[str]) -> list[str]:
    """Reload the exported model, measure it again and compare with what result.json says."""

    from odnbench import metrics
    from odnbench.depthnet import DepthNet
    from odnbench.execution import Execution
    from odnbench.recipes import Recipe
    from odnbench.runtime import DATA_CACHE
    from odnbench.store import load_model

    config = result.config
    stored = cast(dict[str, Any], result.metrics)  # re-evaluated: an ok result, which has metrics
    recipe = Recipe.from_dict(config["recipe"])
    data_dir, download, note = data_source(result, data_dir, download)
    try:
        splits = DATA_CACHE.get(registry, config["dataset"], data_dir, download, config["seed"], recipe, device)
    except OdnbenchError as exc:  # where the data were looked for matters only when they were not found
        raise OdnbenchError(f"{exc}{f' ({note})' if note else ''}") from None
    problems = []
    stored_fp = (result.data or {}).get("fingerprint")
    if stored_fp is not None and stored_fp != splits.fingerprint:
        problems.append(f"the data differ from those the result was measured on (fingerprint {splits.fingerprint[:19]}…, "
                        f"stored {stored_fp[:19]}…): other files under --data-dir?{f' ({note})' if note else ''}")
    model_file = cast(str, result.model_file)  # an ok result names its model file
    entry = (result.files or {}).get(model_file) or {}
    model = load_model(folder / model_file, device=device, expected_sha256=entry.get("sha256"))
    execution = Execution.for_recipe(recipe, device)  # the precision and memory format it was measured in
    model = execution.model(model).eval()
    info = splits.info
    shape = (info.channels, info.image_size, info.image_size)
    with metrics.torch_threads(recipe.threads), execution.activate():
        top1 = metrics.top1(model, splits.test.x, splits.test.y, recipe.eval_batch_size, execution=execution)
        val_top1 = metrics.top1(model, splits.val.x, splits.val.y, recipe.eval_batch_size, execution=execution)
        flops = metrics.spent_flops(model, splits, recipe, execution=execution)  # an early-exit net's: a mean
    measured: dict[str, Any] = {"params": metrics.count_params(model), "flops": flops, "macs": flops // 2,
                "test_examples": len(splits.test)}
    for key, value in measured.items():
        if stored.get(key) is not None and stored[key] != value:
            problems.append(f"metrics.{key} stored {stored[key]:,} but re-measured {value:,}")
    for key, value in (("top1", top1), ("val_top1", val_top1)):
        if abs(value - stored[key]) > tolerance:
            problems.append(f"metrics.{key} stored {stored[key]:.4f} but re-measured {value:.4f} on {device.type} "
                            f"(differs by {abs(value - stored[key]):.4f} > {tolerance:g})")
    size_mb, size_mib = metrics.saved_size_mb(model), metrics.tensor_size_mib(model)
    if abs(size_mb - stored["size_mb"]) > SIZE_TOLERANCE_MB:
        problems.append(f"metrics.size_mb stored {stored['size_mb']:.6f} but re-measured {size_mb:.6f}")
    if abs(size_mib - stored["size_mib"]) > SIZE_TOLERANCE_MIB:
        problems.append(f"metrics.size_mib stored {stored['size_mib']:.6f} but re-measured {size_mib:.6f}")
    if isinstance(model, DepthNet) and result.facts.depth is not None and result.facts.depth != model.depth:
        problems.append(f"facts.depth is {result.facts.depth} but the model has {model.depth} blocks")
    notes.append(f"re-evaluated on {device.type}: top-1 {top1:.4f} (stored {stored['top1']:.4f}), "
                 f"params {measured['params']:,}, size {size_mb:.6f} MB, MACs {measured['macs']:,}"
                 + (" match" if not problems else ""))
    with execution.activate():
        problems += _check_timings(model, shape, recipe, result, device, notes, execution)
    problems += _check_other_files(folder, result, device, notes)
    return problems


def _check_timings(model, shape, recipe, result: Result, device, notes: list[str], execution) -> list[str]:
    """Re-time batch-1 latency and throughput and compare with the stored values.

    Load on a machine only ever makes a model look slower, and by a lot (a descheduled window: a
    stored smoke-preset latency was seen 1,000 times its unloaded value on a busy 2-core machine). So
    the re-timing keeps the fastest of several windows (retried up to ``TIMING_ATTEMPTS`` times), the
    ratio is reported as a note, and it is a problem only when it is absurd: the stored value claims
    more than ``TIMING_FACTOR`` times better than anything re-measured on the same kind of device
    (an edited number; no load makes a model faster). A stored value far worse than now is a note.
    """
    import torch

    from odnbench import metrics

    stored = cast(dict[str, Any], result.metrics)
    # With the thread count the stored numbers were measured with (a different one can be far slower:
    # several OpenMP threads on a busy machine spin-wait on each other).
    threads = stored["latency_ms"].get("threads") or recipe.threads
    windows, iters = max(5, recipe.latency_windows), max(5, recipe.latency_iters)
    throughput = stored.get("throughput")
    checks = {"latency p50": (1, stored["latency_ms"]["p50"] / 1000, stored["latency_ms"].get("device"))}
    if isinstance(throughput, dict) and isinstance(throughput.get("images_per_s"), (int, float)) \
            and throughput["images_per_s"] > 0:
        batch = int(throughput.get("batch_size") or recipe.throughput_batch)
        checks["throughput"] = (batch, batch / throughput["images_per_s"], throughput.get("device"))
    problems, ratios = [], []
    for what, (batch, then, stored_device) in checks.items():  # ``then``: stored seconds per call
        x = execution.input(torch.randn((batch, *shape), device=device))
        best = math.inf
        for _ in range(TIMING_ATTEMPTS):
            with metrics.torch_threads(threads), execution.autocast():
                best = min(best, min(metrics.timed_windows(model, x, 2, windows, iters)))
            if best <= TIMING_FACTOR * then:
                break
        now = batch / best if what == "throughput" else 1000 * best
        was = batch / then if what == "throughput" else 1000 * then
        ratios.append(f"{what} ×{now / was:.2f}")
        same_device = (stored_device or (result.env or {}).get("device")) == device.type
        if same_device and best > TIMING_FACTOR * then:
            problems.append(f"{what} re-timed {now:.4g} at best but stored {was:.4g} on {device.type}: the stored "
                            f"value is more than {TIMING_FACTOR:g}x better than anything re-measured, which no "
                            "machine difference explains (edited?)")
    notes.append("re-timed / stored (fastest window): " + ", ".join(ratios)
                 + ("" if (result.env or {}).get("device") == device.type else " (stored on another device type)"))
    return problems


def _check_other_files(folder: Path, result: Result, device, notes: list[str]) -> list[str]:
    """Every artifact of the result (``ctx.save_model``) reloads, without any plugin, and has the
    parameters and saved size recorded for it when it was stored."""
    from odnbench import metrics
    from odnbench.store import load_model

    problems, checked = [], 0
    for name, entry in sorted(result.artifacts.items()):
        if entry.get("kind") != "model" or not plain_file_name(entry.get("file")):
            continue
        model = load_model(folder / entry["file"], device=device, expected_sha256=entry.get("sha256"))
        checked += 1
        params, size_mb = metrics.count_params(model), metrics.saved_size_mb(model)
        if isinstance(entry.get("params"), int) and entry["params"] != params:
            problems.append(f"artifact {name} ({entry['file']}): recorded {entry['params']:,} params but the file has "
                            f"{params:,}")
        if isinstance(entry.get("size_mb"), (int, float)) and abs(entry["size_mb"] - size_mb) > SIZE_TOLERANCE_MB:
            problems.append(f"artifact {name} ({entry['file']}): recorded {entry['size_mb']} MB but re-measured "
                            f"{size_mb:.6f}")
    if checked:
        notes.append(f"{checked} other model file(s) reloaded and match")
    return problems


# ------------------------------------------------------------------------------------------ rerun

def rerun(results_dir, cells: Sequence[str] = (), *, data_dir: Path | None = None, download: bool = True, device=None,
          tolerance: float = RERUN_TOLERANCE, progress=None) -> VerifyReport:
    """Train each chosen cell again from its recorded config, through the normal harness, in a
    temporary results folder (its dependencies' folders copied in), and compare: top-1 within
    ``tolerance`` points; params, MACs, FLOPs and size exactly (they are deterministic). What the
    digest cannot show (a record whose config does not describe how its model was trained) shows
    here. ``cells``: folder names or keys (default: every ok cell)."""
    import shutil

    from odnbench.plan import Cell, check_config
    from odnbench.progress import Progress
    from odnbench.registry import get_registry
    from odnbench.runtime import pick_device

    results_dir = Path(results_dir)
    tolerance = check_tolerance(tolerance)
    if not results_dir.is_dir():
        raise OdnbenchError(f"results folder {results_dir} does not exist")
    store = ResultStore(results_dir)
    found = {folder.name: Result.from_dict(raw) for folder, raw in store.raw()
             if isinstance(raw, dict) and raw.get("status") == "ok" and not schema_problems(raw)}
    chosen = []
    for want in cells or list(found):
        names = [n for n in found if n == want or n.endswith(f"-{want}")]
        if not names:
            raise OdnbenchError(f"--rerun {want}: no finished cell of {results_dir} has that folder name or key "
                                f"(finished: {', '.join(sorted(found))[:300] or 'none'})")
        chosen += names
    registry = get_registry()
    device = device or pick_device("cpu")
    progress = progress or Progress(quiet=True)
    chosen = list(dict.fromkeys(chosen))
    # Every check plain verify makes, then the rerun on top: a swapped model file fails here too.
    report = verify(results_dir, data_dir=data_dir, download=download, device=device, tolerance=tolerance,
                    only=set(chosen))
    checks = {c.folder: c for c in report.cells}
    for name in chosen:
        old = found[name]
        check = checks.setdefault(name, CellCheck(name))
        check.rerun = True
        try:  # a record is data: its config must pass what compare checks before anything trains on it
            check_config(registry, old.config, "its recorded config")
        except OdnbenchError as exc:
            check.problems.append(f"not rerun: {exc}")
            continue
        with tempfile.TemporaryDirectory(prefix="odnbench-rerun-") as tmp:
            missing = False
            for dep_key in (old.requires or {}).values():
                dep = store.find(dep_key)
                if dep is None:
                    check.problems.append(f"cannot rerun: its dependency {dep_key} is not in {results_dir}")
                    missing = True
                    break
                shutil.copytree(dep, Path(tmp) / dep.name, symlinks=True)
            if missing:
                continue
            cell = Cell(dict(old.config), requires=dict(old.requires or {}), defaults=dict(old.defaults or {}))
            folder, allowed, _ = data_source(old, data_dir, download)
            try:
                new = _run_again(registry, cell, Path(tmp), folder, allowed, device, progress)
            except OdnbenchError as exc:
                check.problems.append(f"could not rerun: {' '.join(str(exc).split())[:300]}")
                continue
            found_problems = compare_rerun(old, new, tolerance, device.type, check.notes)
            check.problems += found_problems
            check.reevaluated = True
            if not found_problems:
                check.passed.append("rerun")
    report.cells = [checks[name] for name in chosen]
    report.notes.insert(0, f"rerun on {device.type} from each recorded config, after every check plain verify makes; "
                           f"top-1 tolerance {tolerance:g} points")
    return report


def _run_again(registry, cell, root: Path, data_dir: Path, download: bool, device, progress) -> Result:
    from odnbench import harness

    return harness.run_cell(registry, cell, root, data_dir=data_dir, download=download, device=device,
                            progress=progress)


def compare_rerun(old: Result, new: Result, tolerance: float, device_type: str, notes: list[str]) -> list[str]:
    """What a rerun of a record's config measured that the record does not say."""
    if not new.ok:
        return [f"the rerun from its recorded config failed: {' '.join(str(new.error).split())[:300]}"]
    problems = []
    was, now = cast(dict[str, Any], old.metrics), cast(dict[str, Any], new.metrics)  # both ok: both measured
    for key in ("params", "macs", "flops", "test_examples"):
        if was.get(key) is not None and was[key] != now.get(key):
            problems.append(f"rerun from its config measured metrics.{key} {now.get(key):,}, stored {was[key]:,}")
    for key, tol in (("size_mb", SIZE_TOLERANCE_MB), ("size_mib", SIZE_TOLERANCE_MIB)):
        if abs(was[key] - now[key]) > tol:
            problems.append(f"rerun from its config measured metrics.{key} {now[key]:.6f}, stored {was[key]:.6f}")
    for key in ("top1", "val_top1"):
        if abs(was[key] - now[key]) > tolerance:
            problems.append(f"rerun from its config reached metrics.{key} {now[key]:.4f} on {device_type}, stored "
                            f"{was[key]:.4f} (differs by {abs(was[key] - now[key]):.4f} > {tolerance:g}): the record's "
                            "config does not describe how its model was trained")
    old_cost, new_cost = old.cost or {}, new.cost or {}
    if isinstance(old_cost.get("epochs"), (int, float)) and old_cost.get("epochs") != new_cost.get("epochs"):
        problems.append(f"rerun from its config trained {new_cost.get('epochs')} epochs, stored {old_cost['epochs']}")
    notes.append(f"rerun from its config: top-1 {now['top1']:.4f} (stored {was['top1']:.4f}), params {now['params']:,}, "
                 f"MACs {now['macs']:,}, {new_cost.get('epochs')} epochs" + ("" if problems else " match"))
    return problems

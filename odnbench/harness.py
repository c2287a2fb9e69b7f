"""The harness: run each planned cell the same way, measure the exported model and store the result.

A cell is an independent, idempotent unit: its canonical config goes in, a result folder comes
out (see :mod:`odnbench.store`). Finished cells are skipped on rerun (resume); a failed cell is
stored as failed and the grid goes on. Planning lives in :mod:`odnbench.plan`; where cells run
(this process, worker processes, a Ray cluster) in :mod:`odnbench.executors`, every one of them
through :func:`run_cell`.
"""

from __future__ import annotations

import json
import math
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from odnbench.contract import Dependency, MethodContext, MethodOutput
from odnbench.errors import DivergedError, MissingDependencyError, OdnbenchError, PluginError
from odnbench.executors import SERIAL, RunSpec, SerialExecutor
from odnbench.plan import Cell, Grid, method_params
from odnbench.progress import Progress
from odnbench.recipes import Recipe
from odnbench.registry import Registry
from odnbench.result import Facts, Result, normalise_reference, plain_file_name
from odnbench.runtime import DATA_CACHE, backbone_builder, pick_device, seed_everything
from odnbench.store import MODEL_FILE, RESULT_FILE, CellLock, CorruptResultError, ResultStore


def load_dependencies(cell: Cell, store: ResultStore, grid_cells: dict[str, Cell] | None) -> dict[str, Dependency]:
    deps = {}
    for name, key in cell.requires.items():
        found = store.find(key)
        result = store.read(found) if found else None
        if result is None or not result.ok:
            dep_method = grid_cells[key].config["method"] if grid_cells and key in grid_cells else name
            c = cell.config
            needs = (f"{c['method']} needs a finished '{dep_method}' result for {c['dataset']}/{c['backbone']}/seed "
                     f"{c['seed']}/preset {c['preset']} (cell key {key})")
            if result is not None:  # it ran and failed: rerunning the same command would fail the same way
                error = " ".join(str(result.error or "no error recorded").split())
                raise MissingDependencyError(
                    f"{needs}, which failed: {error[:400]}{'…' if len(error) > 400 else ''} Fix that, then rerun "
                    f"(finished cells are kept; the failed ones run again)."
                )
            raise MissingDependencyError(
                f"{needs}, which has no stored result in {store.root}. Run "
                f"`odnbench compare --method {dep_method} --method {c['method']} --dataset {c['dataset']} "
                f"--backbone {c['backbone']} --seed {c['seed']} --preset {c['preset']}` with the same --set "
                f"options (it orders them), or run the '{dep_method}' cell first."
            )
        model_file = result.model_file if plain_file_name(result.model_file) else MODEL_FILE
        deps[name] = Dependency(result=result, model_path=found / model_file)
    return deps


def run_cell(registry: Registry, cell: Cell, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, progress: Progress | None = None, grid_cells: dict[str, Cell] | None = None,
             executor: dict | None = None) -> Result:
    """Run one cell and store its result (ok or failed). Never raises for a method's failure;
    KeyboardInterrupt propagates and leaves no partial result behind. ``executor`` describes
    where the cell ran (stored in the result's env; default: alone, in this process)."""
    import torch

    from odnbench import envinfo, metrics
    from odnbench.execution import Execution
    from odnbench.trainer import CostMeter, Trainer

    store = ResultStore(results_dir)
    config = cell.config
    device = device or pick_device()
    out_dir = store.cell_dir(config)
    progress = progress or Progress()
    method = registry.method(config["method"])
    plugin = registry.owner.get(("method", config["method"]), "?")
    recipe = Recipe.from_dict(config["recipe"])
    cost = CostMeter()
    result = _blank_result(registry, cell)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    _tidy_cell_folder(store, out_dir, progress)
    before = {p.name: p.stat().st_mtime_ns for p in store.model_files(out_dir)}
    execution = None
    try:
        result.reference = _finite_or_null(_reference(method, config), "reference", [])
        execution = Execution.for_recipe(recipe, device)  # precision, TF32, memory format, compile
        with metrics.torch_threads(recipe.threads) as threads, execution.activate():
            if cell.error:
                raise PluginError(cell.error)
            deps = load_dependencies(cell, store, grid_cells)
            for dep in deps.values():  # everything a model needed is part of what it cost
                cost.add_dependency(dep.key, dep.result.method, dep.result.cost or {})
            seed_everything(config["seed"])
            splits = DATA_CACHE.get(registry, config["dataset"], data_dir, download, config["seed"], recipe, device)
            result.data = {"sizes": splits.sizes(), "split_rule": splits.info.split_rule,
                           "augment": splits.info.augment, "normalisation": [splits.info.mean, splits.info.std],
                           "fingerprint": splits.fingerprint,
                           "data_dir": str(Path(data_dir).resolve())}  # where verify reloads it from
            out_dir.mkdir(parents=True, exist_ok=True)
            trainer = Trainer(splits, recipe, device, progress, cost, config["seed"], execution=execution)
            ctx = MethodContext(
                method=config["method"], params=method_params(method, config["params"]), splits=splits,
                build_backbone=backbone_builder(registry, config["backbone"], splits.info, recipe), recipe=recipe,
                seed=config["seed"], device=device, progress=progress, cost=cost, trainer=trainer,
                workdir=out_dir, dependencies=deps, config=config,
            )
            output = method.run(ctx)
            if not isinstance(output, MethodOutput) or not isinstance(output.model, torch.nn.Module):
                raise PluginError(
                    f"method {config['method']!r} (plugin {plugin!r}) returned {type(output).__name__}; "
                    "run() must return odnbench.MethodOutput(model=<torch.nn.Module>, info={...})"
                )
            model = execution.model(output.model).eval()
            example = _check_exported(model, splits, config["method"], plugin, execution)
            result.metrics = metrics.measure(model, splits, recipe, execution=execution)
            result.method_info = _jsonable(output.info or {}, config["method"], plugin, progress)
            result.facts = _facts(output, model, trainer, config["method"], plugin, progress)
            result.curve = _curve(output, splits, recipe, execution, config["method"], plugin, progress)
            # Stored without pickling, and checked to reload into the same outputs (odnbench.modelio).
            store.save_model(model, out_dir, example=example)
            result.model_file = store.model_path(out_dir).name
            # Checksums of the model files this run wrote (model.safetensors, ODN's depth-K files), not
            # of files an earlier, unfinished attempt left behind.
            result.files = {name: entry for name, entry in store.checksums(out_dir).items()
                            if name == result.model_file or before.get(name) != (out_dir / name).stat().st_mtime_ns}
            result.status = "ok"
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # sys.exit() in a method must not end the grid without a record
        result.error = (f"method {config['method']!r} (plugin {plugin!r}) called sys.exit({exc.code!r}); "
                        "a method must return a MethodOutput or raise an exception")
        result.traceback = traceback.format_exc(limit=8)
    except Exception as exc:  # a failed cell is recorded; the grid goes on
        result.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OdnbenchError):
            result.traceback = traceback.format_exc(limit=8)
            result.error = f"method {config['method']!r} (plugin {plugin!r}) raised {result.error}"
    if not result.ok:
        result.metrics, result.files, result.model_file, result.curve = None, None, None, None
    result.cost = cost.as_dict(device.type)
    result.wall_seconds = round(time.perf_counter() - started, 3)
    result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result.env = envinfo.fingerprint(device)
    result.env["threads"] = threads  # what the cell ran with (recipe.threads, else this process's count)
    result.env["executor"] = dict(executor or SERIAL)
    if execution is not None:
        result.env.update(execution.env())
    try:
        store.write(result)
    except ValueError as exc:  # a non-finite number slipped through: store the cell as failed, never invalid JSON
        result.status, result.metrics, result.files, result.model_file = "failed", None, None, None
        result.method_info, result.facts, result.reference = {}, Facts(), None
        result.error = f"the result could not be stored as strict JSON ({exc})"
        store.write(result)
    return result


def _blank_result(registry: Registry, cell: Cell) -> Result:
    config = cell.config
    return Result(status="failed", key=cell.key, config=config,
                  plugin=registry.owner.get(("method", config["method"]), "?"), requires=dict(cell.requires),
                  defaults=dict(cell.defaults), provenance=dict(getattr(cell, "provenance", None) or {}) or None)


def record_failure(registry: Registry, cell: Cell, results_dir: Path, error: str, *, device=None,
                   executor: dict | None = None, traceback_text: str | None = None) -> Result:
    """Store a failed result for a cell that could not report one itself (its worker died)."""
    from odnbench import envinfo

    result = _blank_result(registry, cell)
    result.error, result.traceback = error, traceback_text
    result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result.env = {**envinfo.fingerprint(device or pick_device("cpu")), "executor": dict(executor or SERIAL)}
    ResultStore(results_dir).write(result)
    return result


def _tidy_cell_folder(store: ResultStore, out_dir: Path, progress: Progress) -> None:
    """Before a cell runs: an unreadable result.json (a truncated write, a bad edit) is moved aside,
    with a warning, rather than stopping every later run; stale temporary files are removed."""
    try:
        store.read(out_dir)
    except CorruptResultError as exc:
        moved = store.set_aside(out_dir)
        progress.warn(f"{exc}; moved it to {moved.name} and running the cell again")
    for p in store.clean_stale_temp_files(out_dir):
        progress.line(f"removed {p.name}, left in {out_dir.name} by an interrupted write")


def _check_exported(model, splits, method: str, plugin: str, execution):
    """The exported model must give one finite logit per class of the dataset (run as it is measured:
    the cell's precision and memory format); returns the input batch used (a few test images), which
    the store then uses to check the saved model reloads faithfully."""
    import torch

    classes = splits.info.num_classes
    x = splits.test.x[: min(8, len(splits.test))]
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise DivergedError(f"method {method!r} (plugin {plugin!r}) exported a model with NaN or infinite "
                                f"values in {name}")
    with torch.inference_mode(), execution.autocast():
        out = model(execution.input(x))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (len(x), classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise PluginError(f"method {method!r} (plugin {plugin!r}) exported a model whose output is {got} for "
                          f"{len(x)} images; expected {len(x)} x {classes} (one logit per class of "
                          f"{splits.info.name})")
    if not bool(torch.isfinite(out).all()):
        raise DivergedError(f"method {method!r} (plugin {plugin!r}) exported a model whose outputs are NaN or "
                            "infinite")
    return x


def _reference(method, config: dict) -> dict | None:
    """A paper's numbers for this method on (dataset, backbone), stored so boards need no plugin."""
    try:
        return normalise_reference(method.reference_results(config["dataset"], config["backbone"]))
    except Exception:  # a broken optional hook must not fail the cell
        return None


def _facts(output: MethodOutput, model, trainer, method: str, plugin: str, progress: Progress) -> Facts:
    """The method's typed facts, checked, with what the harness can tell for itself filled in."""
    from odnbench.depthnet import DepthNet

    facts = Facts(depth=output.depth, reached_target=output.reached_target, threshold=output.threshold,
                  converged=output.converged, cut_short=output.cut_short,
                  depth_curve=_jsonable(output.depth_curve, method, plugin, progress) if output.depth_curve else None)
    for name, types in (("depth", (int,)), ("reached_target", (bool,)), ("threshold", (int, float)),
                        ("converged", (bool,)), ("cut_short", (str,)), ("depth_curve", (list,))):
        value = getattr(facts, name)
        if value is not None and (not isinstance(value, types) or (name == "depth" and isinstance(value, bool))
                                  or (name == "threshold" and not math.isfinite(value))):
            raise PluginError(f"method {method!r} (plugin {plugin!r}): MethodOutput.{name} must be "
                              f"{' or '.join(t.__name__ for t in types)} or None, got {value!r}")
    if facts.depth is None and isinstance(model, DepthNet):
        facts.depth = model.depth
    if facts.converged is None and trainer.unconverged:
        facts.converged = False
        facts.cut_short = facts.cut_short or (f"the epoch cap ended training before patience "
                                              f"({', '.join(trainer.unconverged)})")
    elif facts.converged is None and facts.cut_short:
        facts.converged = False
    elif facts.converged is None and getattr(trainer, "converged", None):
        facts.converged = True  # every fit the shared trainer ran ended on patience
    return facts


def _curve(output: MethodOutput, splits, recipe, execution, method: str, plugin: str,
           progress: Progress) -> list[dict] | None:
    """The method's further models (``MethodOutput.curve``), each measured as the main model is
    (test and validation top-1, params, size, MACs; no latency), stored as one record per point."""
    import torch

    from odnbench import metrics
    from odnbench.contract import CurvePoint

    if not output.curve:
        return None
    points = []
    for i, point in enumerate(output.curve):
        if not isinstance(point, CurvePoint) or not isinstance(point.model, torch.nn.Module):
            raise PluginError(f"method {method!r} (plugin {plugin!r}): MethodOutput.curve[{i}] must be an "
                              f"odnbench.CurvePoint(model=<torch.nn.Module>, ...), got {type(point).__name__}")
        if point.depth is not None and (not isinstance(point.depth, int) or isinstance(point.depth, bool)):
            raise PluginError(f"method {method!r} (plugin {plugin!r}): CurvePoint.depth must be int or None, "
                              f"got {point.depth!r}")
        model = execution.model(point.model).eval()
        measured = metrics.measure_point(model, splits, recipe, execution=execution)
        points.append({"depth": point.depth, "label": str(point.label or ""), **measured,
                       "info": _jsonable(point.info or {}, method, plugin, progress)})
    return points


def _jsonable(info, method: str, plugin: str, progress: Progress | None = None):
    """The method's info as strict JSON. JSON has no NaN or Infinity (strict readers reject them): a
    non-finite number in a method's free-form info is stored as null, with a warning naming it.
    (Everything the harness measures is finite, or the cell fails.)"""
    try:
        plain = json.loads(json.dumps(info))
    except (TypeError, ValueError) as exc:
        raise PluginError(f"method {method!r} (plugin {plugin!r}): info must be JSON-serialisable ({exc})") from exc
    nulled: list[str] = []
    plain = _finite_or_null(plain, "", nulled)
    if nulled and progress is not None:
        progress.warn(f"method {method!r} (plugin {plugin!r}) reported non-finite numbers, stored as null: "
                      f"{', '.join(nulled[:5])}{' ...' if len(nulled) > 5 else ''}")
    return plain


def _finite_or_null(value, path: str, nulled: list[str]):
    if isinstance(value, float) and not math.isfinite(value):
        nulled.append(path or "(value)")
        return None
    if isinstance(value, dict):
        return {k: _finite_or_null(v, f"{path}.{k}" if path else k, nulled) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_null(v, f"{path}[{i}]", nulled) for i, v in enumerate(value)]
    return value


@dataclass
class GridReport:
    results: list[Result]  # in grid order
    skipped: int  # finished before (resume) or by another run on the same folder
    failed: list[Result]


#: How often a run waiting for a cell that another run holds looks again.
LOCK_POLL_SECONDS = 0.5


def run_grid(registry: Registry, grid: Grid, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, resume: bool = True, fail_fast: bool = False, progress: Progress | None = None,
             executor=None) -> GridReport:
    """Run the grid's cells on ``executor`` (default: one after another in this process), each
    as soon as the cells it requires have finished, and return what happened to every cell.

    Each cell runs under its lock in the results folder (:meth:`ResultStore.lock`): a cell that
    another run on the same folder holds is waited for, and a result that another run stored
    while this one was running is used, not redone. A cell whose dependency failed is stored as
    failed without a worker (``run_cell`` names the dependency). ``fail_fast`` starts no cell
    after the first failure; cells already running finish and are stored.
    """
    progress = progress or Progress()
    store = ResultStore(results_dir)
    for p in store.clean_stale_temp_files():
        progress.line(f"removed {p.name}, left in {store.root} by an interrupted write")
    executor = executor or SerialExecutor()
    run = RunSpec(registry=registry, results_dir=Path(results_dir), data_dir=Path(data_dir), download=download,
                  device=device or pick_device(), progress=progress, grid_cells=grid.by_key(),
                  run_cell=run_cell, record_failure=record_failure)
    total = len(grid.cells)
    index = {c.key: i for i, c in enumerate(grid.cells, 1)}
    stamps = {c.key: _stamp(store, c) for c in grid.cells}  # each result.json as this run found it
    done: dict[str, Result] = {}
    pending = list(grid.cells)
    running: dict[str, CellLock] = {}
    waiting: set[str] = set()
    skipped = executed = 0
    stop = False
    started = time.perf_counter()

    def tag(cell: Cell) -> str:
        return f"[{index[cell.key]}/{total}]"

    def eta() -> str:
        left = len(pending) + len(running)
        if not executed or not left:
            return f"{len(done)}/{total} finished"
        return f"{len(done)}/{total} finished, ETA {(time.perf_counter() - started) / executed * left / 60:.1f} min"

    def finished(cell: Cell, result: Result, timed: bool = True) -> None:
        nonlocal executed, stop
        lock = running.pop(cell.key, None)
        if lock is not None:
            lock.release()
        done[cell.key] = result
        executed += timed  # the ETA's rate counts the cells that did run
        if result.ok:
            m = result.metrics
            progress.line(f"{tag(cell)} done {cell.label()}: top-1 {m['top1']:.2f}%, {m['params']:,} params, "
                          f"{m['size_mb']:.3f} MB, {result.cost['train_seconds']:.0f}s training; {eta()}")
        else:
            progress.line(f"{tag(cell)} FAILED {cell.label()}: {result.error}; {eta()}")
            stop = stop or fail_fast

    def used(cell: Cell, result: Result, how: str) -> None:
        nonlocal skipped
        for p in store.clean_stale_temp_files(store.cell_dir(cell.config)):
            progress.line(f"removed {p.name}, left in {cell.dirname} by an interrupted write")
        pending.remove(cell)
        waiting.discard(cell.key)
        done[cell.key] = result
        skipped += 1
        progress.line(f"{tag(cell)} {cell.label()}: {how}")

    def stored_elsewhere(cell: Cell) -> Result | None:
        """A result to use instead of running the cell: finished before (resume) or meanwhile by another run."""
        prior = _readable(store.stored, cell.config)
        if prior is None:
            return None  # an unreadable result.json is no result: run_cell sets it aside and reruns
        if _stamp(store, cell) != stamps[cell.key]:
            return prior  # written since this run started, by another run: its outcome stands
        return prior if resume and prior.ok else None

    def dispatch() -> bool:
        """Start every cell that can start now, in grid order; True when anything happened."""
        acted = False
        for cell in list(pending):
            if stop:
                break
            if any(k in run.grid_cells and k not in done for k in cell.requires.values()):
                continue  # a dependency is still to finish
            blocked = bool(cell.error) or any(not (done.get(k) or _readable(store.get, k) or _NONE).ok
                                              for k in cell.requires.values())
            if not blocked and not executor.free() and stored_elsewhere(cell) is None:
                break  # keep grid order: later cells wait for a free worker too
            lock = store.lock(cell.key)
            if not lock.acquire():
                if cell.key not in waiting:
                    waiting.add(cell.key)
                    progress.line(f"{tag(cell)} {cell.label()}: another odnbench run ({_who(lock.holder())}) "
                                  "is running it; waiting")
                continue
            prior = stored_elsewhere(cell)  # looked at under the lock: no run is writing it now
            if prior is not None:
                lock.release()  # (also clears a lock file left by a run killed after storing it)
                fresh = _stamp(store, cell) != stamps[cell.key]
                used(cell, prior, "done by another run meanwhile, used" if fresh else "done already (resume), skipped")
                acted = True
                continue
            if lock.taken_over:
                progress.line(f"{tag(cell)} {cell.label()}: took over the lock left by a run that ended "
                              f"({_who(lock.taken_over)})")
            pending.remove(cell)
            waiting.discard(cell.key)
            running[cell.key] = lock
            acted = True
            note = " (needed by another cell)" if cell.added_as_dependency else ""
            if blocked:  # it fails at once (run_cell says which dependency): no worker needed
                progress.line(f"{tag(cell)} {cell.label()}{note}")
                finished(cell, run_cell(registry, cell, run.results_dir, data_dir=run.data_dir, download=download,
                                        device=run.device, progress=progress.child(f"  [{cell.config['method']}] "),
                                        grid_cells=run.grid_cells, executor=executor.info()), timed=False)
                continue
            progress.line(f"{tag(cell)} {cell.label()}{note}" + (f"; {eta()}" if executed else ""))
            executor.submit(cell)
        return acted

    try:
        description = executor.start(run)
        if description:
            progress.line(description)
        while pending or running:
            acted = dispatch() if not stop else False
            if running:
                for cell, result in executor.wait(LOCK_POLL_SECONDS if waiting else None):
                    finished(cell, result)
            elif stop or not pending:
                break
            elif not acted:
                if not waiting:
                    raise RuntimeError(f"no cell can start: {[c.label() for c in pending]}")  # a planning bug
                time.sleep(LOCK_POLL_SECONDS)
    finally:
        for lock in running.values():
            lock.release()
        executor.close()
    results = [done[c.key] for c in grid.cells if c.key in done]
    return GridReport(results, skipped, [r for r in results if not r.ok])


class _NoResult:
    ok = False


def _readable(read, what) -> Result | None:
    try:
        return read(what)
    except CorruptResultError:
        return None


_NONE = _NoResult()


def _stamp(store: ResultStore, cell: Cell):
    """Identity of a cell's stored result.json (inode and mtime), None when there is none."""
    try:
        st = (store.cell_dir(cell.config) / RESULT_FILE).stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)


def _who(holder: dict | None) -> str:
    """``pid 123 on host, since 12:00:05`` from what a lock file says."""
    holder = holder or {}
    since = time.strftime("%H:%M:%S", time.localtime(holder["started"])) if holder.get("started") else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {since}"

"""The harness: run each planned cell the same way, measure the exported model and store the result.

A cell is an independent, idempotent unit: its canonical config goes in, a result folder comes
out (see :mod:`odnbench.store`). Finished cells are skipped on rerun (resume); a failed cell is
stored as failed and the grid goes on. Planning lives in :mod:`odnbench.plan`; where cells run
(this process, worker processes, a Ray cluster) in :mod:`odnbench.executors`, every one of them
through :func:`run_cell`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import time
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import cast

from odnbench.contract import Dependency, MethodContext, MethodOutput
from odnbench.errors import (
    DivergedError,
    MissingDependencyError,
    OdnbenchDeprecationWarning,
    OdnbenchError,
    PluginError,
)
from odnbench.executors import SERIAL, Executor, RunSpec, SerialExecutor
from odnbench.plan import Cell, Grid, check_config, method_params
from odnbench.progress import Progress
from odnbench.recipes import Recipe
from odnbench.registry import Registry
from odnbench.result import (
    Facts,
    Result,
    artifact_entry,
    data_record,
    env_record,
    file_entry,
    files_record,
    normalise_reference,
    plain_file_name,
)
from odnbench.runtime import DATA_CACHE, backbone_builder, pick_device, seed_everything
from odnbench.scheduler import GridReport, Scheduler
from odnbench.store import (
    MAX_MODEL_BYTES,
    MODEL_FILE,
    MODEL_SUFFIX,
    CellWriter,
    ResultStore,
    UnsafePathError,
    read_regular,
)


def load_dependencies(cell: Cell, writer: CellWriter, grid_cells: dict[str, Cell] | None) -> dict[str, Dependency]:
    deps = {}
    for name, key in cell.requires.items():
        found, result = writer.dependency(key)
        if found is None or result is None or not result.ok:  # (no folder: no result)
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
                f"{needs}, which has no stored result in {writer.store.root}. Run "
                f"`odnbench compare --method {dep_method} --method {c['method']} --dataset {c['dataset']} "
                f"--backbone {c['backbone']} --seed {c['seed']} --preset {c['preset']}` with the same --set "
                f"options (it orders them), or run the '{dep_method}' cell first."
            )
        model_file = result.model_file if result.model_file and plain_file_name(result.model_file) else MODEL_FILE
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

    config = cell.config
    device = device or pick_device()
    progress = progress or Progress()
    method = registry.method(config["method"])
    plugin = registry.owner.get(("method", config["method"]), "?")
    recipe = Recipe.from_dict(config["recipe"])
    cost = CostMeter()
    result = _blank_result(registry, cell)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    # The cell's folder: refused when a link, tidied; every read and write of this run goes through it.
    writer = ResultStore(results_dir).open_cell(config, progress)
    execution = None
    try:
        result.reference = _finite_or_null(_reference(method, config), "reference", [])
        execution = Execution.for_recipe(recipe, device)  # precision, TF32, memory format, compile
        with metrics.torch_threads(recipe.threads) as threads, execution.activate():
            if cell.error:
                raise PluginError(cell.error)
            check_config(registry, config, "the cell's config")  # from a record or a worker's message too
            deps = load_dependencies(cell, writer, grid_cells)
            for dep in deps.values():  # everything a model needed is part of what it cost
                cost.add_dependency(dep.key, dep.result.method, dep.result.cost or {})
            seed_everything(config["seed"])
            splits = DATA_CACHE.get(registry, config["dataset"], data_dir, download, config["seed"], recipe, device)
            result.data = data_record(splits, data_dir)
            out_dir = writer.create()
            trainer = Trainer(splits, recipe, device, progress, cost, config["seed"], execution=execution)
            ctx = MethodContext(
                method=config["method"], params=method_params(method, config["params"]), splits=splits,
                build_backbone=backbone_builder(registry, config["backbone"], splits.info, recipe), recipe=recipe,
                seed=config["seed"], device=device, progress=progress, cost=cost, trainer=trainer,
                workdir=out_dir, dependencies=deps, config=config,
            )
            output = method.run(ctx)
            if not isinstance(output, MethodOutput) or not isinstance(output.model, torch.nn.Module):
                what = (f"a MethodOutput whose model is a {type(output.model).__name__}, not a torch.nn.Module"
                        if isinstance(output, MethodOutput) else type(output).__name__)
                raise PluginError(
                    f"method {config['method']!r} (plugin {plugin!r}) returned {what}; "
                    "run() must return odnbench.MethodOutput(model=<torch.nn.Module>, info={...})"
                )
            model = execution.model(output.model).eval()
            example = _check_exported(model, splits, config["method"], plugin, execution)
            result.metrics = metrics.measure(model, splits, recipe, execution=execution)
            result.method_info = _jsonable(output.info or {}, config["method"], plugin, progress)
            result.facts = _facts(output, model, trainer, config["method"], plugin, progress)
            result.curve = _curve(output, splits, recipe, execution, config["method"], plugin, progress)
            # Stored without pickling, and checked to reload into the same outputs (odnbench.modelio).
            result.model_file, model_entry = writer.save_model(model, example=example)
            result.artifacts = {**ctx.artifacts, **_unrecorded_models(writer, ctx, plugin)}
            result.files = files_record(result.model_file, model_entry, result.artifacts)
            result.status = "ok"
    except KeyboardInterrupt:
        raise
    except SystemExit as exc:  # sys.exit() in a method must not end the grid without a record
        result.error = (f"method {config['method']!r} (plugin {plugin!r}) called sys.exit({exc.code!r}); "
                        "a method must return a MethodOutput or raise an exception")
        result.traceback = traceback.format_exc(limit=8)
    except Exception as exc:  # a failed cell is recorded; the grid goes on
        result.error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:  # the machine's fault, not the plugin's
            result.error = (f"{os.strerror(exc.errno)} while writing {exc.filename or 'a file'}: the disk (or a "
                            "file-size limit) is full; free space, then rerun (the cell runs again)")
        elif not isinstance(exc, OdnbenchError):
            result.traceback = traceback.format_exc(limit=8)
            result.error = f"method {config['method']!r} (plugin {plugin!r}) raised {result.error}"
    if not result.ok:
        result.metrics, result.files, result.model_file = None, None, None
        result.artifacts, result.curve = {}, None
    result.cost = cost.as_dict(device.type)
    result.wall_seconds = round(time.perf_counter() - started, 3)
    result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # threads: what the cell ran with (recipe.threads, else this process's count)
    result.env = env_record(envinfo.fingerprint(device), threads=threads, executor=executor or SERIAL,
                            execution=execution.env() if execution is not None else None,
                            packages=envinfo.versions(method.env_packages))
    return writer.record(result)


#: OSErrors that say the disk or a quota is full (a file-size limit included), whoever's write met them.
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _blank_result(registry: Registry, cell: Cell) -> Result:
    config = cell.config
    role = getattr(registry.method(config["method"]), "role", None) if config["method"] in \
        registry.items["method"] else None
    return Result(status="failed", key=cell.key, config=config,
                  plugin=registry.owner.get(("method", config["method"]), "?"), requires=dict(cell.requires),
                  defaults=dict(cell.defaults), role=role,
                  provenance=dict(getattr(cell, "provenance", None) or {}) or None)


def record_failure(registry: Registry, cell: Cell, results_dir: Path, error: str, *, device=None,
                   executor: dict | None = None, traceback_text: str | None = None) -> Result:
    """Store a failed result for a cell that could not report one itself (its worker died)."""
    from odnbench import envinfo

    result = _blank_result(registry, cell)
    result.error, result.traceback = error, traceback_text
    result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result.env = env_record(envinfo.fingerprint(device or pick_device("cpu")), threads=None,
                            executor=executor or SERIAL)
    ResultStore(results_dir).write(result)
    return result


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

    facts = Facts.of(output)
    for name, types in Facts.types().items():
        value = getattr(facts, name)
        if value is not None and (not isinstance(value, types) or (name == "depth" and isinstance(value, bool))
                                  or (name == "threshold" and not math.isfinite(cast(float, value)))):
            raise PluginError(f"method {method!r} (plugin {plugin!r}): MethodOutput.{name} must be "
                              f"{' or '.join(t.__name__ for t in types)} or None, got {value!r}")
    if facts.depth_curve:
        facts.depth_curve = _jsonable(facts.depth_curve, method, plugin, progress)
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


def _unrecorded_models(writer: CellWriter, ctx: MethodContext, plugin: str) -> dict[str, dict]:
    """Model files the method wrote into ``ctx.workdir`` itself (odnbench 0.1's way, by the
    ``*.safetensors`` name) rather than through ``ctx.save_model``: still recorded as artifacts,
    with a deprecation warning, until odnbench 0.3.0. Files an earlier, unfinished attempt left
    behind (unchanged since this run started) are not this run's."""
    from odnbench.metrics import count_params, saved_size_mb
    from odnbench.modelio import ModelFileError

    recorded = {entry.get("file") for entry in ctx.artifacts.values()}
    found = {}
    for path in writer.new_model_files(recorded):
        name = path.name[: -len(MODEL_SUFFIX)]
        warnings.warn(f"method {ctx.method!r} (plugin {plugin!r}) wrote {path.name} into ctx.workdir itself; use "
                      f"ctx.save_model({name!r}, model) (a file found by its name is recorded until odnbench 0.3.0)",
                      OdnbenchDeprecationWarning, stacklevel=2)
        try:  # bounded: a stray 5 GB file is refused by its size, never read whole
            data = read_regular(path, MAX_MODEL_BYTES)
        except UnsafePathError as exc:
            ctx.progress.warn(f"method {ctx.method!r} (plugin {plugin!r}) left {path.name} in its cell folder; not "
                              f"recorded: {' '.join(str(exc).replace(str(path), path.name).split())}")
            continue
        try:
            model = writer.load_model(path, expected_sha256=file_entry(data)["sha256"])
            measured = {"params": count_params(model), "size_mb": round(saved_size_mb(model), 6)}
        except ModelFileError:
            measured = {}  # not a model odnbench can load: recorded, and verify says what is wrong with it
        found[name] = artifact_entry(path.name, data, "model", **measured)
    return found


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


def run_grid(registry: Registry, grid: Grid, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, resume: bool = True, fail_fast: bool = False, progress: Progress | None = None,
             executor: Executor | None = None) -> GridReport:
    """Run the grid's cells on ``executor`` (default: one after another in this process), each
    as soon as the cells it requires have finished, and return what happened to every cell.
    Which cell runs when (dependency order, resume, cell locks, ``fail_fast``, the ETA) is the
    :class:`odnbench.scheduler.Scheduler`'s; each cell runs through :func:`run_cell`."""
    progress = progress or Progress()
    executor = executor or SerialExecutor()
    run = RunSpec(registry=registry, results_dir=Path(results_dir), data_dir=Path(data_dir), download=download,
                  device=device or pick_device(), progress=progress, grid_cells=grid.by_key(),
                  run_cell=run_cell, record_failure=record_failure)
    return Scheduler(grid, executor, run, resume=resume, fail_fast=fail_fast).run()

"""The harness: run each planned cell the same way, measure the exported model and store the result.

A cell is an independent, idempotent unit: its canonical config goes in, a result folder comes
out (see :mod:`odnbench.store`). Finished cells are skipped on rerun (resume); a failed cell is
stored as failed and the grid goes on. Planning lives in :mod:`odnbench.plan`.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from odnbench.contract import Dependency, MethodContext, MethodOutput
from odnbench.errors import MissingDependencyError, OdnbenchError, PluginError
from odnbench.plan import Cell, Grid
from odnbench.progress import Progress
from odnbench.recipes import Recipe
from odnbench.registry import Registry
from odnbench.result import Facts, Result, normalise_reference
from odnbench.runtime import DATA_CACHE, backbone_builder, pick_device, seed_everything
from odnbench.store import ResultStore


def load_dependencies(cell: Cell, store: ResultStore, grid_cells: dict[str, Cell] | None) -> dict[str, Dependency]:
    deps = {}
    for name, key in cell.requires.items():
        found = store.find(key)
        result = store.read(found) if found else None
        if result is None or not result.ok:
            why = "failed" if result else "has no stored result"
            dep_method = grid_cells[key].config["method"] if grid_cells and key in grid_cells else name
            c = cell.config
            raise MissingDependencyError(
                f"{c['method']} needs a finished '{dep_method}' result for {c['dataset']}/{c['backbone']}/seed "
                f"{c['seed']}/preset {c['preset']} (cell key {key}), which {why} in {store.root}. Run "
                f"`odnbench compare --method {dep_method} --method {c['method']} --dataset {c['dataset']} "
                f"--backbone {c['backbone']} --seed {c['seed']} --preset {c['preset']}` with the same --set "
                f"options (it orders them), "
                f"or run the '{dep_method}' cell first."
            )
        deps[name] = Dependency(result=result, model_path=store.model_path(found))
    return deps


def run_cell(registry: Registry, cell: Cell, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, progress: Progress | None = None, grid_cells: dict[str, Cell] | None = None) -> Result:
    """Run one cell and store its result (ok or failed). Never raises for a method's failure;
    KeyboardInterrupt propagates and leaves no partial result behind."""
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
    result = Result(status="failed", key=cell.key, config=config, plugin=plugin, requires=dict(cell.requires),
                    defaults=dict(cell.defaults))
    started = time.perf_counter()
    execution = None
    try:
        result.reference = _reference(method, config)
        execution = Execution.for_recipe(recipe, device)  # precision, TF32, memory format, compile
        with metrics.torch_threads(recipe.threads), execution.activate():
            if cell.error:
                raise PluginError(cell.error)
            deps = load_dependencies(cell, store, grid_cells)
            for dep in deps.values():  # everything a model needed is part of what it cost
                cost.add_dependency(dep.key, dep.result.method, dep.result.cost or {})
            seed_everything(config["seed"])
            splits = DATA_CACHE.get(registry, config["dataset"], data_dir, download, config["seed"], recipe, device)
            result.data = {"sizes": splits.sizes(), "split_rule": splits.info.split_rule,
                           "augment": splits.info.augment, "normalisation": [splits.info.mean, splits.info.std]}
            out_dir.mkdir(parents=True, exist_ok=True)
            trainer = Trainer(splits, recipe, device, progress, cost, config["seed"], execution=execution)
            ctx = MethodContext(
                method=config["method"], params=dict(config["params"]), splits=splits,
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
            result.metrics = metrics.measure(model, splits, recipe, execution=execution)
            result.method_info = _jsonable(output.info or {}, config["method"], plugin)
            result.facts = _facts(output, model, trainer, config["method"], plugin)
            store.save_model(model, out_dir)
            result.model_file = store.model_path(out_dir).name
            result.status = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed cell is recorded; the grid goes on
        result.error = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OdnbenchError):
            result.traceback = traceback.format_exc(limit=8)
            result.error = f"method {config['method']!r} (plugin {plugin!r}) raised {result.error}"
    result.cost = cost.as_dict(device.type)
    result.wall_seconds = round(time.perf_counter() - started, 3)
    result.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result.env = envinfo.fingerprint(device)
    if execution is not None:
        result.env.update(execution.env())
    store.write(result)
    return result


def _reference(method, config: dict) -> dict | None:
    """A paper's numbers for this method on (dataset, backbone), stored so boards need no plugin."""
    try:
        return normalise_reference(method.reference_results(config["dataset"], config["backbone"]))
    except Exception:  # a broken optional hook must not fail the cell
        return None


def _facts(output: MethodOutput, model, trainer, method: str, plugin: str) -> Facts:
    """The method's typed facts, checked, with what the harness can tell for itself filled in."""
    from odnbench.depthnet import DepthNet

    facts = Facts(depth=output.depth, reached_target=output.reached_target, threshold=output.threshold,
                  converged=output.converged, cut_short=output.cut_short,
                  depth_curve=_jsonable(output.depth_curve, method, plugin) if output.depth_curve else None)
    for name, types in (("depth", (int,)), ("reached_target", (bool,)), ("threshold", (int, float)),
                        ("converged", (bool,)), ("cut_short", (str,)), ("depth_curve", (list,))):
        value = getattr(facts, name)
        if value is not None and (not isinstance(value, types) or (name == "depth" and isinstance(value, bool))):
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
    return facts


def _jsonable(info, method: str, plugin: str):
    try:
        return json.loads(json.dumps(info))
    except (TypeError, ValueError) as exc:
        raise PluginError(f"method {method!r} (plugin {plugin!r}): info must be JSON-serialisable ({exc})") from exc


@dataclass
class GridReport:
    results: list[Result]
    skipped: int
    failed: list[Result]


def run_grid(registry: Registry, grid: Grid, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, resume: bool = True, fail_fast: bool = False, progress: Progress | None = None) -> GridReport:
    progress = progress or Progress()
    store = ResultStore(results_dir)
    results, failed, skipped = [], [], 0
    by_key = grid.by_key()
    total = len(grid.cells)
    started = time.perf_counter()
    for i, cell in enumerate(grid.cells, 1):
        prior = store.stored(cell.config)
        if resume and prior is not None and prior.ok:
            skipped += 1
            progress.line(f"[{i}/{total}] {cell.label()}: done already (resume), skipped")
            results.append(prior)
            continue
        elapsed = time.perf_counter() - started
        ran = i - 1 - skipped
        eta = f", ETA {elapsed / ran * (total - i + 1) / 60:.1f} min" if ran else ""
        note = " (needed by another cell)" if cell.added_as_dependency else ""
        progress.line(f"[{i}/{total}] {cell.label()}{note}{eta}")
        result = run_cell(registry, cell, results_dir, data_dir=data_dir, download=download, device=device,
                          progress=progress.child(f"  [{cell.config['method']}] "), grid_cells=by_key)
        results.append(result)
        if result.ok:
            m = result.metrics
            progress.line(f"[{i}/{total}] done: top-1 {m['top1']:.2f}%, {m['params']:,} params, "
                          f"{m['size_mb']:.3f} MB, {result.cost['train_seconds']:.0f}s training")
        else:
            failed.append(result)
            progress.line(f"[{i}/{total}] FAILED: {result.error}")
            if fail_fast:
                break
    return GridReport(results, skipped, failed)

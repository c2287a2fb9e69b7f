"""The harness: expand a grid into cells, order them by what they need, run each cell the same
way, measure the exported model and store the result.

A cell is an independent, idempotent unit: its canonical config goes in, a result folder comes
out. Finished cells are skipped on rerun (resume); a failed cell is stored as failed and the
grid goes on.
"""

from __future__ import annotations

import itertools
import random
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from odnbench import PROTOCOL_VERSION
from odnbench.contract import Dependency, MethodContext, MethodOutput, Requirement
from odnbench.errors import MissingDependencyError, OdnbenchError, PluginError, UnknownNameError
from odnbench.progress import Progress
from odnbench.recipes import Recipe, make_recipe
from odnbench.registry import Registry
from odnbench.store import MODEL_FILE, RESULT_FILE, cell_dirname, cell_key, read_json, save_model, write_json

DEFAULT_DATASET = "mnist5k"
DEFAULT_BACKBONE = "resnet18"


def split_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``["odn.target=99", "recipe.epochs=5"]`` -> ``{"odn": {"target": "99"}, "recipe": {"epochs": "5"}}``."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise OdnbenchError(f"--set {pair!r}: expected METHOD.PARAM=VALUE or recipe.PARAM=VALUE")
        key, value = pair.split("=", 1)
        owner, name = key.split(".", 1)
        out.setdefault(owner.strip(), {})[name.strip()] = value
    return out


def resolve_params(registry: Registry, method_name: str, preset: str, dataset: str,
                   overrides: dict[str, str], fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Declared defaults, then preset/dataset defaults, then ``--set`` text, then a requirement's values."""
    method = registry.method(method_name)
    plugin = registry.owner.get(("method", method_name), "?")
    declared = {}
    for p in method.params:
        if p.name in declared:
            raise PluginError(f"plugin {plugin!r}: method {method_name!r} declares parameter {p.name!r} twice")
        declared[p.name] = p
    params = {name: p.default for name, p in declared.items()}
    for name, value in (method.preset_defaults(preset, dataset) or {}).items():
        if name not in declared:
            raise PluginError(f"plugin {plugin!r}: preset_defaults of {method_name!r} sets undeclared {name!r}")
        params[name] = declared[name].check(value, method_name)
    for name, text in overrides.items():
        if name not in declared:
            raise UnknownNameError(f"parameter of method {method_name!r}", name, declared)
        params[name] = declared[name].parse(text, method_name)
    for name, value in (fixed or {}).items():
        if name not in declared:
            raise PluginError(f"requirement sets unknown parameter {method_name}.{name}")
        params[name] = declared[name].check(value, method_name)
    return params


def make_config(method: str, params: dict, dataset: str, backbone: str, seed: int, recipe: Recipe) -> dict:
    """The canonical config of one cell: everything that changes its result, nothing else."""
    return {
        "protocol": PROTOCOL_VERSION,
        "method": method,
        "params": params,
        "dataset": dataset,
        "backbone": backbone,
        "input": {"stem": recipe.stem, "width": recipe.width},
        "seed": seed,
        "preset": recipe.preset,
        "recipe": recipe.as_dict(),
    }


@dataclass
class Cell:
    config: dict
    requires: dict[str, str] = field(default_factory=dict)  # dependency name -> cell key
    added_as_dependency: bool = False
    error: str | None = None  # a plugin's contract error found while planning: run_cell records it as failed

    @property
    def key(self) -> str:
        return cell_key(self.config)

    @property
    def dirname(self) -> str:
        return cell_dirname(self.config)

    def label(self) -> str:
        c = self.config
        return f"{c['method']} | {c['dataset']} | {c['backbone']} | seed {c['seed']} | {c['preset']}"


@dataclass
class Grid:
    cells: list[Cell]  # in run order: every cell after the cells it requires

    def by_key(self) -> dict[str, Cell]:
        return {c.key: c for c in self.cells}


def plan_grid(registry: Registry, methods: list[str], datasets: list[str], backbones: list[str],
              seeds: list[int], preset: str, sets: list[str] | None = None,
              add_dependencies: bool = True) -> Grid:
    """Cartesian grid method x dataset x backbone x seed, plus (when asked) the cells they need,
    ordered so that each cell runs after its dependencies."""
    overrides = split_overrides(sets or [])
    recipe = make_recipe(preset, overrides.pop("recipe", {}))
    for owner in overrides:
        registry.method(owner)  # an unknown method in --set is an error, with suggestions
    for name in datasets:
        registry.dataset(name)
    for name in backbones:
        registry.backbone(name)
    for name in methods:
        registry.method(name)

    ordered: dict[str, Cell] = {}

    def add(method: str, dataset: str, backbone: str, seed: int, fixed: dict | None, as_dep: bool,
            stack: tuple[str, ...]) -> Cell:
        try:
            params = resolve_params(registry, method, preset, dataset, overrides.get(method, {}), fixed)
        except PluginError as exc:  # the plugin's fault, not the user's: fail its cells, not the whole grid
            cell = Cell(make_config(method, {}, dataset, backbone, seed, recipe), added_as_dependency=as_dep,
                        error=str(exc))
            return ordered.setdefault(cell.key, cell)
        cell = Cell(make_config(method, params, dataset, backbone, seed, recipe), added_as_dependency=as_dep)
        if cell.key in ordered:
            return ordered[cell.key]
        if method in stack:
            raise PluginError(f"dependency cycle: {' -> '.join(stack + (method,))}")
        plugin = registry.owner.get(("method", method), "?")
        why, reqs = None, []
        try:
            reqs = list(registry.method(method).requires(params))
            if not all(isinstance(req, Requirement) for req in reqs):
                raise PluginError("requires() must return a list of odnbench.Requirement objects")
            missing = [req.method for req in reqs if req.method not in registry.items["method"]]
            if missing:
                raise PluginError(f"it requires method {missing[0]!r}, which no loaded plugin registers")
        except PluginError as exc:  # same: a broken requires() fails this cell only
            why = str(exc)
        except OdnbenchError:
            raise  # requires() rejected the user's parameters (one-line error), not a plugin bug
        except Exception as exc:
            why = f"requires() raised {type(exc).__name__}: {exc}"
        if why is not None:
            cell.error = f"plugin {plugin!r}: method {method!r}: {why}"
            reqs = []
        for req in reqs:
            if add_dependencies:
                dep = add(req.method, dataset, backbone, seed, dict(req.params), True, stack + (method,))
            else:
                dep_params = resolve_params(registry, req.method, preset, dataset,
                                            overrides.get(req.method, {}), dict(req.params))
                dep = Cell(make_config(req.method, dep_params, dataset, backbone, seed, recipe))
            cell.requires[req.name] = dep.key
        ordered[cell.key] = cell
        return cell

    # Methods vary fastest so that one loaded dataset split (per dataset and seed) serves all of them.
    for dataset, backbone, seed, method in itertools.product(datasets, backbones, seeds, methods):
        key_before = set(ordered)
        cell = add(method, dataset, backbone, seed, None, False, ())
        if cell.key in key_before:
            cell.added_as_dependency = False  # asked for explicitly too
    return Grid(list(ordered.values()))


# ---------------------------------------------------------------------------------------------
# Running one cell


class _DataCache:
    """Datasets load once per process and are reused by every cell that needs the same split."""

    def __init__(self):
        self._cache: dict[tuple, Any] = {}

    def get(self, registry: Registry, name: str, data_dir: Path, download: bool, seed: int, recipe: Recipe, device):
        key = (name, str(data_dir), seed, recipe.train_limit, recipe.val_limit, recipe.test_limit, str(device))
        if key not in self._cache:
            splits = registry.dataset(name).load(Path(data_dir), download=download, seed=seed)
            splits.train = splits.train.subset(recipe.train_limit, seed)
            splits.val = splits.val.subset(recipe.val_limit, seed)
            splits.test = splits.test.subset(recipe.test_limit, 0)  # the same test images for every seed
            self._cache = {key: splits.to(device)}  # keep one dataset in memory at a time
        return self._cache[key]


DATA_CACHE = _DataCache()


def pick_device(name: str = "auto"):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OdnbenchError(f"device {name!r} asked for but CUDA is not available; use --device cpu or auto")
    if not (name == "cpu" or name.startswith("cuda")):
        raise OdnbenchError(f"unknown device {name!r}; use auto, cpu or cuda[:N]")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_backbone_factory(registry: Registry, config: dict, info, recipe: Recipe):
    backbone = registry.backbone(config["backbone"])

    def build():
        net = backbone.build(in_chans=info.channels, num_classes=info.num_classes, stem=recipe.stem,
                             width=recipe.widths)
        net.meta.update({"backbone": config["backbone"], "stem": recipe.stem, "in_chans": info.channels,
                         "num_classes": info.num_classes, "image_size": info.image_size})
        return net

    return build


def load_dependencies(cell: Cell, results_dir: Path, grid_cells: dict[str, Cell] | None) -> dict[str, Dependency]:
    deps = {}
    for name, key in cell.requires.items():
        found = _find_cell_dir(results_dir, key)
        result = read_json(found / RESULT_FILE) if found else None
        if result is None or result.get("status") != "ok":
            why = "failed" if result else "has no stored result"
            dep_method = grid_cells[key].config["method"] if grid_cells and key in grid_cells else name
            c = cell.config
            raise MissingDependencyError(
                f"{c['method']} needs a finished '{dep_method}' result for {c['dataset']}/{c['backbone']}/seed "
                f"{c['seed']}/preset {c['preset']} (cell key {key}), which {why} in {results_dir}. Run "
                f"`odnbench compare --method {dep_method} --method {c['method']} --dataset {c['dataset']} "
                f"--backbone {c['backbone']} --seed {c['seed']} --preset {c['preset']}` with the same --set "
                f"options (it orders them), "
                f"or run the '{dep_method}' cell first."
            )
        deps[name] = Dependency(result=result, model_path=found / MODEL_FILE)
    return deps


def _find_cell_dir(results_dir: Path, key: str) -> Path | None:
    matches = sorted(Path(results_dir).glob(f"*-{key}"))
    return matches[0] if matches else None


def stored_result(results_dir: Path, cell: Cell) -> dict | None:
    f = Path(results_dir) / cell.dirname / RESULT_FILE
    return read_json(f) if f.is_file() else None


def run_cell(registry: Registry, cell: Cell, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, progress: Progress | None = None, grid_cells: dict[str, Cell] | None = None) -> dict:
    """Run one cell and store its result (ok or failed). Never raises for a method's failure;
    KeyboardInterrupt propagates and leaves no partial result behind."""
    import torch

    from odnbench import envinfo, metrics
    from odnbench.trainer import CostMeter, Trainer

    config = cell.config
    device = device or pick_device()
    out_dir = Path(results_dir) / cell.dirname
    progress = progress or Progress()
    method = registry.method(config["method"])
    plugin = registry.owner.get(("method", config["method"]), "?")
    recipe = recipe_for(config)
    cost = CostMeter()
    result: dict[str, Any] = {
        "status": "failed",
        "error": None,
        "key": cell.key,
        "config": config,
        "plugin": plugin,
        "requires": cell.requires,
        "metrics": None,
        "cost": None,
        "method_info": None,
    }
    started = time.perf_counter()
    try:
        with metrics.torch_threads(recipe.threads):
            if cell.error:
                raise PluginError(cell.error)
            deps = load_dependencies(cell, results_dir, grid_cells)
            seed_everything(config["seed"])
            splits = DATA_CACHE.get(registry, config["dataset"], data_dir, download, config["seed"], recipe, device)
            result["data"] = {"sizes": splits.sizes(), "split_rule": splits.info.split_rule,
                              "augment": splits.info.augment, "normalisation": [splits.info.mean, splits.info.std]}
            out_dir.mkdir(parents=True, exist_ok=True)
            ctx = MethodContext(
                method=config["method"], params=dict(config["params"]), splits=splits,
                build_backbone=build_backbone_factory(registry, config, splits.info, recipe), recipe=recipe,
                seed=config["seed"], device=device, progress=progress, cost=cost,
                trainer=Trainer(splits, recipe, device, progress, cost, config["seed"]),
                workdir=out_dir, dependencies=deps, config=config,
            )
            output = method.run(ctx)
            if not isinstance(output, MethodOutput) or not isinstance(output.model, torch.nn.Module):
                raise PluginError(
                    f"method {config['method']!r} (plugin {plugin!r}) returned {type(output).__name__}; "
                    "run() must return odnbench.MethodOutput(model=<torch.nn.Module>, info={...})"
                )
            model = output.model.to(device).eval()
            result["metrics"] = metrics.measure(model, splits, recipe)
            result["method_info"] = _jsonable(output.info or {}, config["method"], plugin)
            save_model(model, out_dir / MODEL_FILE)
            result["model_file"] = MODEL_FILE
            result["status"] = "ok"
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a failed cell is recorded; the grid goes on
        result["error"] = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OdnbenchError):
            result["traceback"] = traceback.format_exc(limit=8)
            result["error"] = f"method {config['method']!r} (plugin {plugin!r}) raised {result['error']}"
    result["cost"] = cost.as_dict(device.type)
    result["wall_seconds"] = round(time.perf_counter() - started, 3)
    result["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["env"] = envinfo.fingerprint(device)
    write_json(out_dir / RESULT_FILE, result)
    return result


def recipe_for(config: dict) -> Recipe:
    """The recipe a stored cell config ran with (its preset plus the stored field values)."""
    return make_recipe(config["preset"], {k: _as_text(v) for k, v in config["recipe"].items() if k != "preset"})


def _as_text(value) -> str:
    return "none" if value is None else str(value)


def _jsonable(info: dict, method: str, plugin: str) -> dict:
    import json

    try:
        return json.loads(json.dumps(info))
    except (TypeError, ValueError) as exc:
        raise PluginError(f"method {method!r} (plugin {plugin!r}): info must be JSON-serialisable ({exc})") from exc


@dataclass
class GridReport:
    results: list[dict]
    skipped: int
    failed: list[dict]


def run_grid(registry: Registry, grid: Grid, results_dir: Path, *, data_dir: Path, download: bool = True,
             device=None, resume: bool = True, fail_fast: bool = False, progress: Progress | None = None) -> GridReport:
    progress = progress or Progress()
    results, failed, skipped = [], [], 0
    by_key = grid.by_key()
    total = len(grid.cells)
    started = time.perf_counter()
    for i, cell in enumerate(grid.cells, 1):
        prior = stored_result(results_dir, cell)
        if resume and prior is not None and prior.get("status") == "ok":
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
        if result["status"] == "ok":
            m = result["metrics"]
            progress.line(f"[{i}/{total}] done: top-1 {m['top1']:.2f}%, {m['params']:,} params, "
                          f"{m['size_mb']:.3f} MB, {result['cost']['train_seconds']:.0f}s training")
        else:
            failed.append(result)
            progress.line(f"[{i}/{total}] FAILED: {result['error']}")
            if fail_fast:
                break
    return GridReport(results, skipped, failed)

"""``odnbench leaderboard verify``: check stored results before anyone ranks them.

Every ``result.json`` is checked against the result schema (the fields leaderboards read) and
its folder name against the hash of its config. Where the exported ``model.pt`` is present, the
model is reloaded, re-evaluated on the cell's test split (loaded exactly as the harness loads
it) and re-measured: top-1 must match within ``tolerance`` points, the parameter count and MACs
exactly, the saved size within ``SIZE_TOLERANCE_MB``. Committed records without model files
pass on the schema alone ("model not present, schema only").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from odnbench.errors import OdnbenchError
from odnbench.result import Result, schema_problems
from odnbench.store import MODEL_FILE, RESULT_FILE, ResultStore, cell_key

TOP1_TOLERANCE = 0.01
#: A model saved on a GPU pickles "cuda:0" as each tensor's location and one re-measured on the CPU
#: "cpu": a few bytes per tensor. 2 kB absorbs that; a different architecture differs far more.
SIZE_TOLERANCE_MB = 0.002


@dataclass
class CellCheck:
    folder: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    reevaluated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        if self.problems:
            return f"PROBLEM  {self.folder}: " + "; ".join(self.problems)
        return f"ok       {self.folder}: " + "; ".join(self.notes)


@dataclass
class VerifyReport:
    results_dir: Path
    cells: list[CellCheck]

    @property
    def problems(self) -> list[CellCheck]:
        return [c for c in self.cells if not c.ok]

    def summary(self) -> str:
        ok = [c for c in self.cells if c.ok]
        again = sum(c.reevaluated for c in ok)
        return (f"verified {len(self.cells)} results in {self.results_dir}: {len(ok)} ok ({again} re-evaluated, "
                f"{len(ok) - again} schema only), {len(self.problems)} with problems")


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
        if raw.get("key") not in (None, key):
            problems.append(f"stored key {raw.get('key')!r} differs from the config's key {key!r}")
    else:
        problems.append("config is missing")
    return problems


def verify(results_dir, *, data_dir: Path, download: bool = True, device=None,
           tolerance: float = TOP1_TOLERANCE, schema_only: bool = False) -> VerifyReport:
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise OdnbenchError(f"results folder {results_dir} does not exist")
    folders = ResultStore(results_dir).folders()
    checks: dict[str, CellCheck] = {}
    to_reevaluate: list[tuple[Path, dict, CellCheck]] = []
    for folder in folders:
        check = checks.setdefault(folder.name, CellCheck(folder.name))
        path = folder / RESULT_FILE
        if not path.is_file():
            check.problems.append(f"{MODEL_FILE} without {RESULT_FILE}")
            continue
        try:
            result = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            check.problems.append(f"{RESULT_FILE} is not readable JSON ({type(exc).__name__}: {exc})")
            continue
        check.problems += check_schema(result, folder.name)
        if check.problems:
            continue
        result = Result.from_dict(result)
        check.notes.append("schema ok")
        if not result.ok:
            check.notes.append("failed cell (recorded as failed; nothing to re-measure)")
        elif schema_only:
            check.notes.append("schema only (--schema-only)")
        elif not (folder / MODEL_FILE).is_file():
            check.notes.append("model not present, schema only")
        else:
            to_reevaluate.append((folder, result, check))
    if to_reevaluate:
        _reevaluate_all(to_reevaluate, data_dir=data_dir, download=download, device=device, tolerance=tolerance)
    return VerifyReport(results_dir, list(checks.values()))


def _reevaluate_all(items, *, data_dir, download, device, tolerance) -> None:
    from odnbench.registry import get_registry
    from odnbench.runtime import pick_device

    registry = get_registry()  # the datasets, to load each cell's test split as the harness did
    device = device or pick_device("cpu")
    # Same dataset and seed next to each other: the harness's data cache holds one at a time.
    items = sorted(items, key=lambda it: (it[1].config["dataset"], it[1].config["seed"], it[0].name))
    for folder, result, check in items:
        try:
            check.problems += reevaluate(folder, result, data_dir=data_dir, download=download, device=device,
                                         registry=registry, tolerance=tolerance, notes=check.notes)
            check.reevaluated = True
        except OdnbenchError as exc:
            check.problems.append(f"could not re-evaluate: {exc}")
        except Exception as exc:  # an unloadable or wrong model file is a finding, not a crash
            check.problems.append(f"could not re-evaluate {MODEL_FILE}: {type(exc).__name__}: "
                                  f"{' '.join(str(exc).split())[:300]}")


def reevaluate(folder: Path, result: Result, *, data_dir, download, device, registry, tolerance,
               notes: list[str]) -> list[str]:
    """Reload the exported model, measure it again and compare with what result.json says."""
    import torch

    from odnbench import metrics
    from odnbench.execution import Execution
    from odnbench.recipes import Recipe
    from odnbench.runtime import DATA_CACHE
    from odnbench.store import load_model

    config = result.config
    stored = result.metrics
    recipe = Recipe.from_dict(config["recipe"])
    splits = DATA_CACHE.get(registry, config["dataset"], Path(data_dir), download, config["seed"], recipe, device)
    model = load_model(folder / MODEL_FILE, device=device)
    if not isinstance(model, torch.nn.Module):
        return [f"{MODEL_FILE} holds a {type(model).__name__}, not a torch.nn.Module"]
    execution = Execution.for_recipe(recipe, device)  # the precision and memory format it was measured in
    model = execution.model(model).eval()
    problems = []
    with metrics.torch_threads(recipe.threads), execution.activate():
        top1 = metrics.top1(model, splits.test.x, splits.test.y, recipe.eval_batch_size, execution=execution)
        info = splits.info
        macs = metrics.count_flops(model, (info.channels, info.image_size, info.image_size)) // 2
    params = metrics.count_params(model)
    size_mb = metrics.saved_size_mb(model)
    n_test = len(splits.test)
    if stored.get("test_examples") not in (None, n_test):
        problems.append(f"test split has {n_test} examples here but {stored['test_examples']} when stored "
                        f"(different data under --data-dir?)")
    if abs(top1 - stored["top1"]) > tolerance:
        problems.append(f"metrics.top1 stored {stored['top1']:.4f} but re-measured {top1:.4f} on {device.type} "
                        f"(differs by {abs(top1 - stored['top1']):.4f} > {tolerance:g})")
    if params != stored["params"]:
        problems.append(f"metrics.params stored {stored['params']:,} but the model has {params:,}")
    if abs(size_mb - stored["size_mb"]) > SIZE_TOLERANCE_MB:
        problems.append(f"metrics.size_mb stored {stored['size_mb']:.6f} but re-measured {size_mb:.6f}")
    if macs != stored["macs"]:
        problems.append(f"metrics.macs stored {stored['macs']:,} but re-measured {macs:,}")
    notes.append(f"re-evaluated on {device.type}: top-1 {top1:.4f} (stored {stored['top1']:.4f}), "
                 f"params {params:,}, size {size_mb:.6f} MB, MACs {macs:,} match")
    return problems

"""Test helpers for plugin authors: run your plugin through the real harness and check the contract.

Opt in from a test module (or your root ``conftest.py``); odnbench registers no ``pytest11``
entry point, so nothing here loads unless you ask for it::

    pytest_plugins = ["odnbench.testing"]

    def test_my_method(check_method):
        check = check_method("mymethod")           # smoke preset, mnist5k, resnet18, seed 0
        assert check.info["blocks"] == 2           # what your run() put in MethodOutput.info

    def test_my_method_learns(check_method):
        check = check_method("mymethod", preset="tiny")   # a model that learns, still seconds
        assert check.result.metrics["top1"] > 50          # 10 classes: chance is 10 %

    def test_my_dataset(check_dataset):
        check_dataset("digits")                    # loads it, checks the splits, ranks `full` on it

    def test_my_backbone(check_backbone):
        check_backbone("plaincnn")                 # builds it, checks DepthNet, ranks `full` on it

Each check runs the real thing (real data, real training with the ``smoke`` preset, the real
measurements, a real results folder under pytest's ``tmp_path``), so it takes seconds, not
milliseconds. ``smoke`` only checks the plumbing: its models stay near chance accuracy. When a
test depends on accuracy (a choice your method makes from it), pass ``preset="tiny"``: about
1,000 images and 4 epochs, where ``full`` reaches about 90 % top-1 on mnist5k in ~12 s of CPU. A failed check says what to fix, naming the plugin.

Plugins are the installed ones (``pip install -e .`` first), filtered by ``ODNBENCH_LOAD_PLUGINS``
as everywhere else; pass ``plugins=[module]`` to also register a plugin object that is not
installed (handy before the first ``pip install``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

from odnbench.contract import Backbone, Dataset, Method
from odnbench.errors import OdnbenchError
from odnbench.registry import Registry, load_registry

__all__ = [
    "MethodCheck",
    "DatasetCheck",
    "BackboneCheck",
    "registry_with",
    "run_method_check",
    "run_dataset_check",
    "run_backbone_check",
    "check_method",
    "check_dataset",
    "check_backbone",
]

class ContractError(AssertionError):
    """A plugin broke the contract; the message says what to fix."""


def _fail(message: str) -> NoReturn:
    raise ContractError(message)


# ----------------------------------------------------------------------------------- registry


def registry_with(*plugins: Any, installed: bool = True) -> Registry:
    """The registry of the installed plugins (as ``odnbench`` itself loads them) plus ``plugins``.

    Each extra plugin is any object with ``@odnbench.hookimpl`` functions (usually a module);
    it is registered with pluggy exactly as an entry point would be, so misspelled hooks and
    contract errors fail here as they would for a user.
    """
    import pluggy

    from odnbench import hookspecs

    if installed:
        registry = load_registry()
    else:
        pm = pluggy.PluginManager("odnbench")
        pm.add_hookspecs(hookspecs)
        registry = Registry(pm=pm)
    for plugin in plugins:
        name = getattr(plugin, "__name__", None) or type(plugin).__name__
        if registry.pm.is_registered(plugin) or name in registry.plugins:
            continue  # already installed and loaded under that name
        registry.add_plugin(plugin, name)
        registry.fatal_registrations = True  # a contract error in the plugin under test fails its test
        try:
            registry.collect(only=plugin)
        finally:
            registry.fatal_registrations = False
    return registry


# ----------------------------------------------------------------------------------- methods


@dataclass
class MethodCheck:
    """What :func:`run_method_check` found: the stored result, the reloaded model and where they are."""

    name: str
    plugin: str
    result: Any  # odnbench.Result
    model: Any  # torch.nn.Module, reloaded from model.safetensors with odnbench.store.load_model
    results_dir: Path
    cell_dir: Path
    results: list[Any]  # every cell's odnbench.Result, dependencies included
    row: dict  # the method's leaderboard row (rank, label, top1_mean, params, ...), as `--format json` gives it

    @property
    def info(self) -> dict:
        return self.result.method_info

    @property
    def metrics(self) -> dict:
        return self.result.metrics

    @property
    def facts(self):
        return self.result.facts

    def leaderboard(self, fmt: str = "md") -> str:
        from odnbench import report

        return report.render(self.results_dir, fmt)


def check_declaration(method: Method, plugin: str = "?") -> None:
    """Parameters are unique identifiers whose defaults pass their own validation and survive
    ``--set NAME=<default>`` unchanged; ``unused_recipe_fields`` names recipe fields only."""
    where = f"method {method.name!r} (plugin {plugin!r})"
    if not isinstance(method.description, str) or not method.description.strip():
        _fail(f"{where}: set a one-line `description` (shown by `odnbench list methods`)")
    seen = set()
    for p in method.params:
        if not p.name.isidentifier():
            _fail(f"{where}: parameter name {p.name!r} must be a Python identifier (used as --set {method.name}.NAME)")
        if p.name in seen:
            _fail(f"{where}: declares parameter {p.name!r} twice")
        seen.add(p.name)
        try:
            value = p.check(p.default, method.name)
        except Exception as exc:
            _fail(f"{where}: the default of parameter {p.name!r} fails its own declaration: {exc} "
                  "(use nullable=True for a None default)")
        text = "none" if value is None else str(value)
        if p.parse(text, method.name) != value:
            _fail(f"{where}: --set {method.name}.{p.name}={text} does not give back the default {value!r}")
    from odnbench.recipes import recipe_params

    unused = getattr(method, "unused_recipe_fields", None) or {}
    fields = recipe_params()
    for name in unused:
        if name not in fields:
            _fail(f"{where}: unused_recipe_fields names {name!r}, which is not a recipe field "
                  f"({', '.join(sorted(fields))})")
    for p in method.params:
        if p.replaces_recipe is not None and p.replaces_recipe not in fields:
            _fail(f"{where}: parameter {p.name!r} declares replaces_recipe={p.replaces_recipe!r}, which is not a "
                  f"recipe field ({', '.join(sorted(fields))})")


def run_method_check(name: str, workdir: Path, *, sets: Iterable[str] = (), dataset: str = "mnist5k",
                     backbone: str = "resnet18", seed: int = 0, preset: str = "smoke", plugins: Iterable = (),
                     data_dir: Path | None = None, download: bool = False, device: str = "cpu",
                     registry: Registry | None = None) -> MethodCheck:
    """Run method ``name`` (and the cells it requires) through the real harness into ``workdir``
    and check the contract end to end. Raises ``AssertionError`` naming what to fix."""
    from odnbench import harness, plan
    from odnbench.metrics import count_params, top1
    from odnbench.progress import Progress
    from odnbench.recipes import Recipe
    from odnbench.report import build_boards, load_results
    from odnbench.runtime import DATA_CACHE, default_data_dir, pick_device
    from odnbench.store import MODEL_FILE, RESULT_FILE, ResultStore, load_model

    reg = registry or registry_with(*plugins)
    if name not in reg.items["method"]:
        _fail(f"method {name!r} is not registered. Loaded plugins: {', '.join(sorted(reg.plugins)) or 'none'}; "
              f"methods: {', '.join(reg.names('method'))}. Is your package installed (pip install -e .), "
              "its entry point in [project.entry-points.odnbench], and ODNBENCH_LOAD_PLUGINS unset or naming it?")
    plugin = reg.owner[("method", name)]
    check_declaration(reg.method(name), plugin)

    workdir = Path(workdir)
    results_dir = workdir / "results"
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    grid = plan.plan_grid(reg, [name], [dataset], [backbone], [seed], preset, list(sets))
    run_device = pick_device(device)
    report = harness.run_grid(reg, grid, results_dir, data_dir=data_dir, download=download, device=run_device,
                              resume=False, progress=Progress(quiet=True))
    cell = next(c for c in reversed(grid.cells) if c.config["method"] == name and not c.added_as_dependency)
    store = ResultStore(results_dir)
    cell_dir = store.cell_dir(cell.config)
    if not (cell_dir / RESULT_FILE).is_file():
        _fail(f"method {name!r}: no result.json was written in {cell_dir}")
    result = store.read(cell_dir)
    assert result is not None  # its result.json exists (checked above)
    if not result.ok:
        deps = "; ".join(f"{r.method}: {r.error}" for r in report.failed if r is not None and r.method != name)
        _fail(f"method {name!r} (plugin {plugin!r}) failed: {result.error}"
              + (f"\n{result.traceback}" if result.traceback else "")
              + (f"\ncells it needed failed too: {deps}" if deps else ""))
    if result.plugin != plugin:
        _fail(f"result.json names plugin {result.plugin!r}, expected {plugin!r}")

    m: dict[str, Any] = result.metrics or {}  # an ok result has its metrics
    if not (0.0 <= m["top1"] <= 100.0 and 0.0 <= m["val_top1"] <= 100.0):
        _fail(f"method {name!r}: accuracy out of range: {m['top1']}")
    for key in ("params", "macs", "size_mb"):
        if not m[key] > 0:
            _fail(f"method {name!r}: the exported model has {key} = {m[key]}; it must be a trained network")
    if not (m["latency_ms"]["p50"] > 0 and math.isfinite(m["latency_ms"]["p50"])):
        _fail(f"method {name!r}: the harness could not time the exported model")
    if json.loads(json.dumps(result.method_info)) != result.method_info:
        _fail(f"method {name!r}: method_info does not survive a JSON round trip")

    # The exported file must reload without the method's code and reproduce the stored metrics.
    model = load_model(cell_dir / MODEL_FILE)
    import torch

    if not isinstance(model, torch.nn.Module):
        _fail(f"method {name!r}: {MODEL_FILE} reloads as {type(model).__name__}, not a torch.nn.Module")
    if count_params(model) != m["params"]:
        _fail(f"method {name!r}: reloaded model has {count_params(model)} parameters, result.json says {m['params']}")
    recipe = Recipe.from_dict(cell.config["recipe"])
    splits = DATA_CACHE.get(reg, dataset, data_dir, download, seed, recipe, torch.device("cpu"))
    again = round(top1(model, splits.test.x.cpu(), splits.test.y.cpu(), recipe.eval_batch_size), 4)
    if abs(again - m["top1"]) > 1e-6:
        _fail(f"method {name!r}: the reloaded model scores {again}% on test, result.json says {m['top1']}%; "
              "return the exact model you trained (in eval mode it must be deterministic)")

    boards = build_boards(load_results(results_dir))
    rows = [dataclasses.asdict(row.stats) for board in boards for row in board.rows
            if row.method == name and row.stats is not None]
    if not rows:
        _fail(f"method {name!r} has no row on the leaderboard built from {results_dir}")

    # Same config, same cell key: a rerun must resume instead of training again.
    again_grid = plan.plan_grid(reg, [name], [dataset], [backbone], [seed], preset, list(sets))
    if [c.key for c in again_grid.cells] != [c.key for c in grid.cells]:
        _fail(f"method {name!r}: planning the same grid twice gave different cell keys; "
              "parameters and requires() must be deterministic")

    return MethodCheck(name, plugin, result, model, results_dir, cell_dir, report.results, rows[0])


# ----------------------------------------------------------------------------------- datasets


@dataclass
class DatasetCheck:
    name: str
    sizes: dict[str, int]
    info: Any  # odnbench.data.DatasetInfo
    full: MethodCheck  # the `full` method ranked on this dataset


def run_dataset_check(name: str, workdir: Path, *, plugins: Iterable = (), data_dir: Path | None = None,
                      download: bool = False, seed: int = 0, backbone: str = "resnet18") -> DatasetCheck:
    """Load dataset ``name``, check its splits against its ``DatasetInfo``, then train and rank the
    ``full`` method on it (smoke preset)."""
    import torch

    from odnbench.data import DatasetInfo, Split, Splits
    from odnbench.runtime import default_data_dir

    reg = registry_with(*plugins)
    if name not in reg.items["dataset"]:
        _fail(f"dataset {name!r} is not registered; datasets: {', '.join(reg.names('dataset'))}")
    dataset: Dataset = reg.dataset(name)
    where = f"dataset {name!r} (plugin {reg.owner[('dataset', name)]!r})"
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    splits = dataset.load(data_dir, download=download, seed=seed)
    if not isinstance(splits, Splits) or not isinstance(splits.info, DatasetInfo):
        _fail(f"{where}: load() must return odnbench.data.Splits(info=DatasetInfo(...), train, val, test)")
    info = splits.info
    if info.name != name:
        _fail(f"{where}: DatasetInfo.name is {info.name!r}; use the registered name {name!r}")
    for part in ("train", "val", "test"):
        split = getattr(splits, part)
        if not isinstance(split, Split) or len(split) == 0:
            _fail(f"{where}: the {part} split is missing or empty")
        x, y = split.x, split.y
        if x.dtype != torch.float32 or x.dim() != 4 or tuple(x.shape[1:]) != (info.channels, info.image_size,
                                                                                   info.image_size):
            _fail(f"{where}: {part}.x must be float32 N x {info.channels} x {info.image_size} x {info.image_size} "
                  f"(as DatasetInfo says), got {x.dtype} {tuple(x.shape)}")
        if y.dtype != torch.int64 or y.shape != (x.shape[0],):
            _fail(f"{where}: {part}.y must be int64 with one label per image, got {y.dtype} {tuple(y.shape)}")
        if int(y.min()) < 0 or int(y.max()) >= info.num_classes:
            _fail(f"{where}: {part} labels must lie in 0..{info.num_classes - 1}, got {int(y.min())}..{int(y.max())}")
    again = dataset.load(data_dir, download=False, seed=seed)
    if not torch.equal(again.val.y, splits.val.y) or not torch.equal(again.test.y, splits.test.y):
        _fail(f"{where}: two loads with the same seed gave different splits; carve validation with the seed")
    full = run_method_check(_baseline(reg), workdir, dataset=name, backbone=backbone, seed=seed, data_dir=data_dir,
                            download=download, registry=reg)
    return DatasetCheck(name, splits.sizes(), info, full)


def _baseline(reg: Registry) -> str:
    """The installed baseline method (``role = "baseline"``: ``full`` among the built-ins), which a
    dataset or backbone check trains on it."""
    name = reg.baseline()
    if name is None:
        _fail("no installed method declares role = 'baseline' (the built-in full does): install odnbench's "
              "built-in plugins, or select them with ODNBENCH_LOAD_PLUGINS=odnbench,<your plugin>")
    return name


# ----------------------------------------------------------------------------------- backbones


@dataclass
class BackboneCheck:
    name: str
    depth: int
    widths: list[int]  # channels after each block
    full: MethodCheck  # the `full` method ranked with this backbone
    stages: list[int]  # blocks per stage, as the DepthNet declares them


def run_backbone_check(name: str, workdir: Path, *, plugins: Iterable = (), dataset: str = "mnist5k",
                       data_dir: Path | None = None, sets: Iterable[str] = ()) -> BackboneCheck:
    """Build backbone ``name`` as the ``smoke`` preset would (with ``sets`` such as
    ``recipe.width=full`` applied), check the DepthNet it returns (block widths, stages, every
    truncation), then train and rank the ``full`` method with it."""
    import torch

    from odnbench.depthnet import DepthNet
    from odnbench.plan import check_width, split_overrides
    from odnbench.recipes import make_recipe

    reg = registry_with(*plugins)
    backbone: Backbone = reg.backbone(name)
    where = f"backbone {name!r}"
    recipe = make_recipe("smoke", split_overrides(list(sets)).get("recipe", {}))
    try:
        check_width(reg, name, recipe)
    except OdnbenchError as exc:
        _fail(f"{where}: {exc}. Pass sets=['recipe.width=...'] with widths it takes (or full)")
    net = backbone.build(in_chans=1, num_classes=10, stem=recipe.stem, width=recipe.widths)
    if not isinstance(net, DepthNet):
        _fail(f"{where}: build() returned {type(net).__name__}; return odnbench.depthnet.DepthNet(stem, blocks, "
              "widths, head) so methods can cut it by block")
    if net.num_classes != 10:
        _fail(f"{where}: built for 10 classes, the DepthNet says num_classes={net.num_classes}")
    x = torch.randn(2, 1, 28, 28)
    net.eval()
    with torch.no_grad():
        if tuple(net(x).shape) != (2, 10):
            _fail(f"{where}: forward gives {tuple(net(x).shape)} for 2 images and 10 classes, expected (2, 10)")
        feats = net.block_outputs(x)
        got = [int(f.shape[1]) for f in feats]
        if got != net.widths:
            _fail(f"{where}: DepthNet.widths says {net.widths} but the blocks output {got} channels")
        sizes = []
        for k in range(1, net.depth + 1):
            cut = net.truncated(k)
            if tuple(cut(x).shape) != (2, 10):
                _fail(f"{where}: the network cut after block {k} does not classify")
            sizes.append(sum(p.numel() for p in cut.parameters()))
    if any(a > b for a, b in itertools.pairwise(sizes)):
        _fail(f"{where}: cutting deeper must not make the network smaller: {sizes}")
    full = run_method_check(_baseline(reg), workdir, dataset=dataset, backbone=name, data_dir=data_dir, registry=reg,
                            sets=sets)
    return BackboneCheck(name, net.depth, list(net.widths), full, list(net.stages))


# ----------------------------------------------------------------------------------- fixtures


def _numbered(tmp_path: Path, prefix: str):
    counter = itertools.count(1)
    return lambda name: tmp_path / f"{prefix}-{name}-{next(counter)}"


@pytest.fixture
def check_method(tmp_path):
    """``check_method(name, sets=(), dataset="mnist5k", backbone="resnet18", preset="smoke", plugins=())``
    (``preset="tiny"`` where the test needs a model that learns) runs the method through the real
    harness into ``tmp_path`` and returns a :class:`MethodCheck`."""
    where = _numbered(tmp_path, "method")
    return lambda name, **kw: run_method_check(name, where(name), **kw)


@pytest.fixture
def check_dataset(tmp_path):
    """``check_dataset(name, plugins=(), data_dir=None)`` -> :class:`DatasetCheck`."""
    where = _numbered(tmp_path, "dataset")
    return lambda name, **kw: run_dataset_check(name, where(name), **kw)


@pytest.fixture
def check_backbone(tmp_path):
    """``check_backbone(name, plugins=(), sets=())`` -> :class:`BackboneCheck`."""
    where = _numbered(tmp_path, "backbone")
    return lambda name, **kw: run_backbone_check(name, where(name), **kw)


__all__ += ["ContractError", "check_declaration"]


# ----------------------------------------------------------------------------------- the command line


def run_cli(args: Iterable[str], *, env: dict[str, str] | None = None, input: str | None = None,
            catch_exceptions: bool = True):
    """Run ``odnbench ARGS`` in this process with click's ``CliRunner`` and return its
    ``click.testing.Result`` (``exit_code``, ``stdout``, ``stderr``, ``output``), the plugins' own
    commands included, exactly as the installed ``odnbench`` (and ``python -m odnbench``) run them::

        out = run_cli(["compare", "--method", "mymethod", "--preset", "smoke", "--results", str(tmp_path)])
        assert out.exit_code == 0, out.output

    An error is one line on ``stderr`` and exit code 2, as for a user."""
    from click.testing import CliRunner

    from odnbench.cli import command

    return CliRunner().invoke(command(), [str(a) for a in args], env=env, input=input, prog_name="odnbench",
                              catch_exceptions=catch_exceptions)


__all__ += ["run_cli"]


# ----------------------------------------------------------------------------------- latency (pytest-benchmark)


def check_latency(benchmark: Any, model: Any, input_shape: tuple[int, ...], *, batch: int = 1, rounds: int = 10,
                  warmup_rounds: int = 1, threads: int = 1, round_seconds: float = 0.02) -> float:
    """Time ``model``'s forward pass on ``batch`` images of ``input_shape`` (C, H, W) with
    pytest-benchmark's ``benchmark`` fixture, as the harness times an exported model: eval mode,
    ``inference_mode``, ``threads`` torch threads, on the device of its parameters. Returns
    milliseconds per image and puts ``ms_per_image``, ``images_per_s``, ``batch`` and ``threads`` in
    ``benchmark.extra_info`` (saved with ``--benchmark-save``). Each of ``rounds`` rounds runs the
    forward pass enough times to last about ``round_seconds``. Under ``--benchmark-disable`` it runs
    one forward pass (a smoke check that the model takes the input) and times that one."""
    import time

    import torch

    from odnbench.metrics import torch_threads

    if not isinstance(model, torch.nn.Module):
        _fail(f"check_latency: model is a {type(model).__name__}, not a torch.nn.Module")
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        _fail(f"check_latency: input_shape {input_shape!r} must be positive ints (C, H, W), without the batch")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        _fail(f"check_latency: batch={batch!r} must be a positive int")
    first = next(iter(model.parameters()), None)
    device = first.device if first is not None else torch.device("cpu")
    x = torch.randn((batch, *shape), device=device)
    was_training = model.training
    model.eval()
    calls: list[float] = []

    def forward():
        start = time.perf_counter()
        out = model(x)
        if device.type == "cuda":  # the time of the work, not of queueing it
            torch.cuda.synchronize(device)
        calls.append(time.perf_counter() - start)
        return out

    try:
        with torch_threads(threads) as used, torch.inference_mode():
            out = forward()  # checks the output and sizes the rounds
            if not isinstance(out, torch.Tensor) or out.dim() < 1 or out.shape[0] != batch:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                _fail(f"check_latency: the model returns {got} for a batch of {batch}; it must return one row per "
                      "image (a tensor of shape (batch, classes))")
            iterations = max(1, min(1000, int(round_seconds / max(calls[-1], 1e-6))))
            calls.clear()
            benchmark.pedantic(forward, rounds=rounds, warmup_rounds=warmup_rounds, iterations=iterations)
    finally:
        model.train(was_training)
    if getattr(benchmark, "enabled", False) and getattr(benchmark, "stats", None) is not None:
        per_call = float(benchmark.stats.stats.median)  # the table's median (seconds per call)
    else:
        per_call = sorted(calls)[len(calls) // 2]
    ms_per_image = 1000.0 * per_call / batch
    benchmark.extra_info.update({"ms_per_image": round(ms_per_image, 6), "images_per_s": round(1000.0 / ms_per_image, 1),
                                 "batch": batch, "threads": used, "device": device.type})
    return ms_per_image


__all__ += ["check_latency"]

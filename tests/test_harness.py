"""The harness: grids, cell keys, --set, resume, failure isolation, atomic writes, crash safety,
determinism and the result.json every other tool reads. Real training throughout (the smoke
preset: 256 real digits, one epoch, a narrow ResNet-18), so each cell takes about a second."""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner, Result

import odnbench
from odnbench import (
    Method,
    MethodOutput,
    Param,
    Requirement,
    hookimpl,
    plan,
    registry,
    runtime,
    store,
)
from odnbench.errors import OdnbenchError, UnknownNameError
from odnbench.recipes import make_recipe
from odnbench.testing import registry_with

BUILTIN = "datasets,timm-resnet,full"


# ----------------------------------------------------------------------------- in-process test methods


class NeedsFull(Method):
    """Starts from the full-depth model of the same dataset/backbone/seed, as pruning does."""

    name = "needsfull"
    description = "test method: reuses the full-depth result"
    params = (Param("scale", float, 1.0), Param("verbose", bool, False),
              Param("mode", str, "a", choices=("a", "b")), Param("cap", int, None, nullable=True))

    def requires(self, params):
        return [Requirement("full")]

    def run(self, ctx):
        dep = ctx.dependency("full")  # its cost is counted by the harness
        return MethodOutput(dep.load_model(ctx.device), {"from": dep.key})


class AlsoNeedsFull(NeedsFull):
    name = "alsoneedsfull"
    description = "test method: a second user of the same full-depth cell"
    params = ()


class Boom(Method):
    name = "boom"
    description = "test method: always fails"

    def run(self, ctx):
        raise RuntimeError("deliberate failure in boom")


class TestMethods:
    @hookimpl
    def register_methods(self, register):
        register(NeedsFull())
        register(AlsoNeedsFull())
        register(Boom())


@pytest.fixture
def reg(monkeypatch):
    """Built-in plugins plus the test methods; also what the CLI sees (registry._cached)."""
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
    r = registry_with(TestMethods())
    monkeypatch.setattr(registry, "_cached", r)
    return r


def compare(results: Path, *args: str) -> Result:
    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["compare", "--preset", "smoke", "--results", str(results), *args])
    assert not list(results.rglob("*.tmp")), "a temporary file was left behind"
    return out


def results_by_method(results: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for _, r in store.ResultStore(results).raw():
        out.setdefault(r["config"]["method"], []).append(r)
    return out


# ----------------------------------------------------------------------------- planning


def test_grid_is_the_cartesian_product_with_seeds_as_values(reg):
    grid = plan.plan_grid(reg, ["full"], ["mnist5k", "mnist"], ["resnet18", "resnet34"], [7, 0, 3], "smoke")
    got = [(c.config["method"], c.config["dataset"], c.config["backbone"], c.config["seed"]) for c in grid.cells]
    assert got == list(itertools.product(["full"], ["mnist5k", "mnist"], ["resnet18", "resnet34"], [7, 0, 3]))
    assert len({c.key for c in grid.cells}) == 12
    assert not any(c.added_as_dependency or c.requires for c in grid.cells)


def test_dependency_cells_are_added_once_and_run_first(reg):
    grid = plan.plan_grid(reg, ["needsfull", "alsoneedsfull"], ["mnist5k"], ["resnet18"], [0, 1], "smoke")
    methods = [(c.config["method"], c.config["seed"]) for c in grid.cells]
    assert sorted(methods) == sorted([("full", 0), ("full", 1), ("needsfull", 0), ("needsfull", 1),
                                      ("alsoneedsfull", 0), ("alsoneedsfull", 1)])
    position = {c.key: i for i, c in enumerate(grid.cells)}
    fulls = {c.config["seed"]: c for c in grid.cells if c.config["method"] == "full"}
    assert all(c.added_as_dependency for c in fulls.values())
    for cell in grid.cells:
        if cell.config["method"] != "full":
            dep = fulls[cell.config["seed"]]  # the full cell of the same seed, shared by both methods
            assert cell.requires == {"full": dep.key}
            assert position[dep.key] < position[cell.key]

    # Asked for explicitly as well: still one cell, and no longer marked as a mere dependency.
    grid = plan.plan_grid(reg, ["needsfull", "full"], ["mnist5k"], ["resnet18"], [0], "smoke")
    assert [c.config["method"] for c in grid.cells] == ["full", "needsfull"]
    assert not grid.cells[0].added_as_dependency

    # `run` plans without dependencies but still knows which cell it needs.
    alone = plan.plan_grid(reg, ["needsfull"], ["mnist5k"], ["resnet18"], [0], "smoke", add_dependencies=False)
    assert [c.config["method"] for c in alone.cells] == ["needsfull"]
    assert alone.cells[0].requires == {"full": fulls[0].key}


def test_cell_keys_are_stable_and_hold_no_paths_or_times(reg, tmp_path):
    def cells(*sets):
        return plan.plan_grid(reg, ["needsfull"], ["mnist5k"], ["resnet18"], [0], "smoke", list(sets)).cells

    first = cells()
    time.sleep(0.01)
    assert [c.key for c in cells()] == [c.key for c in first]
    config = first[-1].config
    text = store.canonical_json(config)
    assert "/" not in text and str(time.localtime().tm_year) not in text  # no path, no timestamp
    assert first[-1].dirname == f"needsfull-mnist5k-resnet18-s0-{first[-1].key}"
    # The key is a hash of the canonical config: key order does not matter, every value does.
    assert store.cell_key(dict(reversed(list(config.items())))) == store.cell_key(config)
    assert cells("needsfull.scale=2")[-1].key != first[-1].key
    assert cells("recipe.epochs=2")[-1].key != first[-1].key
    assert cells("recipe.epochs=2")[0].key != first[0].key  # the dependency follows the recipe
    assert cells("needsfull.scale=1.0")[-1].key == first[-1].key  # same value, same cell

    # Another process (another hash seed, another working directory) computes the same keys.
    code = ("from odnbench import plan; from odnbench.registry import load_registry; "
            "g = plan.plan_grid(load_registry(), ['full'], ['mnist5k'], ['resnet18'], [0], 'smoke'); "
            "print(g.cells[0].key)")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "ODNBENCH_LOAD_PLUGINS": BUILTIN}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.stdout.strip() == first[0].key, out.stderr


def test_set_values_are_typed(reg):
    grid = plan.plan_grid(reg, ["needsfull"], ["mnist5k"], ["resnet18"], [0], "smoke", [
        "needsfull.scale=2", "needsfull.verbose=yes", "needsfull.mode=b", "needsfull.cap=none",
        "recipe.epochs=3", "recipe.lr=1e-3", "recipe.train_limit=none", "recipe.width=16,32,64,128",
        "recipe.optimizer = adamw",
    ])
    cell = grid.cells[-1]
    assert cell.config["params"] == {"scale": 2.0, "verbose": True, "mode": "b", "cap": None}
    recipe = cell.config["recipe"]
    assert (recipe["epochs"], recipe["lr"], recipe["train_limit"], recipe["width"], recipe["optimizer"]) == \
        (3, 0.001, None, "16,32,64,128", "adamw")
    assert cell.config["input"] == {"stem": "cifar", "width": "16,32,64,128"}
    assert grid.cells[0].config["recipe"] == recipe  # the dependency runs with the same recipe
    assert plan.split_overrides(["a.b=c=d", "x.y.z=1"]) == {"a": {"b": "c=d"}, "x": {"y.z": "1"}}


@pytest.mark.parametrize("bad, message", [
    ("recipe.epochs=3.5", "recipe.epochs='3.5' is not a valid int"),
    ("recipe.lr=fast", "recipe.lr='fast' is not a valid float"),
    ("recipe.optimizer=adam", "recipe.optimizer='adam' is not allowed; choose one of: sgd, adamw"),
    ("recipe.width=16,x", "recipe.width='16,x': use 'full' or positive stage widths"),
    ("recipe.epochs=none", "recipe.epochs='none' is not a valid int"),
    ("needsfull.verbose=maybe", "needsfull.verbose='maybe' is not a valid bool"),
    ("needsfull.scale=big", "needsfull.scale='big' is not a valid float"),
    ("full.scale=2", "--set full.scale=2: unknown parameter of method 'full' 'scale'"),
    ("needsfull.scal=2", "--set needsfull.scal=2: unknown parameter of method 'needsfull' 'scal'. Did you mean: scale"),
    ("recipe.eopchs=2", "Did you mean: epochs"),
    ("scale=2", "expected METHOD.PARAM=VALUE"),
])
def test_bad_set_values_are_one_line_errors(reg, bad, message):
    with pytest.raises(OdnbenchError) as err:
        plan.plan_grid(reg, ["needsfull"], ["mnist5k"], ["resnet18"], [0], "smoke", [bad])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_unknown_names_in_a_grid(reg):
    for kind, args in [("method", (["ful"], ["mnist5k"], ["resnet18"])),
                       ("dataset", (["full"], ["mnist-5k"], ["resnet18"])),
                       ("backbone", (["full"], ["mnist5k"], ["resnet-18"]))]:
        with pytest.raises(UnknownNameError) as err:
            plan.plan_grid(reg, *args, [0], "smoke")
        assert err.value.kind == kind and "Did you mean" in str(err.value)


# ----------------------------------------------------------------------------- running cells


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`odnbench compare --method full --preset smoke`, once for the module (real training)."""
    results = tmp_path_factory.mktemp("smoke") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
        mp.setattr(registry, "_cached", None)
        out = compare(results, "--method", "full")
    assert out.exit_code == 0, out.output
    return results, out


def only_result(results: Path) -> tuple[Path, dict]:
    found = list(store.ResultStore(results).raw())
    assert len(found) == 1
    return found[0]


def test_result_json_has_every_field_other_tools_read(smoke_run):
    results, out = smoke_run
    cell_dir, r = only_result(results)
    assert r["status"] == "ok" and r["error"] is None
    c = r["config"]
    assert (c["method"], c["dataset"], c["backbone"], c["seed"], c["preset"]) == \
        ("full", "mnist5k", "resnet18", 0, "smoke")
    assert cell_dir.name == store.cell_dirname(c) and r["key"] == store.cell_key(c)
    assert c["recipe"]["init"] == make_recipe("smoke").init and c["protocol"] == odnbench.PROTOCOL_VERSION

    m = r["metrics"]
    assert 0 <= m["top1"] <= 100 and m["test_examples"] == 256
    model = store.load_model(cell_dir / store.MODEL_FILE)
    from odnbench import metrics

    assert m["params"] == metrics.count_params(model) > 0
    assert m["size_mb"] == pytest.approx(metrics.saved_size_mb(model), abs=1e-6)
    assert m["size_mib"] == pytest.approx(metrics.tensor_size_mib(model), abs=1e-6)
    assert m["flops"] == 2 * m["macs"] and m["macs"] == metrics.count_macs(model, (1, 28, 28))
    assert 0 < m["latency_ms"]["p50"] <= m["latency_ms"]["p90"] and m["latency_ms"]["batch_size"] == 1
    assert m["throughput"]["images_per_s"] > 0 and m["throughput"]["batch_size"] == 32
    # The stored accuracy is the exported model's own, on the (seed-independent) test subset.
    splits = runtime.DATA_CACHE.get(registry_with(installed=True), "mnist5k", Path("."), False, 0,
                                    make_recipe("smoke"), torch.device("cpu"))
    assert metrics.top1(model, splits.test.x, splits.test.y) == pytest.approx(m["top1"], abs=1e-4)

    cost = r["cost"]
    assert (cost["epochs"], cost["sample_steps"], cost["device"]) == (1, 256, "cpu")
    assert cost["train_seconds"] > 0
    assert r["facts"]["depth"] == 8 and len(r["method_info"]["history"]) == 1
    assert r["facts"]["converged"] is False  # smoke: one epoch, the cap ends it before patience

    env = r["env"]
    assert env["python"] == ".".join(map(str, sys.version_info[:3]))
    assert env["torch"] == torch.__version__ and env["odnbench"] == odnbench.__version__
    import importlib.metadata as md

    assert env["timm"] == md.version("timm")
    assert "torch_pruning" not in env  # only a method that declares it (prune's env_packages) records it
    assert r["data"]["sizes"] == {"train": 256, "val": 128, "test": 256}

    board = (results / "leaderboard.md").read_text()
    assert "| full |" in board  # the full board is written; the terminal gets its summary and path
    assert f"  {results / 'leaderboard.md'}" in out.stdout.splitlines() and "|" not in out.stdout
    assert "1 ok (0 resumed), 0 failed" in out.stdout
    # Readable like any other file (mkstemp alone would make it private to the owner).
    assert (cell_dir / store.RESULT_FILE).stat().st_mode & 0o777 == 0o666 & ~store._umask()


@pytest.mark.slow
def test_same_seed_same_accuracy(smoke_run, tmp_path, monkeypatch):
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
    first = only_result(smoke_run[0])[1]
    out = compare(tmp_path / "again", "--method", "full", "--no-resume")
    assert out.exit_code == 0, out.output
    second = only_result(tmp_path / "again")[1]
    assert second["key"] == first["key"]
    assert second["metrics"]["top1"] == first["metrics"]["top1"]
    assert second["metrics"]["val_top1"] == first["metrics"]["val_top1"]
    assert second["method_info"]["history"] == first["method_info"]["history"]


def test_resume_skips_finished_cells_and_no_resume_reruns(smoke_run, tmp_path, monkeypatch):
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
    results = tmp_path / "results"
    shutil.copytree(smoke_run[0], results)
    cell_dir, before = only_result(results)
    stamp = (cell_dir / store.RESULT_FILE).stat().st_mtime_ns
    out = compare(results, "--method", "full")
    assert out.exit_code == 0
    assert "done already (resume), skipped" in out.stderr and "1 ok (1 resumed)" in out.stdout
    assert (cell_dir / store.RESULT_FILE).stat().st_mtime_ns == stamp

    out = compare(results, "--method", "full", "--no-resume")
    assert out.exit_code == 0 and "1 ok (0 resumed)" in out.stdout and "skipped" not in out.stderr
    assert (cell_dir / store.RESULT_FILE).stat().st_mtime_ns != stamp
    assert only_result(results)[1]["metrics"]["top1"] == before["metrics"]["top1"]


def test_a_failed_cell_is_recorded_and_the_grid_goes_on(reg, tmp_path):
    results = tmp_path / "results"
    out = compare(results, "--method", "boom", "--method", "needsfull")
    assert out.exit_code == 1
    assert "FAILED boom mnist5k seed 0: method 'boom' (plugin 'TestMethods') raised RuntimeError: " \
           "deliberate failure in boom" in out.stderr
    assert "2 ok (0 resumed), 1 failed" in out.stdout
    got = results_by_method(results)
    [boom] = got["boom"]
    assert boom["status"] == "failed" and "deliberate failure in boom" in boom["error"]
    assert "RuntimeError" in boom["traceback"] and boom["metrics"] is None
    assert not (results / store.cell_dirname(boom["config"]) / store.MODEL_FILE).exists()
    # The cells after it ran, and the dependency reached the method that needed it.
    [full], [needs] = got["full"], got["needsfull"]
    assert full["status"] == needs["status"] == "ok"
    assert needs["method_info"] == {"from": full["key"]} and needs["requires"] == {"full": full["key"]}
    assert needs["metrics"]["top1"] == full["metrics"]["top1"]  # the very same model
    assert needs["cost"]["parts"]["full (dependency)"]["epochs"] == full["cost"]["epochs"] == 1
    assert needs["cost"]["dependencies"] == {full["key"]: {"method": "full", **{
        k: full["cost"]["own"][k] for k in ("epochs", "sample_steps", "train_seconds", "train_macs")}}}
    assert "| boom |" not in (results / "leaderboard.md").read_text()

    # A rerun retries the failed cell and resumes the finished ones.
    out = compare(results, "--method", "boom", "--method", "needsfull")
    assert out.exit_code == 1 and "2 ok (2 resumed), 1 failed" in out.stdout

    # --fail-fast stops at the first failure.
    out = compare(tmp_path / "fast", "--method", "boom", "--method", "full", "--fail-fast")
    assert out.exit_code == 1 and set(results_by_method(tmp_path / "fast")) == {"boom"}


def test_run_without_its_dependency_says_what_to_do(reg, tmp_path):
    from odnbench.cli import cli

    results = tmp_path / "results"
    out = CliRunner().invoke(cli, ["run", "--method", "needsfull", "--preset", "smoke", "--results", str(results)])
    assert out.exit_code == 1
    assert "needsfull needs a finished 'full' result for mnist5k/resnet18/seed 0/preset smoke" in out.stderr
    assert "odnbench compare --method full --method needsfull" in out.stderr
    [stored] = results_by_method(results)["needsfull"]
    assert stored["status"] == "failed" and "MissingDependencyError" in stored["error"]


# ----------------------------------------------------------------------------- atomic writes


@pytest.mark.parametrize("where, exc", [("fsync", KeyboardInterrupt), ("replace", OSError)])
def test_a_crash_while_writing_keeps_the_old_file(tmp_path, monkeypatch, where, exc):
    path = tmp_path / "cell" / store.RESULT_FILE
    store.write_json(path, {"status": "ok", "n": 1})

    def crash(*args):
        raise exc("simulated crash")

    monkeypatch.setattr(store.os, where, crash)
    with pytest.raises(exc):
        store.write_json(path, {"status": "ok", "n": 2, "padding": "x" * 100_000})
    monkeypatch.undo()
    assert store.read_json(path) == {"status": "ok", "n": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == [store.RESULT_FILE]


@pytest.mark.slow
def test_sigkilled_grid_resumes_only_the_missing_cells(tmp_path, monkeypatch):
    results = tmp_path / "results"
    env = {**os.environ, "ODNBENCH_LOAD_PLUGINS": BUILTIN, "OMP_NUM_THREADS": "1"}
    script = shutil.which("odnbench")
    cmd = ([script] if script else [sys.executable, "-c", "import sys; from odnbench.cli import main; sys.exit(main())"])
    args = ["compare", "--method", "full", "--seed", "0", "--seed", "1", "--seed", "2", "--preset", "smoke",
            "--results", str(results), "--quiet"]
    log = open(tmp_path / "log.txt", "w")
    proc = subprocess.Popen(cmd + args, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    try:
        while True:
            files = list(results.glob(f"*/{store.RESULT_FILE}"))
            for f in files:  # every result.json visible at any moment is complete
                assert store.read_json(f)["status"] == "ok"
            if files:
                proc.send_signal(signal.SIGKILL)
                break
            assert proc.poll() is None, (tmp_path / "log.txt").read_text()
            assert time.monotonic() < deadline, "no result.json appeared"
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    done = {f.parent.name: f.stat().st_mtime_ns for f in results.glob(f"*/{store.RESULT_FILE}")}
    assert 1 <= len(done) < 3
    assert all(store.read_json(results / name / store.RESULT_FILE)["status"] == "ok" for name in done)

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", BUILTIN)
    out = compare(results, "--method", "full", "--seed", "0", "--seed", "1", "--seed", "2")
    assert out.exit_code == 0, out.output
    assert f"3 ok ({len(done)} resumed), 0 failed" in out.stdout
    assert out.stderr.count("done already (resume), skipped") == len(done)
    finished = list(store.ResultStore(results).raw())
    assert sorted(r["config"]["seed"] for _, r in finished) == [0, 1, 2]
    for name, stamp in done.items():  # the cells finished before the kill were not touched
        assert (results / name / store.RESULT_FILE).stat().st_mtime_ns == stamp

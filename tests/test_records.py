"""Typed records with one owner each: artifacts from ctx.save_model (read by the record, never by a
file-name pattern), the method's role and env packages stored at run time, facts declared once,
and older records read as schema 5 through result.py's upgrade. Real smoke-preset cells."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from odnbench import Method, MethodOutput, hookimpl
from odnbench.contract import MethodContext
from odnbench.errors import OdnbenchDeprecationWarning, PluginError
from odnbench.progress import Progress
from odnbench.result import SCHEMA_VERSION, Facts, Result, schema_problems
from odnbench.store import MODEL_FILE, RESULT_FILE, ResultStore, write_json
from odnbench.testing import registry_with


class Saver(Method):
    """Keeps two cuts of its network as artifacts, the way ODN keeps its depth models."""

    name = "saver"
    description = "test: keeps extra models through ctx.save_model"
    env_packages = ("pluggy",)

    def run(self, ctx):
        net = ctx.build_backbone().to(ctx.device)
        for k in (1, 2):
            path = ctx.save_model(f"depth-{k}", net.truncated(k))
            assert path == ctx.workdir / f"depth-{k}.safetensors"
        return MethodOutput(net.truncated(2), {}, depth=2)


class OldSaver(Method):
    """Writes its extra model into ctx.workdir by hand, as before 0.2."""

    name = "oldsaver"
    description = "test: an extra model written by file name"

    def run(self, ctx):
        from odnbench.store import save_model

        net = ctx.build_backbone().to(ctx.device)
        save_model(net.truncated(1), ctx.workdir / "shallow.safetensors")
        return MethodOutput(net.truncated(2), {})


class UsesArtifact(Method):
    """Starts from an artifact of the cell it requires."""

    name = "usesartifact"
    description = "test: loads its dependency's depth-1 artifact"

    def requires(self, params):
        from odnbench import Requirement

        return [Requirement("saver")]

    def run(self, ctx):
        dep = ctx.dependency("saver")
        model = dep.load_artifact("depth-1", ctx.device)
        return MethodOutput(model, {"from": dep.artifacts["depth-1"]["file"]})


class MyBase(Method):
    name = "mybase"
    description = "test: a baseline that is not called full"
    role = "baseline"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().to(ctx.device), {})


class FromBase(Method):
    """ctx.start_from() with no name: the baseline dependency, whatever it is called."""

    name = "frombase"
    description = "test: starts from the baseline dependency"

    def requires(self, params):
        from odnbench import Requirement

        return [Requirement("mybase"), Requirement("saver")]

    def run(self, ctx):
        return MethodOutput(ctx.start_from().truncated(1), {})


class Plugin:
    @hookimpl
    def register_methods(self, register):
        for m in (Saver, OldSaver, UsesArtifact, MyBase, FromBase):
            register(m())


@pytest.fixture
def reg():
    return registry_with(Plugin())


def run(reg, tmp_path, methods, **kwargs):
    from odnbench.harness import run_grid
    from odnbench.plan import plan_grid

    grid = plan_grid(reg, methods, ["mnist5k"], ["resnet18"], [0], "smoke", add_dependencies=True)
    report = run_grid(reg, grid, tmp_path / "results", data_dir=tmp_path, download=False,
                      device=torch.device("cpu"), progress=Progress(quiet=True), **kwargs)
    return {r.method: r for r in report.results}


def test_save_model_records_artifacts_that_verify_and_dependants_read(reg, tmp_path):
    results = run(reg, tmp_path, ["usesartifact"])
    saver, user = results["saver"], results["usesartifact"]
    assert saver.ok and user.ok, (saver.error, user.error)
    assert set(saver.artifacts) == {"depth-1", "depth-2"}
    entry = saver.artifacts["depth-1"]
    assert entry["file"] == "depth-1.safetensors" and entry["kind"] == "model" and entry["params"] > 0
    assert set(saver.files) == {MODEL_FILE, "depth-1.safetensors", "depth-2.safetensors"}
    assert saver.files["depth-1.safetensors"]["sha256"] == entry["sha256"]
    assert set(saver.stored_files()) == set(saver.files)
    assert user.method_info == {"from": "depth-1.safetensors"} and user.metrics["params"] == entry["params"]
    assert saver.env["pluggy"] and "torch_pruning" not in saver.env  # declared packages only
    assert saver.schema == SCHEMA_VERSION and schema_problems(saver.to_dict()) == []

    from odnbench.verify import verify

    checks = {c.folder.split("-")[0]: c for c in verify(tmp_path / "results", data_dir=tmp_path,
                                                         download=False).cells}
    assert checks["saver"].ok and "2 other model file(s) reloaded and match" in checks["saver"].notes

    # A file the record does not name is not the result's: an extra *.safetensors changes nothing.
    folder = ResultStore(tmp_path / "results").cell_dir(saver.config)
    (folder / "stray.safetensors").write_bytes((folder / "depth-1.safetensors").read_bytes())
    assert set(ResultStore(tmp_path / "results").read(folder).stored_files()) == set(saver.files)
    # An edited artifact is refused when a dependant loads it, naming the artifact.
    (folder / "depth-1.safetensors").write_bytes((folder / "depth-2.safetensors").read_bytes())
    shutil.rmtree(ResultStore(tmp_path / "results").cell_dir(user.config))  # saver resumes, the user reruns
    again = run(reg, tmp_path, ["usesartifact"])
    assert not again["usesartifact"].ok and "artifact 'depth-1'" in again["usesartifact"].error


def test_a_model_written_by_file_name_is_still_recorded_with_a_deprecation_warning(reg, tmp_path):
    with pytest.warns(OdnbenchDeprecationWarning, match=r"shallow\.safetensors.*ctx\.save_model\('shallow'"):
        results = run(reg, tmp_path, ["oldsaver"])
    old = results["oldsaver"]
    assert old.ok and old.artifacts["shallow"]["file"] == "shallow.safetensors"
    assert old.artifacts["shallow"]["params"] > 0 and "shallow.safetensors" in old.files


@pytest.mark.parametrize("name", ["", "a/b", "../x", ".hidden", "model", 3, "x" * 101])
def test_save_model_refuses_a_bad_name(tmp_path, name):
    ctx = MethodContext(method="m", params={}, splits=None, build_backbone=None, recipe=None, seed=0, device=None,
                        progress=Progress(quiet=True), trainer=None, cost=None, workdir=tmp_path)
    with pytest.raises(PluginError) as err:
        ctx.save_model(name, torch.nn.Linear(1, 1))
    assert repr(name) in str(err.value) and "'model'" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_the_baseline_is_the_method_whose_role_says_so(reg, tmp_path):
    from odnbench.report.boards import build_boards

    results = run(reg, tmp_path, ["frombase"])
    assert results["mybase"].role == "baseline" and results["saver"].role is None
    [board] = build_boards(list(results.values()))
    assert board.baseline is not None and board.baseline.method == "mybase"
    assert results["frombase"].ok, results["frombase"].error  # start_from() found mybase by its role
    assert results["frombase"].cost["dependencies"].keys() == {results["mybase"].key, results["saver"].key}


def test_a_method_with_an_unknown_role_is_refused_when_it_registers():
    class Odd(Method):
        name = "odd"
        role = "referee"

    class P:
        @hookimpl
        def register_methods(self, register):
            register(Odd())

    with pytest.raises(PluginError) as err:
        registry_with(P())
    assert "'referee'" in str(err.value) and "'baseline'" in str(err.value)


def test_records_before_schema_5_are_read_as_schema_5(tmp_path):
    sha = "ab" * 32
    v3 = {"status": "ok", "key": "k", "schema": 3, "config": {"method": "full"}, "model_file": MODEL_FILE,
          "files": {MODEL_FILE: {"sha256": sha, "bytes": 10}, "depth-2.safetensors": {"sha256": sha, "bytes": 5}},
          "method_info": {"depth_curve": [{"depth": 2, "model_file": "depth-2.safetensors", "params": 7,
                                           "size_mb": 0.1, "best_val": 90.0}]},
          "reference": {"top1": 99.0}}
    r = Result.from_dict(v3)
    assert r.role == "baseline"  # the built-in baseline was known by name before schema 5
    assert r.artifacts == {"depth-2": {"file": "depth-2.safetensors", "sha256": sha, "bytes": 5, "kind": "model",
                                       "params": 7, "size_mb": 0.1}}
    assert r.reference["preset"] == "paper"
    # The depth comparison's two sides were known by name too; any other method had no role.
    assert Result.from_dict({**v3, "config": {"method": "odn"}}).role == "depth-search"
    assert Result.from_dict({**v3, "config": {"method": "oracle"}}).role == "depth-oracle"
    assert Result.from_dict({**v3, "config": {"method": "scratch"}}).role is None
    # A schema-5 record is taken as stored: no role inferred from a name.
    v4 = Result.from_dict({**v3, "schema": 5, "role": None, "artifacts": {}, "reference": {"top1": 1.0}})
    assert v4.role is None and v4.artifacts == {} and "preset" not in v4.reference


def test_schema_5_checks_artifacts_against_files():
    sha = "cd" * 32
    good = {"status": "ok", "key": "k", "schema": 5, "config": {}, "model_file": MODEL_FILE,
            "files": {MODEL_FILE: {"sha256": sha, "bytes": 1}, "a.safetensors": {"sha256": sha, "bytes": 1}},
            "artifacts": {"a": {"file": "a.safetensors", "sha256": sha, "bytes": 1, "kind": "model"}}}
    from odnbench.result import _v5_problems

    assert _v5_problems(good, "ok") == []
    bad = json.loads(json.dumps(good))
    bad["artifacts"]["a"]["file"] = "b.safetensors"
    assert any("artifacts.a" in p and "b.safetensors" in p for p in _v5_problems(bad, "ok"))
    bad = {**good, "artifacts": {"a": {"file": "../x", "sha256": sha, "bytes": 1, "kind": "model"}}}
    assert any("artifacts.a must be" in p for p in _v5_problems(bad, "ok"))
    assert any("role is 'judge'" in p for p in _v5_problems({**good, "role": "judge"}, "ok"))


def test_facts_are_declared_once():
    from odnbench.contract import MethodOutput as Output

    facts = {f.name for f in dataclasses.fields(Facts)}
    assert facts <= {f.name for f in dataclasses.fields(Output)}
    out = Output(torch.nn.Linear(1, 1), {"a": 1}, depth=3, threshold=97)
    assert Facts.of(out) == Facts(depth=3, threshold=97)
    assert set(Facts.types()) == facts and Facts.types()["threshold"] == (float, int)
    with pytest.raises(TypeError):
        Output(torch.nn.Linear(1, 1), {}, 3)  # facts are keywords


def test_a_schema_4_dependency_still_gives_its_extra_models(reg, tmp_path):
    """A results folder from before schema 5: the cell is resumed, and its depth file, known then only
    by its name in ``files``, is an artifact a dependant loads."""
    store = ResultStore(tmp_path / "results")
    first = run(reg, tmp_path, ["usesartifact"])
    folder = store.cell_dir(first["saver"].config)
    raw = json.loads((folder / RESULT_FILE).read_text())
    for key in ("artifacts", "role"):
        raw.pop(key)
    raw["schema"] = 4
    write_json(folder / RESULT_FILE, raw)
    shutil.rmtree(store.cell_dir(first["usesartifact"].config))
    again = run(reg, tmp_path, ["usesartifact"])
    assert again["saver"].schema == 4 and set(again["saver"].artifacts) == {"depth-1", "depth-2"}
    assert again["usesartifact"].ok, again["usesartifact"].error
    assert again["usesartifact"].metrics == {**again["usesartifact"].metrics,
                                             "params": first["usesartifact"].metrics["params"]}

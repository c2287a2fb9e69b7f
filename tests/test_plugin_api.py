"""The plugin API across versions: a plugin written against odnbench 0.1 still runs (with a
deprecation warning), and a third-party plugin never takes a built-in's name."""

from __future__ import annotations

import sys
import warnings

import pytest
from _plugin_helpers import make_dist
from click.testing import CliRunner

from odnbench.errors import OdnbenchDeprecationWarning
from odnbench.result import Result

# A distillation method as the 0.1 docs taught it: its dependency's result is a dict.
DISTILL_01 = '''
from odnbench import Method, MethodOutput, Requirement, hookimpl


class Distill01(Method):
    name = "distill01"
    description = "written against odnbench 0.1: reads dep.result as a dict"

    def requires(self, params):
        return [Requirement("full")]

    def run(self, ctx):
        full = ctx.dependencies["full"]
        teacher_val = full.result["metrics"]["val_top1"]
        assert "cost" in full.result and full.result.get("no such key", "x") == "x"
        epochs = full.result.get("cost")["epochs"]
        ctx.cost.add_result_cost("full depth", full.result["cost"])  # as 0.1's docs taught
        model = full.load_model(ctx.device).truncated(1)
        return MethodOutput(model, {"teacher_val": teacher_val, "teacher_epochs": epochs})


@hookimpl
def register_methods(register):
    register(Distill01())
'''

# A plugin that registers a name a built-in took later (kd), beside one of its own.
MYKD = '''
from odnbench import Method, MethodOutput, hookimpl


class MyKD(Method):
    name = "kd"
    description = "a third party's kd"


class MyMethod(Method):
    name = "mymethod"
    description = "a third party's own method"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().truncated(1))


@hookimpl
def register_methods(register):
    register(MyKD())
    register(MyMethod())
'''

OTHER = '''
from odnbench import Method, hookimpl


class Other(Method):
    name = "mymethod"
    description = "another third party's mymethod"


@hookimpl
def register_methods(register):
    register(Other())
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A site-packages-like folder on sys.path; the modules it adds are forgotten afterwards."""
    path = tmp_path / "site"
    tag = tmp_path.name.replace("-", "_").replace(".", "_")[-20:]
    monkeypatch.syspath_prepend(str(path))
    before = set(sys.modules)
    yield path, tag
    for name in set(sys.modules) - before:
        if name.endswith(tag):
            del sys.modules[name]


def select(monkeypatch, *dists: str) -> None:
    from odnbench import registry

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", ",".join(("odnbench", *dists)))
    monkeypatch.setattr(registry, "_cached", None)


def test_result_mapping_access_warns_and_names_the_attribute():
    r = Result(status="ok", key="k", config={"method": "full"}, metrics={"top1": 90.0}, cost={"epochs": 3})
    with pytest.warns(OdnbenchDeprecationWarning, match=r"result\['metrics'\].*use result\.metrics.*0\.3\.0"):
        assert r["metrics"] == {"top1": 90.0}
    with pytest.warns(OdnbenchDeprecationWarning, match=r"use result\.cost"):
        assert r.get("cost") == {"epochs": 3}
    with pytest.warns(OdnbenchDeprecationWarning):
        assert r.get("nope", 7) == 7
    with pytest.warns(OdnbenchDeprecationWarning):
        assert "metrics" in r and "nope" not in r
    with pytest.warns(OdnbenchDeprecationWarning):
        assert set(r.keys()) == set(r.to_dict()) and list(r) == list(r.keys())
    with pytest.warns(OdnbenchDeprecationWarning):
        assert r["facts"] == r.to_dict()["facts"]  # as the JSON had it
    with pytest.raises(KeyError):
        r["nope"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # attribute access and truth never warn
        assert r.metrics["top1"] == 90.0 and bool(r)


@pytest.mark.slow
def test_a_plugin_written_against_01_runs_through_compare_with_a_deprecation_warning(site, tmp_path, monkeypatch):
    path, tag = site
    make_dist(path, "odnbench-distill01", "0.1.0", {"distill01": (f"distill01_{tag}", DISTILL_01)})
    select(monkeypatch, "odnbench-distill01")
    from odnbench.cli import cli
    from odnbench.store import ResultStore

    results = tmp_path / "results"
    with pytest.warns(OdnbenchDeprecationWarning) as caught:
        out = CliRunner().invoke(cli, ["compare", "--method", "distill01", "--preset", "smoke", "--dataset", "mnist5k",
                                       "--results", str(results), "-q"], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    stored = {r.method: r for _, r in ResultStore(results)}
    assert stored["distill01"].ok, stored["distill01"].error
    assert stored["distill01"].plugin == "distill01"
    # It read its dependency's numbers through the old dict access, and got the real ones.
    assert stored["distill01"].method_info == {"teacher_val": stored["full"].metrics["val_top1"],
                                               "teacher_epochs": stored["full"].cost["epochs"]}
    messages = [str(w.message) for w in caught if issubclass(w.category, OdnbenchDeprecationWarning)]
    assert any("result['metrics']" in m and "result.metrics" in m for m in messages)
    assert any("result.get('cost')" in m and "result.cost" in m for m in messages)
    assert any("add_result_cost" in m and "already counts" in m for m in messages)
    assert stored["distill01"].cost["epochs"] == stored["full"].cost["epochs"]  # the dependency counted once
    # Each warning points at the plugin's own line, so its author finds it.
    assert all(w.filename.endswith(f"distill01_{tag}.py") for w in caught
               if issubclass(w.category, OdnbenchDeprecationWarning))


def test_a_plugin_taking_a_builtin_name_leaves_the_builtin_and_loads_its_other_names(site, monkeypatch, capsys):
    path, tag = site
    make_dist(path, "odnbench-mykd", "1.0", {"mykd": (f"mykd_{tag}", MYKD)})
    select(monkeypatch, "odnbench-mykd")
    from odnbench import plan
    from odnbench.registry import get_registry

    reg = get_registry()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("odnbench: warning: ")
    assert "'kd'" in err[0] and "odnbench-mykd 1.0" in err[0] and f"odnbench {reg.plugins['kd'].version}" in err[0]
    assert reg.conflicts == []
    assert type(reg.method("kd")).__module__ == "odnbench_plugins.kd" and reg.owner[("method", "kd")] == "kd"
    assert reg.method("mymethod").description == "a third party's own method"
    assert reg.owner[("method", "mymethod")] == "mykd"
    grid = plan.plan_grid(reg, ["kd", "mymethod"], ["mnist5k"], ["resnet18"], [0], "smoke")
    assert {c.config["method"] for c in grid.cells} >= {"kd", "full", "mymethod"}

    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["list", "methods"])
    assert out.exit_code == 0 and "Error" not in out.stderr
    names = {line.split()[0]: line for line in out.stdout.splitlines()}
    assert "mymethod" in names and "a third party's kd" not in names["kd"]


def test_strict_mode_makes_a_builtin_clash_fatal_for_running(site, monkeypatch):
    path, tag = site
    make_dist(path, "odnbench-mykd", "1.0", {"mykd": (f"mykd_{tag}", MYKD)})
    select(monkeypatch, "odnbench-mykd")
    monkeypatch.setenv("ODNBENCH_STRICT_PLUGINS", "1")
    from odnbench.cli import cli

    listed = CliRunner().invoke(cli, ["list", "methods"])
    assert listed.exit_code == 0 and "kd " in listed.stdout
    out = CliRunner().invoke(cli, ["compare", "--method", "mymethod", "--results", "unused"])
    assert out.exit_code == 2
    assert "'kd'" in out.stderr and "odnbench-mykd 1.0" in out.stderr and "ODNBENCH_STRICT_PLUGINS" in out.stderr


def test_two_third_party_plugins_clashing_is_still_an_error_naming_both(site, monkeypatch):
    path, tag = site
    make_dist(path, "odnbench-mykd", "1.0", {"mykd": (f"mykd_{tag}", MYKD)})
    make_dist(path, "odnbench-other", "2.0", {"other": (f"other_{tag}", OTHER)})
    select(monkeypatch, "odnbench-mykd", "odnbench-other")
    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["compare", "--method", "mymethod", "--results", "unused"])
    assert out.exit_code == 2
    error = [line for line in out.stderr.splitlines() if line.startswith("Error:")][0]
    assert "'mymethod'" in error and "'mykd'" in error and "'other'" in error

"""A broken plugin method fails its own cell, with the plugin's name and what to fix, and never the
whole grid. The plugin is a real module behind a real ``odnbench`` entry point."""

from __future__ import annotations

import json

import pytest
from _errors import says
from _plugin_helpers import install_plugin
from click.testing import CliRunner

from odnbench.cli import cli

BROKEN = '''
from odnbench import Method, MethodOutput, Param, Requirement, hookimpl


class ReturnsModel(Method):
    name = "returns-model"
    description = "returns the bare module instead of MethodOutput"

    def run(self, ctx):
        return ctx.build_backbone()


class TwiceDeclared(Method):
    name = "twice"
    description = "declares a parameter twice"
    params = (Param("k", int, 1), Param("k", int, 2))

    def run(self, ctx):
        raise AssertionError("never runs")


class RaisesInTraining(Method):
    name = "raises"
    description = "raises in the middle of training"

    def run(self, ctx):
        model = ctx.build_backbone()

        def loss_fn(m, x, y):
            raise ValueError("loss went NaN at batch 1")

        ctx.trainer.fit(model, label=self.name, loss_fn=loss_fn)
        return MethodOutput(model)


class BadInfo(Method):
    name = "bad-info"
    description = "info is not JSON"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().truncated(1), {"when": object()})


class NeedsMissing(Method):
    name = "needs-missing"
    description = "requires a method nobody installed"

    def requires(self, params):
        return [Requirement("not-installed")]

    def run(self, ctx):
        raise AssertionError("never runs")


class BrokenRequires(Method):
    name = "broken-requires"
    description = "requires() has a bug"

    def requires(self, params):
        return params["missing"]

    def run(self, ctx):
        raise AssertionError("never runs")


class BadPresetDefaults(Method):
    name = "bad-preset"
    description = "preset_defaults sets an undeclared parameter"

    def preset_defaults(self, preset, dataset):
        return {"epochz": 3}

    def run(self, ctx):
        raise AssertionError("never runs")


@hookimpl
def register_methods(register):
    for cls in (ReturnsModel, TwiceDeclared, RaisesInTraining, BadInfo, NeedsMissing, BrokenRequires,
                BadPresetDefaults):
        register(cls())
'''

EXPECTED = {
    "returns-model": "PluginError: method 'returns-model' (plugin 'broken') returned DepthNet; run() must return "
                     "odnbench.MethodOutput(model=<torch.nn.Module>, info={...})",
    "twice": "PluginError: plugin 'broken': method 'twice' declares parameter 'k' twice",
    "raises": "method 'raises' (plugin 'broken') raised ValueError: loss went NaN at batch 1",
    "bad-info": "PluginError: method 'bad-info' (plugin 'broken'): info must be JSON-serialisable",
    "needs-missing": "PluginError: plugin 'broken': method 'needs-missing': it requires method 'not-installed', "
                     "which no loaded plugin registers",
    "broken-requires": "PluginError: plugin 'broken': method 'broken-requires': requires() raised KeyError: 'missing'",
    "bad-preset": "PluginError: plugin 'broken': preset_defaults of 'bad-preset' sets undeclared 'epochz'",
}


def test_each_broken_method_fails_its_own_cell_and_the_grid_goes_on(monkeypatch, tmp_path):
    install_plugin(monkeypatch, tmp_path, "broken", BROKEN)
    results = tmp_path / "results"
    args = ["compare", "--preset", "smoke", "--results", str(results), "--quiet", "--method", "full"]
    for name in EXPECTED:
        args += ["--method", name]
    out = CliRunner().invoke(cli, args)

    assert out.exit_code == 1, out.output  # failures reported, not a crash (2) or a traceback
    assert out.exception is None or isinstance(out.exception, SystemExit)
    stored = {r["config"]["method"]: r for r in (json.loads(p.read_text()) for p in results.glob("*/result.json"))}
    assert set(stored) == {"full", *EXPECTED}
    assert stored["full"]["status"] == "ok"
    for name, message in EXPECTED.items():
        r = stored[name]
        assert r["status"] == "failed"
        assert r["error"].startswith(message), (name, r["error"])
        assert f"FAILED {name} mnist5k seed 0: {r['error']}" in out.output
    # Plugin bugs keep their traceback for the author; contract errors are one clear line.
    assert "ValueError: loss went NaN" in stored["raises"]["traceback"]
    assert "traceback" not in stored["twice"]
    # The cost of the epoch that ran before the error is still recorded.
    assert stored["raises"]["cost"]["epochs"] == 0 and stored["raises"]["cost"]["device"] == "cpu"
    board = (results / "leaderboard.md").read_text()
    assert "| full |" in board or "full" in board
    assert "declares parameter 'k' twice" in board  # listed under failed cells, not ranked


def test_a_users_bad_value_is_still_an_immediate_one_line_error(monkeypatch, tmp_path):
    install_plugin(monkeypatch, tmp_path, "broken", BROKEN)
    out = CliRunner().invoke(cli, ["compare", "--method", "full", "--set", "full.depth=3", "--preset", "smoke",
                                   "--results", str(tmp_path / "r")])
    assert out.exit_code == 2
    assert says(out.output.strip(), "full.depth=3", "method 'full'", "'depth'", "epochs, patience")
    assert not (tmp_path / "r").exists()  # nothing ran


def test_check_method_names_the_plugin_and_the_fix(monkeypatch, tmp_path):
    from odnbench.testing import ContractError, run_method_check

    install_plugin(monkeypatch, tmp_path, "broken", BROKEN)
    with pytest.raises(ContractError, match=r"method 'twice' \(plugin 'broken'\): declares parameter 'k' twice"):
        run_method_check("twice", tmp_path / "a")
    with pytest.raises(ContractError, match=r"method 'returns-model' \(plugin 'broken'\) failed: PluginError: .*"
                                            r"run\(\) must return odnbench.MethodOutput"):
        run_method_check("returns-model", tmp_path / "b")
    with pytest.raises(ContractError, match="method 'nope' is not registered. Loaded plugins: .*broken"):
        run_method_check("nope", tmp_path / "c")


def test_registering_the_wrong_kind_of_object_names_the_plugin(monkeypatch, tmp_path):
    from odnbench.errors import PluginError
    from odnbench.registry import load_registry

    install_plugin(monkeypatch, tmp_path, "wrongkind", '''
from odnbench import Dataset, hookimpl


class NotAMethod(Dataset):
    name = "nam"


@hookimpl
def register_methods(register):
    register(NotAMethod())
''')
    registry = load_registry()  # refused with a warning; the rest loads (issue 32)
    assert "nam" not in registry.items["method"] and "full" in registry.items["method"]
    monkeypatch.setenv("ODNBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="plugin 'wrongkind' registered .* as a method; it must be an instance "
                                          "of odnbench.Method"):
        load_registry()

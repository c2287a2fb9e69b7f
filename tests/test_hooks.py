"""One test per hook (tests/test_hooks_documented.py requires test_hook_<name>): each installs a
real plugin module behind an entry point in the ``odnbench`` group, lets odnbench load it the
normal way, and uses what it registered through the CLI and the harness."""

from __future__ import annotations

import json

import pytest
from _plugin_helpers import install_plugin
from click.testing import CliRunner

from odnbench import plan
from odnbench.cli import cli

DATASET_PLUGIN = '''
from odnbench import Dataset, hookimpl


class Digits(Dataset):
    name = "hookdigits"
    description = "scikit-learn 8x8 digits (hook test)"

    def load(self, data_dir, *, download, seed):
        import torch
        from sklearn.datasets import load_digits

        from odnbench.data import DatasetInfo, Split, Splits, carve_validation

        d = load_digits()
        x = (torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0 - 0.3) / 0.4
        y = torch.tensor(d.target, dtype=torch.int64)
        test = torch.arange(len(y)) % 5 == 0
        train, val = carve_validation(x[~test], y[~test], 300, seed)
        info = DatasetInfo(self.name, 1, 8, 10, (0.3,), (0.4,), split_rule="every 5th is test")
        return Splits(info, train, val, Split(x[test], y[test]))


@hookimpl
def register_datasets(register):
    register(Digits)  # the class is accepted as well as an instance
'''


@pytest.mark.slow
def test_hook_register_datasets(monkeypatch, tmp_path):
    install_plugin(monkeypatch, tmp_path, "hookdata", DATASET_PLUGIN)
    listed = CliRunner().invoke(cli, ["list", "datasets"])
    assert listed.exit_code == 0, listed.output
    assert "hookdigits" in listed.output and "scikit-learn 8x8 digits" in listed.output

    from odnbench import harness
    from odnbench.progress import Progress
    from odnbench.registry import get_registry

    reg = get_registry()
    assert reg.owner[("dataset", "hookdigits")] == "hookdata"
    grid = plan.plan_grid(reg, ["full"], ["hookdigits"], ["resnet18"], [0], "smoke")
    result = harness.run_cell(reg, grid.cells[0], tmp_path / "r", data_dir=tmp_path, download=False,
                              progress=Progress(quiet=True))
    assert result.ok, result.error
    # The smoke preset's limits applied to the plugin's splits: 1,797 = 1,137 + 300 + 360 images.
    assert result.data["sizes"] == {"train": 256, "val": 128, "test": 256}
    assert result.metrics["input_shape"] == [1, 8, 8]


BACKBONE_PLUGIN = '''
from odnbench import Backbone, hookimpl


class Plain(Backbone):
    name = "hookplain"
    description = "plain CNN, 4 blocks (hook test)"

    def build(self, *, in_chans, num_classes, stem="cifar", width=None):
        from torch import nn

        from odnbench.depthnet import DepthNet

        widths = tuple(width or (16, 32, 64, 128))
        stem_module = nn.Sequential(nn.Conv2d(in_chans, widths[0], 3, 1, 1), nn.ReLU())
        blocks, c = [], widths[0]
        for i, w in enumerate(widths):
            blocks.append(nn.Sequential(nn.Conv2d(c, w, 3, 2 if i else 1, 1), nn.BatchNorm2d(w), nn.ReLU()))
            c = w
        return DepthNet(stem_module, blocks, list(widths), nn.Linear(c, num_classes))


@hookimpl
def register_backbones(register):
    register(Plain())
'''


def test_hook_register_backbones(monkeypatch, tmp_path):
    install_plugin(monkeypatch, tmp_path, "hookbackbone", BACKBONE_PLUGIN)
    out = CliRunner().invoke(cli, ["profile", "--backbone", "hookplain", "--depth", "2", "--width", "8,16,16,32",
                                   "--json"])
    assert out.exit_code == 0, out.output
    profile = json.loads(out.output)
    # stem 1->8 (3x3 + bias), block 1: 8->8 conv + bias + BN, block 2: 8->16 conv + bias + BN, head 16->10
    assert profile["depth"] == 2
    assert profile["params"] == (72 + 8) + (576 + 8 + 16) + (1152 + 16 + 32) + (160 + 10)

    from odnbench import harness
    from odnbench.progress import Progress
    from odnbench.registry import get_registry

    reg = get_registry()
    grid = plan.plan_grid(reg, ["full"], ["mnist5k"], ["hookplain"], [0], "smoke")
    result = harness.run_cell(reg, grid.cells[0], tmp_path / "r", data_dir=tmp_path, download=False,
                              progress=Progress(quiet=True))
    assert result.ok, result.error
    assert result.facts.depth == 4
    assert result.config["backbone"] == "hookplain"


METHOD_PLUGIN = '''
from odnbench import Method, MethodOutput, Param, hookimpl


class FirstBlocks(Method):
    name = "hookfirst"
    description = "first k blocks, trained (hook test)"
    params = (Param("k", int, 2, help="blocks to keep"),)

    def run(self, ctx):
        model = ctx.build_backbone().truncated(ctx.params["k"]).to(ctx.device)
        fit = ctx.trainer.fit(model, label=self.name)
        return MethodOutput(model, {"k": ctx.params["k"], "epochs": fit.epochs})


@hookimpl
def register_methods(register):
    register(FirstBlocks())
'''


@pytest.mark.slow
def test_hook_register_methods(monkeypatch, tmp_path):
    install_plugin(monkeypatch, tmp_path, "hookmethod", METHOD_PLUGIN)
    runner = CliRunner()
    listed = runner.invoke(cli, ["list", "methods"])
    assert "hookfirst" in listed.output and "first k blocks" in listed.output

    plugins = json.loads(runner.invoke(cli, ["plugins"]).output)
    mine = [p for p in plugins if p["name"] == "hookmethod"]
    assert mine and mine[0]["hooks"] == ["register_methods"]

    results = tmp_path / "results"
    out = runner.invoke(cli, ["compare", "--method", "hookfirst", "--method", "full", "--preset", "smoke",
                              "--set", "hookfirst.k=3", "--results", str(results), "--quiet"])
    assert out.exit_code == 0, out.output
    stored = [json.loads(p.read_text()) for p in results.glob("*/result.json")]
    mine = [r for r in stored if r["config"]["method"] == "hookfirst"]
    assert len(stored) == 2 and len(mine) == 1
    assert mine[0]["status"] == "ok" and mine[0]["plugin"] == "hookmethod"
    assert mine[0]["config"]["params"] == {"k": 3} and mine[0]["method_info"]["k"] == 3
    assert "hookfirst" in (results / "leaderboard.md").read_text()

    bad = runner.invoke(cli, ["compare", "--method", "hookfirst", "--set", "hookfirst.k=two", "--preset", "smoke",
                              "--results", str(results)])
    assert bad.exit_code == 2 and "hookfirst.k='two' is not a valid int" in bad.output


COMMAND_PLUGIN = '''
import click

from odnbench import OdnbenchError, hookimpl


@hookimpl
def register_commands(cli):
    @cli.command(name="hook-hello")
    @click.argument("who")
    def hello(who):
        """Greet WHO (hook test)."""
        if who == "nobody":
            raise OdnbenchError("hook-hello needs somebody")
        click.echo(f"hello {who} from a plugin")
'''

BROKEN_COMMAND_PLUGIN = '''
from odnbench import hookimpl


@hookimpl
def register_commands(cli):
    raise RuntimeError("this plugin is broken")
'''


def test_hook_register_commands(monkeypatch, tmp_path, capsys):
    from odnbench import cli as cli_module

    install_plugin(monkeypatch, tmp_path, "hookcmd", COMMAND_PLUGIN)
    install_plugin(monkeypatch, tmp_path, "hookbroken", BROKEN_COMMAND_PLUGIN)
    before = set(cli_module.cli.commands)
    try:
        with pytest.raises(SystemExit) as done:
            cli_module.main(["hook-hello", "world"])
        captured = capsys.readouterr()
        assert done.value.code == 0
        assert captured.out == "hello world from a plugin\n"
        # The broken plugin is named and skipped; it does not take the CLI (or hook-hello) down.
        assert "plugin 'hookbroken' failed in register_commands: RuntimeError: this plugin is broken" in captured.err

        with pytest.raises(SystemExit) as done:
            cli_module.main(["hook-hello", "nobody"])
        assert done.value.code == 2
        assert capsys.readouterr().err.strip().endswith("Error: hook-hello needs somebody")

        with pytest.raises(SystemExit):
            cli_module.main(["--help"])
        assert "hook-hello" in capsys.readouterr().out
    finally:
        for name in set(cli_module.cli.commands) - before:
            cli_module.cli.commands.pop(name)

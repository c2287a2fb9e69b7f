"""Plugins arrive as real installed distributions: a ``*.dist-info`` folder with an
``entry_points.txt`` on the path is exactly what ``pip install`` leaves behind, and
importlib.metadata (hence odnbench) finds it the same way."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _plugin_helpers import make_dist
from click.testing import CliRunner

from odnbench.errors import PluginError
from odnbench.registry import load_registry

BUILTIN = "datasets,timm-resnet,full"

HELLO = '''
from odnbench import Method, MethodOutput, Param, hookimpl


class Hello(Method):
    name = "hello"
    description = "A third-party method from the test distribution"
    params = (Param("blocks", int, 2, "blocks to keep"), Param("mode", str, "fast", choices=("fast", "slow")))

    def run(self, ctx):
        model = ctx.build_backbone().truncated(self.params[0].default)
        return MethodOutput(model, {})


@hookimpl
def register_methods(register):
    register(Hello())
'''

HELLO_EXTRA = '''
from odnbench import Method, hookimpl


class HelloTwo(Method):
    name = "hello2"
    description = "A second entry point of the same distribution"


@hookimpl
def register_methods(register):
    register(HelloTwo)  # a class is accepted as well as an instance
'''

BROKEN = '''
raise RuntimeError("kaboom while importing")
'''

MISSPELLED = '''
from odnbench import hookimpl


@hookimpl
def register_method(register):  # should be register_methods
    pass
'''

WRONG_ARGS = '''
from odnbench import hookimpl


@hookimpl
def register_methods(registry):  # the spec's argument is called register
    pass
'''

BAD_COMMAND = '''
from odnbench import hookimpl


@hookimpl
def register_commands(cli):
    raise ValueError("no command for you")
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path (for in-process loading) holding the test distributions; modules
    are given per-test names and dropped from sys.modules afterwards."""
    path = tmp_path / "site"
    tag = tmp_path.name.replace("-", "_").replace(".", "_")[-20:]
    make_dist(path, "odnbench-hello", "0.1", {
        "hello": (f"hello_{tag}", HELLO),
        "hello-extra": (f"hello_extra_{tag}", HELLO_EXTRA),
    })
    make_dist(path, "broken-plugin", "2.0", {"broken": (f"broken_{tag}", BROKEN)})
    monkeypatch.syspath_prepend(str(path))
    before = set(sys.modules)
    yield path
    for name in set(sys.modules) - before:
        if name.endswith(tag):
            del sys.modules[name]


def cli_env(site: Path | None, **env: str | None) -> dict[str, str]:
    out = dict(os.environ)
    out.pop("ODNBENCH_LOAD_PLUGINS", None)
    out.pop("ODNBENCH_STRICT_PLUGINS", None)
    if site is not None:
        out["PYTHONPATH"] = os.pathsep.join([str(site)] + ([out["PYTHONPATH"]] if out.get("PYTHONPATH") else []))
    for key, value in env.items():
        if value is not None:
            out[key] = value
    return out


def odnbench(*args: str, env: dict[str, str], python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The installed console script when there is one (what users run), else the same entry point."""
    script = shutil.which("odnbench")
    if script and not python_flags:
        cmd = [script, *args]
    else:
        cmd = [sys.executable, *python_flags, "-c", "import sys; from odnbench.cli import main; sys.exit(main())",
               *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


# ----------------------------------------------------------------------------- installed distributions


def test_third_party_distribution_shows_up_in_the_cli(site):
    env = cli_env(site)  # ODNBENCH_LOAD_PLUGINS unset: every installed plugin
    out = odnbench("plugins", env=env)
    assert out.returncode == 0, out.stderr
    plugins = {p["name"]: p for p in json.loads(out.stdout)}
    assert plugins["hello"] == {"name": "hello", "version": "0.1", "hooks": ["register_methods"]}
    assert plugins["full"]["hooks"] == ["register_methods"]
    assert "broken" not in plugins
    out = odnbench("list", "methods", env=env)
    assert out.returncode == 0
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert {"hello", "hello2", "full"} <= set(names)
    assert "A third-party method from the test distribution" in out.stdout


def test_broken_plugin_is_skipped_with_one_warning_line(site):
    out = odnbench("list", "methods", env=cli_env(site))
    assert out.returncode == 0
    assert "hello" in out.stdout.split()
    lines = [line for line in out.stderr.splitlines() if "broken" in line]
    assert len(lines) == 1
    assert "'broken'" in lines[0] and "broken-plugin" in lines[0] and "kaboom while importing" in lines[0]
    assert "Traceback" not in out.stderr


def test_strict_mode_makes_a_broken_plugin_fatal(site):
    env = cli_env(site, ODNBENCH_LOAD_PLUGINS=f"{BUILTIN},broken", ODNBENCH_STRICT_PLUGINS="1")
    out = odnbench("list", "methods", env=env)
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1
    assert "broken" in out.stderr and "kaboom while importing" in out.stderr


# ----------------------------------------------------------------------------- ODNBENCH_LOAD_PLUGINS


def loaded(monkeypatch, value: str | None) -> set[str]:
    if value is None:
        monkeypatch.delenv("ODNBENCH_LOAD_PLUGINS", raising=False)
    else:
        monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", value)
    return set(load_registry().plugins)


def test_load_plugins_selection(site, monkeypatch, capsys):
    everything = loaded(monkeypatch, None)
    assert {"datasets", "timm-resnet", "full", "hello", "hello-extra"} <= everything
    assert "broken" not in everything  # skipped, with a warning
    assert "broken" in capsys.readouterr().err

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "")
    reg = load_registry()
    assert reg.plugins == {} and reg.names("method") == [] and reg.names("dataset") == []

    assert loaded(monkeypatch, "full,hello") == {"full", "hello"}
    assert loaded(monkeypatch, " hello , datasets ") == {"hello", "datasets"}
    # A distribution name selects all of its entry points, spelled as pip would accept it.
    assert loaded(monkeypatch, "odnbench-hello") == {"hello", "hello-extra"}
    assert loaded(monkeypatch, "ODNBENCH_hello") == {"hello", "hello-extra"}
    assert {"datasets", "timm-resnet", "full"} <= loaded(monkeypatch, "odnbench")
    assert not {"hello", "hello-extra"} & loaded(monkeypatch, "odnbench")
    assert capsys.readouterr().err == ""  # the broken plugin was never selected again

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "hello,hello-extra")
    reg = load_registry()
    assert reg.names("method") == ["hello", "hello2"]
    assert reg.owner[("method", "hello2")] == "hello-extra"


@pytest.mark.parametrize("source, hint", [(MISSPELLED, "register_method"), (WRONG_ARGS, "registry")],
                         ids=["misspelled-hook", "wrong-hook-argument"])
def test_bad_hook_fails_loudly(tmp_path, monkeypatch, source, hint):
    module = f"bad_{tmp_path.name.replace('-', '_')[-20:]}"
    site = make_dist(tmp_path / "site", "bad-hooks", "1.0", {"badhook": (module, source)})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "full,badhook")
    try:
        with pytest.raises(PluginError) as err:
            load_registry()
    finally:
        sys.modules.pop(module, None)
    message = str(err.value)
    assert "'badhook'" in message and hint in message and "register_methods" in message
    assert "\n" not in message
    # The CLI says the same in one line, exit code 2, even with strict mode off.
    out = odnbench("list", "methods", env=cli_env(site, ODNBENCH_LOAD_PLUGINS="full,badhook"))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1 and "badhook" in out.stderr


def test_failing_plugin_command_does_not_kill_the_cli(tmp_path):
    module = f"badcmd_{tmp_path.name.replace('-', '_')[-20:]}"
    site = make_dist(tmp_path / "site", "bad-command", "1.0", {"badcmd": (module, BAD_COMMAND)})
    out = odnbench("list", "methods", env=cli_env(site, ODNBENCH_LOAD_PLUGINS="full,badcmd"))
    assert out.returncode == 0 and out.stdout.split()[0] == "full"
    assert len(out.stderr.strip().splitlines()) == 1 and "'badcmd'" in out.stderr and "no command for you" in out.stderr
    out = odnbench("list", "methods",
                   env=cli_env(site, ODNBENCH_LOAD_PLUGINS="full,badcmd", ODNBENCH_STRICT_PLUGINS="1"))
    assert out.returncode == 2 and "no command for you" in out.stderr


# ----------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize("args, wrong, suggestion", [
    (["compare", "--method", "ful"], "method 'ful'", "full"),
    (["run", "--method", "fulll"], "method 'fulll'", "full"),
    (["compare", "-m", "full", "--dataset", "mnsit"], "dataset 'mnsit'", "mnist"),
    (["compare", "-m", "full", "--backbone", "resnt18"], "backbone 'resnt18'", "resnet18"),
    (["profile", "--backbone", "resnet81"], "backbone 'resnet81'", "resnet18"),
    (["compare", "-m", "full", "--preset", "smok"], "preset 'smok'", "smoke"),
    (["compare", "-m", "hello", "--set", "hello.blcks=3"], "'blcks'", "blocks"),
    (["compare", "-m", "full", "--set", "hellp.blocks=3"], "method 'hellp'", "hello"),
    (["compare", "-m", "full", "--set", "recipe.epoch=3"], "recipe parameter 'epoch'", "epochs"),
    (["compare", "-m", "full", "--set", "recipe.optimiser=sgd"], "'optimiser'", "optimizer"),
])
def test_unknown_names_give_one_line_with_suggestions(site, monkeypatch, tmp_path, args, wrong, suggestion):
    from odnbench.cli import cli

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", f"{BUILTIN},hello")
    out = CliRunner().invoke(cli, [*args, "--results", str(tmp_path / "r")] if args[0] != "profile" else args)
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    came_from = f"Error: --set {args[-1]}: unknown" if "--set" in args else "Error: unknown"
    assert lines[0].startswith(came_from) and wrong in lines[0]
    assert f"Did you mean: {suggestion}" in lines[0]
    assert not (tmp_path / "r").exists()  # nothing ran


@pytest.mark.parametrize("sets, expected", [
    (["hello.mode=medium"], "hello.mode='medium' is not allowed; choose one of: fast, slow"),
    (["hello.blocks=two"], "hello.blocks='two' is not a valid int"),
    (["recipe.width=0,16,16,32"], "recipe.width='0,16,16,32'"),
    (["blocks=3"], "expected METHOD.PARAM=VALUE"),
])
def test_bad_set_values_give_one_line(site, monkeypatch, tmp_path, sets, expected):
    from odnbench.cli import cli

    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", f"{BUILTIN},hello")
    args = ["compare", "-m", "hello", "--results", str(tmp_path / "r")]
    for s in sets:
        args += ["--set", s]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2
    assert len(out.stderr.strip().splitlines()) == 1 and expected in out.stderr


# ----------------------------------------------------------------------------- start-up stays light


@pytest.mark.parametrize("args", [["--help"], ["list", "methods"], ["plugins"]])
def test_help_and_listing_do_not_import_torch(args):
    # Every installed plugin (ODNBENCH_LOAD_PLUGINS unset), as a user runs it.
    out = odnbench(*args, env=cli_env(None), python_flags=("-X", "importtime"))
    assert out.returncode == 0, out.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")}
    assert "odnbench.cli" in imported  # the probe works
    heavy = sorted(m for m in imported if m.split(".")[0] in ("torch", "timm", "torchvision", "torch_pruning"))
    assert not heavy, f"{' '.join(args)} imported {heavy[:5]}"

"""``odnbench new-plugin``: the generated package installs, is listed, and its own test passes."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from _errors import says
from click.testing import CliRunner

from odnbench.cli import cli
from odnbench.errors import OdnbenchError
from odnbench.scaffold import create_plugin


@pytest.mark.parametrize("kind,hook", [("method", "register_methods"), ("dataset", "register_datasets"),
                                       ("backbone", "register_backbones")])
def test_generated_files(tmp_path, kind, hook):
    target = create_plugin("my-thing2", kind, tmp_path)
    assert target == tmp_path / "odnbench-my-thing2"
    assert sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()) == [
        "README.md", "odnbench_my_thing2.py", "pyproject.toml", "tests/test_my_thing2.py"]
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["name"] == "odnbench-my-thing2"
    assert project["project"]["entry-points"]["odnbench"] == {"my-thing2": "odnbench_my_thing2"}
    assert project["tool"]["setuptools"]["py-modules"] == ["odnbench_my_thing2"]
    module = ast.parse((target / "odnbench_my_thing2.py").read_text())
    functions = {n.name for n in module.body if isinstance(n, ast.FunctionDef)}
    assert functions == {hook}
    top_imports = {a.name for n in module.body if isinstance(n, (ast.Import, ast.ImportFrom))
                   for a in n.names} | {n.module for n in module.body if isinstance(n, ast.ImportFrom)}
    assert not top_imports & {"torch", "timm", "sklearn"}  # registration stays light
    test_source = (target / "tests" / "test_my_thing2.py").read_text()
    assert 'pytest_plugins = ["odnbench.testing"]' in test_source
    ast.parse(test_source)
    assert "pip install -e ./odnbench-my-thing2" in (target / "README.md").read_text()


@pytest.mark.parametrize("name,message", [
    ("My_Method", "plugin name 'My_Method' is not allowed: use lowercase letters, digits and single hyphens"),
    ("2fast", "plugin name '2fast' is not allowed"),
    ("a--b", "plugin name 'a--b' is not allowed"),
    ("odnbench-x", "give the plugin's own name without the 'odnbench' prefix"),
    ("plugins", "a Python module 'odnbench_plugins' is already installed; pick another plugin name"),
])
def test_bad_names(tmp_path, name, message):
    with pytest.raises(OdnbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        create_plugin(name, "method", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_one_line_errors(tmp_path):
    runner = CliRunner()
    ok = runner.invoke(cli, ["new-plugin", "fresh", "--dir", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert f"pip install -e {tmp_path / 'odnbench-fresh'}" in ok.output
    again = runner.invoke(cli, ["new-plugin", "fresh", "--dir", str(tmp_path)])
    assert again.exit_code == 2
    assert says(again.output, str(tmp_path / "odnbench-fresh"), "already exists", "--dir")
    taken = runner.invoke(cli, ["new-plugin", "full", "--dir", str(tmp_path)])
    assert taken.exit_code == 2
    assert says(taken.output, "method 'full'", "already exists", "plugin 'full'")
    # The same name is free for another kind.
    assert runner.invoke(cli, ["new-plugin", "full", "--kind", "backbone", "--dir", str(tmp_path)]).exit_code == 0
    bad_kind = runner.invoke(cli, ["new-plugin", "x", "--kind", "metric", "--dir", str(tmp_path)])
    assert bad_kind.exit_code == 2 and "'metric' is not one of 'method', 'dataset', 'backbone'" in bad_kind.output


def _env(selected: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["ODNBENCH_LOAD_PLUGINS"] = selected
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _run(args, cwd, env):
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_new_plugin_installs_lists_and_passes_its_own_tests(tmp_path):
    """new-plugin -> pip install -e -> odnbench plugins / list -> pytest, for all three kinds."""
    names = {"scaffoldcheck-m": "method", "scaffoldcheck-d": "dataset", "scaffoldcheck-b": "backbone"}
    dists = [f"odnbench-{n}" for n in names]
    env = _env(",".join(["odnbench", *dists]))
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "uninstall", "-y", "-q", *dists], tmp_path, env)
    try:
        for name, kind in names.items():
            made = _run(["odnbench", "new-plugin", name, "--kind", kind], tmp_path, env)
            assert made.returncode == 0, made.stderr
            # --no-deps: odnbench (the only dependency) is installed; build offline when setuptools is here.
            isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
            done = _run([*pip, "install", "-q", "--no-deps", *isolation, "-e", f"./odnbench-{name}"], tmp_path, env)
            assert done.returncode == 0, done.stderr
        listed = json.loads(_run(["odnbench", "plugins"], tmp_path, env).stdout)
        mine = {p["name"]: p for p in listed if p["name"] in names}
        assert set(mine) == set(names)
        assert mine["scaffoldcheck-m"]["hooks"] == ["register_methods"]
        assert mine["scaffoldcheck-d"]["version"] == "0.1.0"
        for kind in ("method", "dataset", "backbone"):
            out = _run(["odnbench", "list", f"{kind}s"], tmp_path, env).stdout
            assert any(line.split()[0] == f"scaffoldcheck-{kind[0]}" for line in out.splitlines()), out
        tests = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      *(f"./odnbench-{n}" for n in names)], tmp_path, env)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert "4 passed" in tests.stdout  # method: 2 tests, dataset: 1, backbone: 1
    finally:
        _run([*pip, "uninstall", "-y", "-q", *dists], tmp_path, env)
    assert not any(p["name"] in names for p in json.loads(_run(["odnbench", "plugins"], tmp_path, env).stdout))


def test_templates_are_package_data():
    """Every template under odnbench/templates/ ships in a wheel (pyproject's package-data), and
    every template the scaffold reads exists."""
    import fnmatch

    from odnbench import scaffold

    repo = Path(__file__).resolve().parents[1]
    root = repo / "odnbench"
    patterns = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["odnbench"]
    files = [str(p.relative_to(root)) for p in (root / "templates").rglob("*") if p.is_file()]
    assert files
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                                             for pat in patterns)]
    assert not unshipped, f"not declared in [tool.setuptools.package-data] of pyproject.toml: {unshipped}"
    for kind in scaffold.KINDS:
        for name in ("plugin.py.tmpl", "test_plugin.py.tmpl", "usage.sh.tmpl", "summary.txt"):
            assert scaffold.template(f"{kind}/{name}").strip(), f"{kind}/{name} is empty"

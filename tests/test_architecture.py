"""The architecture of docs/architecture.md, checked on the source (AST only: nothing is imported).

- the core (``odnbench``) never imports a plugin (``odnbench_plugins``);
- imports go one way, down the layers listed in ``LAYERS`` (the same table as docs/architecture.md);
  in particular the report layer imports neither the harness, the planner, the runtime helpers
  nor the plugin registry: a leaderboard is a function of stored results alone;
- plugins use the public API: no harness, planner or CLI;
- no module imports or reaches a private (``_name``) name of another module;
- the core holds no built-in plugin's name (method, declared package) as a string literal, but
  where old records are upgraded (``CORE_MAY_NAME``);
- no import cycles, counting imports inside functions and type-only ones (``if TYPE_CHECKING:``:
  two modules that name each other's types cannot be read or changed apart either);
- what ``odnbench --help`` and ``odnbench list`` import at start-up imports no torch (the same is
  checked by running them in tests/test_plugins.py::test_help_and_listing_do_not_import_torch).

Every failure names the module and the line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
SOURCES = {"odnbench": REPO / "odnbench", "odnbench_plugins": REPO / "plugins" / "odnbench_plugins"}

#: Who may import whom: a module imports modules of its own layer or of layers listed before it.
#: Keep in step with the table in docs/architecture.md (a test below checks that it names them all).
LAYERS: list[tuple[str, set[str]]] = [
    ("foundation", {"odnbench.errors", "odnbench.params", "odnbench.result", "odnbench.progress", "odnbench.envinfo",
                    "odnbench.hookspecs", "odnbench.depthnet", "odnbench.data", "odnbench.metrics",
                    "odnbench.execution", "odnbench.modelio", "odnbench.safeio", "odnbench.initialization"}),
    ("contract and storage", {"odnbench", "odnbench.contract", "odnbench.store", "odnbench.recipes",
                              "odnbench.trainer"}),
    ("report", {"odnbench.report", "odnbench.report.boards", "odnbench.report.fmt", "odnbench.report.markdown",
                "odnbench.report.records", "odnbench.report.plots", "odnbench.report.publish",
                "odnbench.report.terminal", "odnbench.report.curves", "odnbench.report.stats",
                "odnbench.report.remeasure", "odnbench.report.columns", "odnbench.report.sections"}),
    ("plugins and planning", {"odnbench.registry", "odnbench.plan", "odnbench.runtime", "odnbench.gridfile"}),
    ("running", {"odnbench.harness", "odnbench.executors", "odnbench.scheduler", "odnbench.verify"}),
    ("entry points", {"odnbench.cli", "odnbench.__main__", "odnbench.testing", "odnbench.scaffold"}),
]
REPORT_MAY_NOT_IMPORT = ("odnbench.harness", "odnbench.plan", "odnbench.runtime", "odnbench.registry")
PLUGINS_MAY_NOT_IMPORT = ("odnbench.harness", "odnbench.scheduler", "odnbench.plan", "odnbench.cli",
                          "odnbench.testing")
HEAVY = ("torch", "timm", "torchvision", "torch_pruning")


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    path: Path
    line: int
    target: str  # the imported module (``from pkg import sub`` -> pkg.sub when sub is a module)
    name: str | None  # the name taken from it (``from m import name``), None for ``import m``
    lazy: bool  # inside a function (runs when called, not at import)
    type_checking: bool  # under ``if TYPE_CHECKING:`` (never runs)

    @property
    def where(self) -> str:
        return f"{shown(self.importer, self.path)}:{self.line}"

    @property
    def what(self) -> str:
        """What the line imports, in full (``odnbench.plan``, ``odnbench.Method``)."""
        return self.target if self.name is None else f"{self.target}.{self.name}"

    def touches(self, prefix: str) -> bool:
        """Whether this import reaches module ``prefix`` (or one inside it)."""
        return within(self.target, prefix) or (self.name is not None and within(f"{self.target}.{self.name}", prefix))


def shown(module: str, path: Path) -> str:
    """The path as a reader finds it: relative to the repository (or to the tree's root)."""
    if path.is_relative_to(REPO):
        return str(path.relative_to(REPO))
    depth = len(module.split(".")) - (path.name != "__init__.py")
    return str(path.relative_to(path.parents[depth]))


def find_modules(sources: dict[str, Path]) -> dict[str, Path]:
    out = {}
    for _top, root in sources.items():
        for f in sorted(root.rglob("*.py")):
            parts = list(f.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = f
    return out


def _marked(tree: ast.AST) -> tuple[set[int], set[int]]:
    """ids of nodes inside functions, and of nodes under ``if TYPE_CHECKING:``."""
    in_function, type_checking = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            in_function |= {id(n) for n in ast.walk(node)} - {id(node)}
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_checking |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return in_function, type_checking


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    in_function, type_checking = _marked(tree)
    out = []
    for node in ast.walk(tree):
        lazy, tc = id(node) in in_function, id(node) in type_checking
        if isinstance(node, ast.Import):
            out += [Import(module, path, node.lineno, a.name, None, lazy, tc) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                target = sub if sub in known else base
                out.append(Import(module, path, node.lineno, target, None if target == sub else a.name, lazy, tc))
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "__import__")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.append(Import(module, path, node.lineno, node.args[0].value, None, lazy, tc))
    return out


def all_imports(sources: dict[str, Path] = SOURCES) -> tuple[dict[str, Path], list[Import]]:
    known = find_modules(sources)
    return known, [imp for name, path in known.items() for imp in imports_of(name, path, known)]


def within(target: str, prefix: str) -> bool:
    return target == prefix or target.startswith(prefix + ".")


# ------------------------------------------------------------------------------------------ checks


def core_importing_plugins(imports: list[Import]) -> list[str]:
    return [f"{i.where}: the core module {i.importer} imports the plugin module {i.what}; the core finds "
            "plugins through the entry-point group only" for i in imports
            if within(i.importer, "odnbench") and i.touches("odnbench_plugins")]


def report_importing_runtime(imports: list[Import]) -> list[str]:
    return [f"{i.where}: the report module {i.importer} imports {i.what}; a board is built from stored results "
            "alone (store it in the Result at run time instead)" for i in imports
            if within(i.importer, "odnbench.report") and any(map(i.touches, REPORT_MAY_NOT_IMPORT))]


def plugins_importing_internals(imports: list[Import]) -> list[str]:
    return [f"{i.where}: the plugin module {i.importer} imports {i.what}; plugins use the public API "
            "(odnbench, odnbench.contract, the trainer, ...), not the machinery that drives them" for i in imports
            if within(i.importer, "odnbench_plugins") and any(map(i.touches, PLUGINS_MAY_NOT_IMPORT))]


def layer_violations(known: dict[str, Path], imports: list[Import], layers=LAYERS) -> list[str]:
    rank = {m: n for n, (_, members) in enumerate(layers) for m in members}
    problems = [f"{shown(m, p)}:1: {m} is in no layer; add it to LAYERS "
                "in tests/test_architecture.py and to the table in docs/architecture.md"
                for m, p in known.items() if within(m, "odnbench") and not within(m, "odnbench_plugins")
                and m not in rank]
    for i in imports:
        if i.importer in rank and i.target in rank and rank[i.target] > rank[i.importer] and not i.type_checking:
            problems.append(f"{i.where}: {i.importer} (layer '{layers[rank[i.importer]][0]}') imports {i.target} "
                            f"(layer '{layers[rank[i.target]][0]}', above it); imports go one way, down the layers")
    return problems


def private_names(known: dict[str, Path]) -> list[str]:
    """``from m import _x``, ``import m._x``, ``from m._x import y`` and ``m._x`` where ``m`` is
    another module (ours or a library's): dunder names are public."""

    def private(part: str) -> bool:
        return part.startswith("_") and not part.startswith("__")

    problems = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(), str(path))
        where = shown(module, path)
        imported: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    imported.add((a.asname or a.name).split(".")[0])
                    if any(map(private, a.name.split("."))):
                        problems.append(f"{where}:{node.lineno}: {module} imports the private module {a.name}")
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if any(map(private, mod.split("."))):
                    problems.append(f"{where}:{node.lineno}: {module} imports from the private module {mod}")
                for a in node.names:
                    imported.add(a.asname or a.name)
                    if private(a.name):
                        problems.append(f"{where}:{node.lineno}: {module} imports {a.name}, a private name of {mod}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and private(node.attr):
                base = node.value
                while isinstance(base, ast.Attribute):
                    base = base.value
                if isinstance(base, ast.Name) and base.id in imported:
                    problems.append(f"{where}:{node.lineno}: {module} uses {ast.unparse(node)}, a private name "
                                    "of another module")
    return problems


def import_cycles(known: dict[str, Path], imports: list[Import]) -> list[str]:
    """Strongly connected groups of modules (Tarjan), each with the import lines that close it."""
    graph: dict[str, dict[str, Import]] = {m: {} for m in known}
    for i in imports:
        if i.target in known and i.target != i.importer:
            graph[i.importer].setdefault(i.target, i)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    problems = []
    for group in groups:
        edges = [graph[a][b] for a in group for b in group if b in graph[a]]
        problems.append("import cycle between " + ", ".join(group) + ": " + "; ".join(
            f"{e.where} {e.importer} imports {e.target}{' (inside a function)' if e.lazy else ''}"
            f"{' (under if TYPE_CHECKING)' if e.type_checking else ''}" for e in edges))
    return problems


def heavy_at_startup(known: dict[str, Path], imports: list[Import], roots: list[str]) -> list[str]:
    """Module-level imports reachable from ``roots`` that pull in torch & co."""
    eager: dict[str, list[Import]] = {}
    for i in imports:
        if not i.lazy and not i.type_checking:
            eager.setdefault(i.importer, []).append(i)
    problems, seen, todo = [], set(), [(r, (r,)) for r in roots]
    while todo:
        module, chain = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parents = [".".join(module.split(".")[:n]) for n in range(1, len(module.split(".")))]
        for i in eager.get(module, []):
            if i.target.split(".")[0] in HEAVY:
                problems.append(f"{i.where}: {i.importer} imports {i.target} at module level, and "
                                f"{' -> '.join(chain)} is imported by every `odnbench` command; import it inside "
                                "the function that needs it")
            elif i.target in known:
                todo.append((i.target, chain + (i.target,)))
        todo += [(p, chain) for p in parents if p in known]  # importing a.b runs a/__init__ first
    return problems


# ------------------------------------------------------------------------------------------ tests


@pytest.fixture(scope="module")
def source():
    return all_imports()


def test_the_core_imports_no_plugin(source):
    _, imports = source
    assert not core_importing_plugins(imports), "\n".join(core_importing_plugins(imports))


def test_the_report_layer_reads_stored_results_only(source):
    _, imports = source
    assert not report_importing_runtime(imports), "\n".join(report_importing_runtime(imports))


def test_plugins_use_the_public_api(source):
    _, imports = source
    assert not plugins_importing_internals(imports), "\n".join(plugins_importing_internals(imports))


def test_imports_go_down_the_layers(source):
    known, imports = source
    problems = layer_violations(known, imports)
    assert not problems, "\n".join(problems)


def test_no_module_uses_a_private_name_of_another(source):
    known, _ = source
    problems = private_names(known)
    assert not problems, "\n".join(problems)


#: Cycles still allowed while the change that removes them is under way, each with its reason. An
#: entry whose cycle is gone fails the test below, so that the list only ever shrinks.
CYCLES_UNDER_WAY: set[str] = set()  # cycles being removed, each with the issue that removes it


def test_no_import_cycles(source):
    known, imports = source
    problems = import_cycles(known, imports)
    found = {p.removeprefix("import cycle between ").split(":")[0] for p in problems}
    assert not CYCLES_UNDER_WAY - found, (f"{sorted(CYCLES_UNDER_WAY - found)} no longer form a cycle: remove them "
                                          "from CYCLES_UNDER_WAY")
    problems = [p for p in problems if p.removeprefix("import cycle between ").split(":")[0] not in CYCLES_UNDER_WAY]
    assert not problems, "\n".join(problems)


def test_a_type_only_cycle_is_a_cycle(tmp_path):
    core = tmp_path / "odnbench"
    core.mkdir()
    (core / "__init__.py").write_text("")
    (core / "contract.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from odnbench.recipes "
                                      "import Recipe\n")
    (core / "recipes.py").write_text("from odnbench.contract import Param\n")
    known, imports = all_imports({"odnbench": core})
    assert import_cycles(known, imports) == [
        "import cycle between odnbench.contract, odnbench.recipes: odnbench/contract.py:3 odnbench.contract imports "
        "odnbench.recipes (under if TYPE_CHECKING); odnbench/recipes.py:1 odnbench.recipes imports odnbench.contract"]


def test_help_and_list_start_without_torch(source):
    known, imports = source
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    entry_points = list(project["entry-points"]["odnbench"].values())
    assert entry_points, "pyproject.toml declares no built-in plugin"
    cli_module = project["scripts"]["odnbench"].split(":")[0]
    problems = heavy_at_startup(known, imports, [cli_module, *entry_points])
    assert not problems, "\n".join(problems)


def test_the_layers_are_documented():
    text = (REPO / "docs" / "architecture.md").read_text()
    for name, members in LAYERS:
        assert name in text, f"docs/architecture.md does not name the layer '{name}'"
        for module in members:
            shown = module.removeprefix("odnbench.").replace(".", "/") if module != "odnbench" else "odnbench/__init__"
            assert f"`{shown}" in text, f"docs/architecture.md does not mention {module} (as `{shown}`)"


# --------------------------------------------------------------- the checks find what they look for


def test_the_checks_catch_violations(tmp_path):
    """A small tree with one violation of each rule: every check must name the file and line."""
    core, plugins = tmp_path / "odnbench", tmp_path / "odnbench_plugins"
    (core / "report").mkdir(parents=True)
    plugins.mkdir()
    files = {
        core / "__init__.py": "",
        core / "errors.py": "",
        core / "store.py": "from odnbench import harness\n",  # up the layers, and a cycle with harness
        core / "harness.py": "import odnbench.store\nfrom odnbench_plugins import thing\nimport odnbench.registry\n",
        core / "cli.py": "import click\nfrom odnbench import report\n",
        core / "report" / "__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
                                         "def f():\n    from ..registry import Registry\n",
        core / "registry.py": "import torch\nfrom odnbench.errors import _hidden\n",
        plugins / "__init__.py": "",
        plugins / "thing.py": "from odnbench import plan\nimport odnbench.store as s\nx = s._root\n",
    }
    for path, text in files.items():
        path.write_text(text)
    known, imports = all_imports({"odnbench": core, "odnbench_plugins": plugins})
    layers = [("low", {"odnbench", "odnbench.errors", "odnbench.store"}), ("report", {"odnbench.report"}),
              ("mid", {"odnbench.registry", "odnbench.harness"}), ("top", {"odnbench.cli"})]

    assert core_importing_plugins(imports) == [
        "odnbench/harness.py:2: the core module odnbench.harness imports the plugin module odnbench_plugins.thing; "
        "the core finds plugins through the entry-point group only"]
    assert [p.split(";")[0] for p in report_importing_runtime(imports)] == [
        "odnbench/report/__init__.py:5: the report module odnbench.report imports odnbench.registry.Registry"]
    assert [p.split(";")[0] for p in plugins_importing_internals(imports)] == [
        "odnbench_plugins/thing.py:1: the plugin module odnbench_plugins.thing imports odnbench.plan"]
    assert sorted(p.split(";")[0] for p in layer_violations(known, imports, layers)) == [
        "odnbench/report/__init__.py:5: odnbench.report (layer 'report') imports odnbench.registry "
        "(layer 'mid', above it)",
        "odnbench/store.py:1: odnbench.store (layer 'low') imports odnbench.harness (layer 'mid', above it)"]
    assert private_names(known) == [
        "odnbench/registry.py:2: odnbench.registry imports _hidden, a private name of odnbench.errors",
        "odnbench_plugins/thing.py:3: odnbench_plugins.thing uses s._root, a private name of another module"]
    cycles = import_cycles(known, imports)
    assert len(cycles) == 1 and cycles[0].startswith(
        "import cycle between odnbench.harness, odnbench.store, odnbench_plugins.thing: ")
    assert "odnbench/store.py:1 odnbench.store imports odnbench.harness" in cycles[0]
    # report's torch is TYPE_CHECKING only and it imports the registry inside a function
    assert heavy_at_startup(known, imports, ["odnbench.cli"]) == []
    assert [p.split(", and")[0] for p in heavy_at_startup(known, imports, ["odnbench_plugins.thing"])] == [
        "odnbench/registry.py:1: odnbench.registry imports torch at module level"]
    assert "odnbench_plugins.thing -> odnbench.store -> odnbench.harness -> odnbench.registry is imported" in \
        heavy_at_startup(known, imports, ["odnbench_plugins.thing"])[0]


def _builtin_plugin_names() -> set[str]:
    """What the built-in plugins are called in stored records: each method's ``name`` and the
    packages it declares (``env_packages``, in both spellings), read from their source."""
    names: set[str] = set()
    for path in SOURCES["odnbench_plugins"].rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef) or not any(
                    isinstance(b, ast.Name) and b.id == "Method" for b in node.bases):
                continue
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets) \
                        and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str):
                    names.add(stmt.value.value)
                if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "env_packages"
                                                        for t in stmt.targets):
                    for elt in ast.walk(stmt.value):
                        if isinstance(elt, ast.Constant) and isinstance(elt.value, str):
                            names |= {elt.value, elt.value.replace("-", "_")}
    return names


#: The only places in the core allowed to hold a built-in plugin's name as a string literal: where
#: records stored before a method could say its part are upgraded (module, name), and values that
#: only share a spelling with a method (the ``width`` option's "full": every stage at full width).
CORE_MAY_NAME = {
    ("odnbench.result", "full"),  # LEGACY_BASELINE_METHOD: pre-schema-5 records' baseline
    ("odnbench.result", "odn"), ("odnbench.result", "oracle"),  # LEGACY_DEPTH_ROLES: pre-role records
    ("odnbench.recipes", "full"), ("odnbench.cli", "full"),  # recipe width "full", not the method
}


def find_plugin_names(root: Path, names: set[str]) -> list[tuple[str, int, str]]:
    """(module, line, name) of every string literal in the core equal to a built-in plugin's name."""
    found = []
    for module, path in find_modules({root.name: root}).items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names:
                found.append((module, node.lineno, node.value))
    return found


def test_the_core_names_no_builtin_plugin():
    names = _builtin_plugin_names()
    assert {"odn", "oracle", "full", "prune", "torch_pruning"} <= names  # the scan finds the plugins
    stray = [f"{m}:{line}: {name!r}" for m, line, name in find_plugin_names(SOURCES["odnbench"], names)
             if (m, name) not in CORE_MAY_NAME]
    assert not stray, ("the core names built-in plugins (read what it needs from stored results, or "
                       f"allow an upgrade path in CORE_MAY_NAME): {stray}")


def test_the_plugin_name_check_catches_a_literal(tmp_path):
    pkg = tmp_path / "odnbench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('ROW = "oracle"\nTEXT = "an oracle"\n')
    assert find_plugin_names(pkg, {"oracle"}) == [("odnbench", 1, "oracle")]

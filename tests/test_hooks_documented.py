"""Every hook in odnbench/hookspecs.py is documented in docs/hooks.md with its exact signature,
and has a test of its own named test_hook_<name> somewhere under tests/."""

from __future__ import annotations

import ast
import inspect
import re
import types
from pathlib import Path

from odnbench import hookspecs

REPO = Path(__file__).resolve().parents[1]
HEADING = re.compile(r"^## (\w+)(\(.*\))\s*$", re.MULTILINE)


def declared_hooks(module) -> dict[str, str]:
    """name -> signature text, for every function marked with odnbench's hookspec."""
    return {name: str(inspect.signature(fn)) for name, fn in vars(module).items()
            if inspect.isfunction(fn) and hasattr(fn, "odnbench_spec")}


def documented_hooks(markdown: str) -> dict[str, str]:
    return {m.group(1): m.group(2) for m in HEADING.finditer(markdown)}


def test_names(tests_dir: Path) -> set[str]:
    names = set()
    for path in tests_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
    return names


test_names.__test__ = False  # a helper, not a test


def problems(module, markdown: str, tests_dir: Path) -> list[str]:
    hooks, docs, tests = declared_hooks(module), documented_hooks(markdown), test_names(tests_dir)
    out = []
    for name, signature in sorted(hooks.items()):
        if name not in docs:
            out.append(f"hook {name}{signature} is not documented in docs/hooks.md (add a '## {name}{signature}' section)")
        elif docs[name] != signature:
            out.append(f"docs/hooks.md documents {name}{docs[name]}, but the hookspec is {name}{signature}")
        if f"test_hook_{name}" not in tests:
            out.append(f"hook {name} has no test: write test_hook_{name} under tests/")
    for name in sorted(set(docs) - set(hooks)):
        out.append(f"docs/hooks.md documents {name}, which is not a hook in odnbench/hookspecs.py")
    return out


def test_every_hook_is_documented_and_tested():
    assert declared_hooks(hookspecs), "no hooks found: is the hookspec marker still called odnbench?"
    found = problems(hookspecs, (REPO / "docs" / "hooks.md").read_text(), REPO / "tests")
    assert not found, "\n".join(found)


def test_the_check_catches_an_undocumented_untested_or_changed_hook(tmp_path):
    import pluggy

    spec = pluggy.HookspecMarker("odnbench")
    fake = types.ModuleType("fake_hookspecs")

    @spec
    def register_methods(register):
        """documented and tested"""

    @spec
    def register_metrics(register, recipe):
        """new, undocumented, untested"""

    fake.register_methods, fake.register_metrics = register_methods, register_metrics
    (tmp_path / "test_x.py").write_text("def test_hook_register_methods():\n    pass\n")
    docs = "# Hooks\n\n## register_methods(register, extra)\n\n## register_gone(register)\n"
    found = problems(fake, docs, tmp_path)
    assert found == [
        "docs/hooks.md documents register_methods(register, extra), but the hookspec is register_methods(register)",
        "hook register_metrics(register, recipe) is not documented in docs/hooks.md "
        "(add a '## register_metrics(register, recipe)' section)",
        "hook register_metrics has no test: write test_hook_register_metrics under tests/",
        "docs/hooks.md documents register_gone, which is not a hook in odnbench/hookspecs.py",
    ]

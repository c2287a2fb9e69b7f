"""``odnbench new-plugin NAME``: write a ready-to-install plugin package ``odnbench-NAME/``.

The package is one module registered through the ``odnbench`` entry-point group, a README and
a pytest test that runs the plugin through the real harness with :mod:`odnbench.testing`::

    odnbench new-plugin mymethod
    pip install -e ./odnbench-mymethod      # now listed by `odnbench plugins`
    pytest ./odnbench-mymethod              # passes as generated

Every generated plugin works as written (a real method, a real dataset, a real backbone), so
the author starts from something green and changes it. The files are templates shipped as package
data under ``odnbench/templates/`` (``$name``-style placeholders, :class:`string.Template`): the
shared ``pyproject.toml.tmpl`` and ``README.md.tmpl``, and per kind ``plugin.py.tmpl``,
``test_plugin.py.tmpl``, ``usage.sh.tmpl`` and ``summary.txt``.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import re
from pathlib import Path
from string import Template

from odnbench import __version__
from odnbench.errors import OdnbenchError

KINDS = ("method", "dataset", "backbone")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")


def template(path: str) -> str:
    """The text of a template shipped with odnbench (``odnbench/templates/PATH``)."""
    return importlib.resources.files("odnbench").joinpath("templates", *path.split("/")).read_text()


def render(path: str, fields: dict[str, str]) -> str:
    return Template(template(path)).substitute(fields)


def check_name(name: str, kind: str) -> None:
    """One-line errors for names that would not make a valid, unambiguous plugin."""
    if kind not in KINDS:
        raise OdnbenchError(f"unknown plugin kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if not NAME_RE.match(name) or len(name) > 40:
        raise OdnbenchError(f"plugin name {name!r} is not allowed: use lowercase letters, digits and single "
                            "hyphens, starting with a letter (e.g. mymethod, my-method2), at most 40 characters")
    if name.startswith("odnbench"):
        raise OdnbenchError(f"plugin name {name!r}: give the plugin's own name without the 'odnbench' prefix "
                            f"(the package is called odnbench-NAME)")


def create_plugin(name: str, kind: str = "method", directory: Path | str = ".", *,
                  taken: dict[str, str] | None = None) -> Path:
    """Write ``directory/odnbench-NAME/`` and return its path.

    ``taken`` maps names already registered for ``kind`` to the plugin that registered them
    (a new plugin with one of those names would fail to load next to it).
    """
    check_name(name, kind)
    if taken and name in taken:
        raise OdnbenchError(f"{kind} {name!r} already exists (registered by plugin {taken[name]!r}); "
                            "pick another name")
    module = "odnbench_" + name.replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        raise OdnbenchError(f"a Python module {module!r} is already installed; pick another plugin name")
    target = Path(directory) / f"odnbench-{name}"
    if target.exists():
        raise OdnbenchError(f"{target} already exists; remove it or pass another --dir")

    ident = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()
    deps = [f'"odnbench>={__version__}"'] + (['"scikit-learn"'] if kind == "dataset" else [])
    fields = {"name": name, "kind": kind, "module": module, "ident": ident, "cls": cls,
              "dependencies": ", ".join(deps), "summary": template(f"{kind}/summary.txt").strip()}
    fields["usage"] = render(f"{kind}/usage.sh.tmpl", fields).rstrip("\n")
    files = {
        "pyproject.toml": render("pyproject.toml.tmpl", fields),
        f"{module}.py": render(f"{kind}/plugin.py.tmpl", fields),
        f"tests/test_{ident}.py": render(f"{kind}/test_plugin.py.tmpl", fields),
        "README.md": render("README.md.tmpl", fields),
    }
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target

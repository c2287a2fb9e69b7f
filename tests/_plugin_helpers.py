"""Install a throw-away plugin the way a real one arrives: a module on sys.path and an entry
point in the ``odnbench`` group, loaded by odnbench.registry.load_registry like any other."""

from __future__ import annotations

import importlib.metadata
import sys
import textwrap
from pathlib import Path


def install_plugin(monkeypatch, tmp_path: Path, ep_name: str, source: str) -> str:
    """Write ``source`` as module ``odnbench_testplugin_<ep_name>`` under tmp_path, expose it as entry point
    ``ep_name`` (group odnbench), and select it next to the built-ins. Returns the module name."""
    module = "odnbench_testplugin_" + ep_name.replace("-", "_")
    folder = tmp_path / "plugin-src"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)

    real = importlib.metadata.entry_points
    extra = importlib.metadata.EntryPoint(name=ep_name, value=module, group="odnbench")

    def entry_points(**params):
        if params.get("group") != "odnbench":
            return real(**params)
        return [ep for ep in real(**params) if ep.name != ep_name] + [extra]

    # Patched on importlib.metadata itself, which odnbench.registry calls; monkeypatch restores it.
    monkeypatch.setattr("odnbench.registry.importlib.metadata.entry_points", entry_points)
    import os

    selected = os.environ.get("ODNBENCH_LOAD_PLUGINS", "odnbench")
    monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", ",".join(filter(None, [selected, ep_name])))
    from odnbench import registry

    monkeypatch.setattr(registry, "_cached", None)
    return module


def make_dist(site: Path, dist: str, version: str, entry_points: dict[str, tuple[str, str]]) -> Path:
    """An installed distribution: modules plus ``<dist>-<version>.dist-info`` with its metadata and its
    entry points in the ``odnbench`` group, exactly what ``pip install`` leaves in site-packages."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in entry_points.values():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {module}\n" for name, (module, _) in entry_points.items())
    (info / "entry_points.txt").write_text(f"[odnbench]\n{lines}")
    return site

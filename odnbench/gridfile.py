"""Grid files: a whole board declared in one TOML file, run with ``odnbench compare --grid FILE``.

A grid file says what a ``compare`` command line says, plus what a command line cannot: the same
method several times with different parameters (each ``[[method]]`` its own set, and its own
sweeps). Everything is checked before anything trains; a bad key or value is one line naming the
file, the line and the key. docs/grids.md documents the format and how it combines with options
given on the command line (there: :func:`merge_cli`).

No torch here: it runs at plan time.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odnbench.errors import OdnbenchError, UnknownNameError
from odnbench.plan import Entry
from odnbench.safeio import MAX_GRID_BYTES, nesting_depth, read_named_file

#: Deepest nesting a grid file may have (its own structure nests 3 levels: [[method]] params lists).
MAX_GRID_DEPTH = 16

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

TOP_KEYS = {
    "description": "free text about the board",
    "preset": "the recipe preset (smoke, quick, paper)",
    "datasets": "list of dataset names",
    "backbones": "list of backbone names",
    "seeds": "list of integer seeds",
    "data_dir": "folder holding the datasets, relative to the grid file",
    "download": "true/false: download missing torchvision datasets",
    "jobs": "cells run at once (compare --jobs)",
    "recipe": "table of recipe fields (as --set recipe.FIELD=VALUE; a list is a sweep)",
    "set": "tables [set.METHOD] of parameters for every cell of METHOD, dependencies included (as --set)",
    "method": "array of [[method]] tables: name, and params (a list value is a sweep)",
}
METHOD_KEYS = ("name", "params")


@dataclass
class GridFile:
    """A checked grid file, ready for :func:`odnbench.plan.plan_grid`."""

    path: Path
    sha256: str
    entries: list[Entry]
    sets: list[str]  # grid-wide, as --set texts (recipe.FIELD=..., METHOD.PARAM=...)
    preset: str | None = None
    datasets: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    data_dir: Path | None = None
    download: bool | None = None
    jobs: int | None = None

    @property
    def provenance(self) -> dict:
        """What each result the grid produced records (not part of any cell's key)."""
        return {"grid": self.path.name, "grid_sha256": self.sha256}


# ------------------------------------------------------------------------------ line numbers

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=\s*(.*)$""")
_INLINE_KEY = re.compile(r"""[{,]\s*("[^"]*"|'[^']*'|[A-Za-z0-9_-]+)\s*=""")


def _parts(dotted: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r"""\"[^\"]*\"|'[^']*'|[^.]+""", dotted)]


def key_lines(text: str) -> dict[tuple, int]:
    """Line number (1-based) of every key the file writes, by path: ``("preset",)``,
    ``("recipe", "epochs")``, ``("method", 2, "params", "ratio")`` (tomllib gives no positions)."""
    lines: dict[tuple, int] = {}
    arrays: dict[tuple, int] = {}
    table: tuple = ()
    for number, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header and not _KEY.match(line):
            path: list = []
            parts = _parts(header.group(2))
            for i, part in enumerate(parts):
                path.append(part)
                last_of_array = header.group(1) == "[[" and i == len(parts) - 1
                if tuple(path) in arrays and not last_of_array:  # [method.params] after [[method]]: the last entry
                    path.append(arrays[tuple(path)])
            if header.group(1) == "[[":
                base = tuple(path)
                arrays[base] = arrays.get(base, -1) + 1
                path.append(arrays[base])
            table = tuple(path)
            lines.setdefault(table, number)
            continue
        key = _KEY.match(line)
        if key:
            where = table + tuple(_parts(key.group(1)))
            lines.setdefault(where, number)
            value = key.group(2)
            if value.lstrip().startswith("{"):
                for inner in _INLINE_KEY.findall(value):
                    lines.setdefault(where + (inner.strip("\"'"),), number)
    return lines


# ------------------------------------------------------------------------------ reading


class _Reader:
    def __init__(self, path: Path, text: str):
        self.path, self.lines = path, key_lines(text)

    def line(self, path: tuple) -> int:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return 1

    def fail(self, path: tuple, message: str) -> OdnbenchError:
        shown = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
        return OdnbenchError(f"{self.path}:{self.line(path)}: {shown}: {message}")


def _text(value: Any) -> str:
    """A TOML value as --set text, which the declared Param then parses and checks."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def _values(reader: _Reader, path: tuple, value: Any) -> list[str]:
    """One value, or a list of them (a sweep), as text."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise reader.fail(path, "an empty list sweeps nothing; give one value or several")
    for item in items:
        if not isinstance(item, (str, int, float, bool)):
            raise reader.fail(path, f"{type(item).__name__} is not a parameter value (a string, number, true/false, "
                                    "or a list of them for a sweep)")
        if isinstance(item, str) and ";" in item:
            raise reader.fail(path, f"{item!r}: a value cannot hold ';' (write a sweep as a TOML list)")
    return [_text(v) for v in items]


def _check_param(reader: _Reader, path: tuple, declared: dict, owner: str, name: str, texts: list[str]) -> None:
    if name not in declared:
        what = "recipe field" if owner == "recipe" else f"parameter of method {owner!r}"
        raise reader.fail(path, str(UnknownNameError(what, name, declared)))
    for text in texts:
        try:
            declared[name].parse(text, owner)
        except OdnbenchError as exc:
            raise reader.fail(path, str(exc)) from None


def _names(reader: _Reader, raw: dict, key: str, kind: str, registry) -> list[str]:
    value = raw[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise reader.fail((key,), f"expected a non-empty list of {kind} names, e.g. {key} = [\"...\"]")
    for name in value:
        try:
            getattr(registry, kind)(name)
        except OdnbenchError as exc:
            raise reader.fail((key,), str(exc)) from None
    return list(value)


def load_grid(path: Path, registry) -> GridFile:
    """Read and check a grid file: every key known, every value valid, before anything trains."""
    from odnbench.recipes import PRESETS, recipe_params

    path = Path(path)
    data = read_named_file(path, MAX_GRID_BYTES, "--grid")  # no FIFO, device or huge file: one line
    try:
        text = data.decode("utf-8")
        raw = tomllib.loads(text)
    except UnicodeDecodeError:
        raise OdnbenchError(f"{path}: not UTF-8 text (a grid file is TOML)") from None
    except tomllib.TOMLDecodeError as exc:
        raise OdnbenchError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # the (recursive) TOML parser on values nested thousands deep
        raise OdnbenchError(f"{path}: it nests deeper than {MAX_GRID_DEPTH} levels (a grid file nests 3)") from None
    if nesting_depth(raw, MAX_GRID_DEPTH) > MAX_GRID_DEPTH:
        raise OdnbenchError(f"{path}: it nests deeper than {MAX_GRID_DEPTH} levels (a grid file nests 3)")
    reader = _Reader(path, text)
    for key in raw:
        if key not in TOP_KEYS:
            raise reader.fail((key,), f"unknown key; allowed: {', '.join(TOP_KEYS)}")
    grid = GridFile(path=path, sha256=hashlib.sha256(data).hexdigest(), entries=[], sets=[])
    if "preset" in raw:
        if raw["preset"] not in PRESETS:
            raise reader.fail(("preset",), f"{raw['preset']!r} is not a preset; choose one of: {', '.join(PRESETS)}")
        grid.preset = raw["preset"]
    if "datasets" in raw:
        grid.datasets = _names(reader, raw, "datasets", "dataset", registry)
    if "backbones" in raw:
        grid.backbones = _names(reader, raw, "backbones", "backbone", registry)
    if "seeds" in raw:
        seeds = raw["seeds"]
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                                for s in seeds):
            raise reader.fail(("seeds",), "expected a non-empty list of integers, e.g. seeds = [0, 1, 2]")
        grid.seeds = list(seeds)
    if "data_dir" in raw:
        if not isinstance(raw["data_dir"], str):
            raise reader.fail(("data_dir",), "expected a folder path as a string")
        grid.data_dir = (path.parent / raw["data_dir"]).resolve()
    if "download" in raw:
        if not isinstance(raw["download"], bool):
            raise reader.fail(("download",), "expected true or false")
        grid.download = raw["download"]
    if "jobs" in raw:
        if not isinstance(raw["jobs"], int) or isinstance(raw["jobs"], bool) or raw["jobs"] < 1:
            raise reader.fail(("jobs",), f"expected a positive integer, got {raw['jobs']!r}")
        grid.jobs = raw["jobs"]
    if "description" in raw and not isinstance(raw["description"], str):
        raise reader.fail(("description",), "expected a string")
    recipe = raw.get("recipe", {})
    if not isinstance(recipe, dict):
        raise reader.fail(("recipe",), "expected a table [recipe] of recipe fields")
    declared_recipe = recipe_params()
    for name, value in recipe.items():
        texts = _values(reader, ("recipe", name), value)
        _check_param(reader, ("recipe", name), declared_recipe, "recipe", name, texts)
        if name == "width":
            _check_widths(reader, texts, grid, registry)
        grid.sets.append(f"recipe.{name}={';'.join(texts)}")
    sets = raw.get("set", {})
    if not isinstance(sets, dict) or not all(isinstance(v, dict) for v in sets.values()):
        raise reader.fail(("set",), "expected tables [set.METHOD] of that method's parameters")
    for owner, params in sets.items():
        declared = _method_params(reader, ("set", owner), owner, registry)
        for name, value in params.items():
            texts = _values(reader, ("set", owner, name), value)
            _check_param(reader, ("set", owner, name), declared, owner, name, texts)
            grid.sets.append(f"{owner}.{name}={';'.join(texts)}")
    methods = raw.get("method", [])
    if not isinstance(methods, list) or not all(isinstance(m, dict) for m in methods):
        raise reader.fail(("method",), "expected [[method]] tables")
    for i, entry in enumerate(methods):
        for key in entry:
            if key not in METHOD_KEYS:
                raise reader.fail(("method", i, key), f"unknown key in [[method]]; allowed: {', '.join(METHOD_KEYS)} "
                                                      "(parameters go in params)")
        if not isinstance(entry.get("name"), str):
            raise reader.fail(("method", i), "each [[method]] needs name = \"METHOD\"")
        name = entry["name"]
        declared = _method_params(reader, ("method", i, "name"), name, registry)
        params = entry.get("params", {})
        if not isinstance(params, dict):
            raise reader.fail(("method", i, "params"), "expected a table of parameters, e.g. params = { ratio = 0.5 }")
        own = {}
        for pname, value in params.items():
            where = ("method", i, "params", pname)
            own[pname] = _values(reader, where, value)
            _check_param(reader, where, declared, name, pname, own[pname])
        grid.entries.append(Entry(name, own, where=f"{path}:{reader.line(('method', i))}"))
    return grid


def _check_widths(reader: _Reader, texts: list[str], grid: GridFile, registry) -> None:
    """Each ``[recipe] width`` is stage widths the file's backbones (default: resnet18) can be built
    at, named by the file and line rather than as a --set value."""
    from odnbench.plan import DEFAULT_BACKBONE, check_width
    from odnbench.recipes import make_recipe

    for text in texts:
        try:
            recipe = make_recipe(grid.preset or "smoke", {"width": text})
            for backbone in grid.backbones or [DEFAULT_BACKBONE]:
                check_width(registry, backbone, recipe, f"width {text}")
        except OdnbenchError as exc:
            raise reader.fail(("recipe", "width"), str(exc).replace("recipe.width=", "width=")) from None


def _method_params(reader: _Reader, path: tuple, name: str, registry) -> dict:
    if name not in registry.items["method"]:
        raise reader.fail(path, str(UnknownNameError("method", name, registry.items["method"])))
    return {p.name: p for p in registry.method(name).params}


@dataclass
class Merged:
    """What compare runs once a grid file and the command line are combined."""

    entries: list[Entry]
    methods: list[str]
    datasets: list[str]
    backbones: list[str]
    seeds: list[int]
    preset: str
    sets: list[str]
    data_dir: Path | None
    download: bool
    jobs: int


def merge_cli(grid: GridFile, *, methods, datasets, backbones, seeds, preset, sets, data_dir, download, jobs,
              given: set[str]) -> Merged:
    """The command line wins: options named in ``given`` replace the file's value (``--dataset``,
    ``--backbone``, ``--seed`` replace its lists, ``--preset``, ``--data-dir``, ``--jobs``,
    ``--download`` its value); ``--set`` adds to the file's grid-wide values, overriding the same
    key; ``--method`` adds methods, with the grid-wide values only."""
    from odnbench.plan import DEFAULT_BACKBONE, DEFAULT_DATASET

    def pick(name, cli_value, file_value, default):
        if name in given:
            return cli_value
        return file_value if file_value not in (None, []) else default

    if not grid.entries and not methods:
        raise OdnbenchError(f"{grid.path}: it declares no [[method]], and no --method was given")
    return Merged(
        entries=list(grid.entries), methods=list(methods),
        datasets=list(pick("datasets", datasets, grid.datasets, [DEFAULT_DATASET])),
        backbones=list(pick("backbones", backbones, grid.backbones, [DEFAULT_BACKBONE])),
        seeds=list(pick("seeds", seeds, grid.seeds, [0])),
        preset=pick("preset", preset, grid.preset, preset),
        sets=list(grid.sets) + list(sets),
        data_dir=pick("data_dir", data_dir, grid.data_dir, data_dir),
        download=pick("download", download, grid.download, download),
        jobs=pick("jobs", jobs, grid.jobs, jobs),
    )

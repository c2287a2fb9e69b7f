"""Planning: expand a grid (method x dataset x backbone x seed) into cells with canonical configs,
add the cells they need, and order them so that each runs after what it requires.

Everything here happens before any training, so a bad name or value fails at plan time with one
line. A cell's key is the hash of its config (:func:`odnbench.store.cell_key`): the same cell
always has the same key, which is what makes resume work.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from odnbench import PROTOCOL_VERSION
from odnbench.contract import BackboneShape, Method, Param, Requirement, target_tolerance
from odnbench.errors import OdnbenchError, PluginError, UnknownNameError
from odnbench.recipes import PRESETS, Recipe, make_recipe, recipe_params
from odnbench.registry import Registry
from odnbench.store import cell_dirname, cell_key

DEFAULT_DATASET = "mnist5k"
DEFAULT_BACKBONE = "resnet18"
#: The most cells one command plans unless told otherwise (``compare --max-cells``): ten sweeps of ten
#: values would otherwise expand to 10**10 cells and take all memory before anything is said.
MAX_CELLS = 1000
SEED_LIMIT = 2 ** 63  # torch.manual_seed's range


def split_overrides(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``["odn.target=99", "recipe.epochs=5"]`` -> ``{"odn": {"target": "99"}, "recipe": {"epochs": "5"}}``."""
    out: dict[str, dict[str, str]] = {}
    for pair in pairs:
        if "=" not in pair or "." not in pair.split("=", 1)[0]:
            raise OdnbenchError(f"--set {pair!r}: expected METHOD.PARAM=VALUE or recipe.PARAM=VALUE")
        key, value = pair.split("=", 1)
        owner, name = key.split(".", 1)
        out.setdefault(owner.strip(), {})[name.strip()] = value
    return out


def _set_text(owner: str, name: str, overrides: dict[str, dict[str, str]]) -> str:
    return f"--set {owner}.{name}={overrides[owner][name]}"


def check_overrides(registry: Registry, overrides: dict[str, dict[str, str]]) -> None:
    """Every ``--set METHOD.PARAM`` names a registered method and one of its parameters, with a
    value of the right type; errors say they came from ``--set`` and what is allowed."""
    for owner, values in overrides.items():
        if owner == "recipe":
            continue
        if owner not in registry.items["method"]:
            err = UnknownNameError("method", owner, registry.items["method"])
            first = _set_text(owner, next(iter(values)), overrides)
            raise OdnbenchError(f"{first}: {err} (--set also takes recipe.FIELD=VALUE)")
        declared = {p.name: p for p in registry.method(owner).params}
        for name, text in values.items():
            where = _set_text(owner, name, overrides)
            if not declared:
                raise OdnbenchError(f"{where}: method {owner!r} has no parameters (--set also takes "
                                    f"recipe.FIELD=VALUE)")
            if name not in declared:
                raise OdnbenchError(f"{where}: {UnknownNameError(f'parameter of method {owner!r}', name, declared)} "
                                    f"(`odnbench params {owner}` lists them)")
            for value in declared[name].split_values(text):
                try:
                    declared[name].parse(value, owner)
                except OdnbenchError as exc:
                    several = f" (one of the values of {where})" if value != text else ""
                    raise OdnbenchError(f"--set {exc}{several}") from None


def _replaced_fields(registry: Registry, method: str, preset: str, datasets: list[str],
                     method_sets: dict[str, str], set_by_entry: set[str]) -> dict[str, str]:
    """The recipe fields a method's parameters replace in this grid (``Param.replaces_recipe``, set to a
    value on every dataset), each with the sentence that says so. A parameter a grid entry sets per row
    is left out: some rows may set it to none."""
    out = {}
    for p in registry.method(method).params:
        if not p.replaces_recipe or p.name in set_by_entry or not datasets:
            continue
        sets = {p.name: method_sets[p.name]} if p.name in method_sets else {}
        values = {resolve_params(registry, method, preset, d, sets).get(p.name) for d in datasets}
        if None not in values:
            how = "set by --set" if sets else f"preset {preset}'s value"
            out[p.replaces_recipe] = (f"{method}.{p.name}={'/'.join(sorted(map(str, values)))} ({how}) replaces "
                                      f"recipe.{p.replaces_recipe} for it; --set {method}.{p.name}=VALUE instead")
    return out


def check_recipe_use(registry: Registry, methods: list[str], recipe_overrides: dict[str, str], preset: str = "",
                     datasets: list[str] | None = None, sets: dict[str, dict[str, str]] | None = None,
                     entries: list[Entry] | None = None) -> None:
    """A ``--set recipe.FIELD`` that none of the chosen methods uses would only make a separate cell
    that trains the same way: refuse it, naming what the methods use instead (each method may
    declare ``Method.unused_recipe_fields``, and a parameter that replaces the field,
    ``Param.replaces_recipe``, when it is set in this grid's preset, datasets and ``--set``). ``sets``: one
    variant's single-valued ``--set`` texts per method (each value of a sweep is checked on its own)."""
    if not recipe_overrides:
        return
    chosen = list(dict.fromkeys(methods))
    replaced = {m: _replaced_fields(registry, m, preset, list(datasets or []), (sets or {}).get(m, {}),
                                    {n for e in entries or [] if e.method == m for n in e.params}) for m in chosen}
    for name in recipe_overrides:
        unused = {m: {**replaced[m], **dict(getattr(registry.method(m), "unused_recipe_fields", None) or {})}
                  for m in chosen}
        if any(name not in u for u in unused.values()):
            continue
        why = "; ".join(f"{m}: {u[name]}" if u[name] else m for m, u in unused.items())
        allowed = sorted(f for f in recipe_params() if any(f not in u for u in unused.values()))
        raise OdnbenchError(
            f"--set recipe.{name}={recipe_overrides[name]}: no method in this grid uses recipe.{name} ({why}). "
            f"Recipe fields that {', '.join(chosen)} {'uses' if len(chosen) == 1 else 'use'}: "
            f"{', '.join(allowed)}; or add --method for a method that uses it "
            f"(cells added as dependencies share the recipe but are not what the grid compares)")


def resolve_params(registry: Registry, method_name: str, preset: str, dataset: str,
                   overrides: dict[str, str], fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Declared defaults, then preset/dataset defaults, then ``--set`` text, then a requirement's values."""
    method = registry.method(method_name)
    plugin = registry.owner.get(("method", method_name), "?")
    if not isinstance(method.params, (tuple, list)) or not all(isinstance(p, Param) for p in method.params):
        raise PluginError(f"plugin {plugin!r}: method {method_name!r} declares params {method.params!r:.80}; it "
                          "must be a tuple of odnbench.Param")
    declared = {}
    for p in method.params:
        if p.name in declared:
            raise PluginError(f"plugin {plugin!r}: method {method_name!r} declares parameter {p.name!r} twice")
        declared[p.name] = p
    params = {name: p.default for name, p in declared.items()}
    follows = getattr(method, "follows_board_tolerance", None)
    if follows is not None:  # the board's tolerance for this preset, below the method's own preset values
        if follows not in declared or declared[follows].type is not float:
            raise PluginError(f"plugin {plugin!r}: method {method_name!r}: follows_board_tolerance={follows!r} must "
                              "name one of its float parameters")
        params[follows] = declared[follows].check(target_tolerance(preset), method_name)
    try:  # the plugin's values, not the user's: a bad one names the plugin and fails its cells only
        preset_values = method.preset_defaults(preset, dataset) or {}
        if not isinstance(preset_values, dict):
            raise PluginError(f"returned {type(preset_values).__name__}, not a dict of parameter values")
        for name, value in preset_values.items():
            if name not in declared:
                raise PluginError(f"sets undeclared {name!r}")
            params[name] = declared[name].check(value, method_name)
    except PluginError as exc:
        raise PluginError(f"plugin {plugin!r}: preset_defaults of {method_name!r} {exc} (preset {preset}, dataset "
                          f"{dataset})") from None
    except OdnbenchError as exc:
        raise PluginError(f"plugin {plugin!r}: preset_defaults of {method_name!r} gives a value outside its declared "
                          f"parameter: {exc} (preset {preset}, dataset {dataset})") from None
    except Exception as exc:
        raise PluginError(f"plugin {plugin!r}: preset_defaults of {method_name!r} raised {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:200]} (preset {preset}, dataset {dataset})") from None
    for name, text in overrides.items():
        if name not in declared:
            raise UnknownNameError(f"parameter of method {method_name!r}", name, declared)
        params[name] = declared[name].parse(text, method_name)
    for name, value in (fixed or {}).items():
        if name not in declared:
            raise PluginError(f"requirement sets unknown parameter {method_name}.{name}")
        params[name] = declared[name].check(value, method_name)
    return params


def check_config(registry: Registry, config: Any, where: str = "the recorded config") -> Recipe:
    """A stored cell config checked against the same rules as a planned one (names registered,
    every parameter declared and in its range, the recipe's fields in theirs, the backbone buildable
    at its widths), before anything runs on it: a record is data anyone can write, and
    ``prune.steps=10**18`` read from one must be refused as ``--set`` refuses it. One-line
    OdnbenchError naming ``where``; returns the recipe."""
    def refuse(why: str) -> OdnbenchError:
        return OdnbenchError(f"{where}: {' '.join(why.split())[:300]}; not run (compare would refuse it too)")

    if not isinstance(config, dict):
        raise refuse(f"it is a {type(config).__name__}, not a config")
    for name, types in (("method", str), ("dataset", str), ("backbone", str), ("preset", str), ("seed", int),
                        ("params", dict), ("recipe", dict)):
        if not isinstance(config.get(name), types) or isinstance(config.get(name), bool):
            raise refuse(f"{name} is {str(config.get(name))[:40]!r}, expected {types.__name__}")
    if not -SEED_LIMIT <= config["seed"] < SEED_LIMIT:
        raise refuse(f"seed={config['seed']} is out of range; allowed: -2**63 <= seed < 2**63")
    try:
        method = registry.method(config["method"])
        registry.dataset(config["dataset"])
        registry.backbone(config["backbone"])
        recipe = Recipe.from_dict(config["recipe"])
        if recipe.preset != config["preset"]:
            raise OdnbenchError(f"recipe.preset {recipe.preset!r} is not the config's preset {config['preset']!r}")
        declared = ({p.name: p for p in method.params if isinstance(p, Param)}
                    if isinstance(method.params, (tuple, list)) else {})
        for name, value in config["params"].items():
            if name not in declared:
                raise UnknownNameError(f"parameter of method {config['method']!r}", str(name), declared)
            declared[name].check(value, config["method"])
        check_width(registry, config["backbone"], recipe)
    except OdnbenchError as exc:
        raise refuse(str(exc)) from None
    return recipe


def check_width(registry: Registry, backbone: str, recipe: Recipe, asked: str | None = None) -> None:
    """The backbone can be built at the recipe's widths (one line naming both when it cannot).
    ``asked`` says where the widths came from (default: the recipe and its preset)."""
    family = registry.backbone(backbone)
    plugin = registry.owner.get(("backbone", getattr(family, "name", backbone)), "?")
    try:
        family.check_width(recipe.widths)
    except ValueError as exc:
        asked = asked or f"recipe.width={recipe.width} (preset {recipe.preset})"
        raise OdnbenchError(f"backbone {backbone!r} cannot be built at {asked}: {exc}") from None
    except Exception as exc:
        raise PluginError(f"plugin {plugin!r}: backbone {backbone!r}: check_width raised "
                          f"{type(exc).__name__}: {exc}") from None


def stored_params(method, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters as they enter a cell's config: those declared ``omit_default`` are left out
    while they hold their default, so adding such a parameter changes no stored cell's key."""
    omit = {p.name: p.default for p in method.params if p.omit_default}
    return {k: v for k, v in params.items() if not (k in omit and v == omit[k])}


def method_params(method, stored: dict[str, Any]) -> dict[str, Any]:
    """What a method receives in ``ctx.params``: a config's parameters with the ``omit_default``
    ones it left out filled back in."""
    return {**{p.name: p.default for p in method.params if p.omit_default}, **stored}


def make_config(method: str, params: dict, dataset: str, backbone: str, seed: int, recipe: Recipe) -> dict:
    """The canonical config of one cell: everything that changes its result, nothing else."""
    return {
        "protocol": PROTOCOL_VERSION,
        "method": method,
        "params": params,
        "dataset": dataset,
        "backbone": backbone,
        "input": {"stem": recipe.stem, "width": recipe.width},
        "seed": seed,
        "preset": recipe.preset,
        "recipe": recipe.as_dict(),
    }


_SHAPES: dict[tuple, BackboneShape] = {}  # (registry, backbone, stem, widths) -> its shape, built once


def backbone_shape(registry: Registry, backbone: str, recipe: Recipe) -> BackboneShape:
    """The depth and stages of ``backbone`` at the recipe's stem and widths, from one untrained build."""
    key = (id(registry), backbone, recipe.stem, recipe.widths)
    if key not in _SHAPES:
        net = registry.backbone(backbone).build(in_chans=3, num_classes=10, stem=recipe.stem, width=recipe.widths)
        _SHAPES[key] = BackboneShape(backbone, net.depth, tuple(net.stages), tuple(net.stage_widths))
    return _SHAPES[key]


def _check_backbone(registry: Registry, method: str, params: dict[str, Any], backbone: str,
                    recipe: Recipe) -> str | None:
    """``Method.check_backbone`` at plan time, for a method that overrides it: its OdnbenchError (the
    user's value does not fit the backbone) stops the plan with one line; anything else it raises is a
    plugin bug, returned to fail this cell only."""
    found = registry.method(method)
    if getattr(type(found), "check_backbone", Method.check_backbone) is Method.check_backbone:
        return None  # nothing to check: the backbone is not even built
    try:
        found.check_backbone(params, backbone_shape(registry, backbone, recipe))
    except OdnbenchError as exc:
        raise OdnbenchError(f"{method} on backbone {backbone!r}: {exc}") from None
    except Exception as exc:
        return f"check_backbone() raised {type(exc).__name__}: {exc}"
    return None


@dataclass
class Cell:
    config: dict
    requires: dict[str, str] = field(default_factory=dict)  # dependency name -> cell key
    added_as_dependency: bool = False
    error: str | None = None  # a plugin's contract error found while planning: run_cell records it as failed
    defaults: dict = field(default_factory=dict)  # the parameters had nobody set any (stored for board labels)
    provenance: dict = field(default_factory=dict)  # what asked for it (a grid file): stored, not in the key
    asked: tuple[str, ...] = ()  # the parameters --set or a grid file set for it (shown in its label)

    @property
    def key(self) -> str:
        return cell_key(self.config)

    @property
    def dirname(self) -> str:
        return cell_dirname(self.config)

    def varied(self) -> dict[str, Any]:
        """What makes this cell differ from its method's defaults under its preset: the parameters
        set away from them (a sweep's value, a match) and the recipe fields set away from the preset's."""
        c = self.config
        out = {k: v for k, v in (c.get("params") or {}).items()
               if k in self.asked or (k in self.defaults and self.defaults[k] != v)}
        preset = c.get("preset")
        if preset in PRESETS and isinstance(c.get("recipe"), dict):
            base = PRESETS[preset].as_dict()
            out.update({f"recipe.{k}": v for k, v in c["recipe"].items() if k in base and base[k] != v})
        return out

    def label(self) -> str:
        """``prune (match=odn:size) | mnist5k | resnet18 | seed 0 | quick``: the swept values shown."""
        c = self.config
        varied = self.varied()
        shown = f"{c['method']} ({', '.join(f'{k}={v}' for k, v in varied.items())})" if varied else c["method"]
        return f"{shown} | {c['dataset']} | {c['backbone']} | seed {c['seed']} | {c['preset']}"


@dataclass
class Grid:
    cells: list[Cell]  # in run order: every cell after the cells it requires

    def by_key(self) -> dict[str, Cell]:
        return {c.key: c for c in self.cells}


@dataclass
class Entry:
    """One method of a grid with parameters of its own (a grid file's ``[[method]]``): ``params``
    maps a parameter to its values as text, several values being a sweep. The grid-wide ``--set``
    values apply first, these on top, to this entry's cells only (not to cells added as dependencies)."""

    method: str
    params: dict[str, list[str]] = field(default_factory=dict)
    where: str = ""  # how errors name the entry, e.g. "grid.toml line 12"


def expand_values(registry: Registry, overrides: dict[str, dict[str, str]]) -> dict[str, dict[str, list[str]]]:
    """Each ``--set`` text as its list of values (several = a sweep; see :meth:`Param.split_values` for
    when a comma separates values), every value validated now, before anything trains."""
    check_overrides(registry, {o: v for o, v in overrides.items() if o != "recipe"})
    declared_recipe = recipe_params()
    out: dict[str, dict[str, list[str]]] = {}
    for owner, values in overrides.items():
        declared = declared_recipe if owner == "recipe" else {p.name: p for p in registry.method(owner).params}
        for name, text in values.items():
            param = declared.get(name)
            out.setdefault(owner, {})[name] = param.split_values(text) if param is not None else [text]
    return out


def _check_value(param, text: str, owner: str, whole: str) -> None:
    """One value of a sweep, checked like a single one; the error names the value and the sweep."""
    try:
        param.parse(text, owner)
    except OdnbenchError as exc:
        raise OdnbenchError(f"--set {exc} (one of the values of --set {owner}.{param.name}={whole})") from None


def _variants(values: dict[str, dict[str, list[str]]]) -> list[dict[str, dict[str, str]]]:
    """The cartesian product of every swept parameter: one single-valued override set per variant."""
    keys = [(owner, name) for owner, names in values.items() for name in names]
    out = []
    for combo in itertools.product(*(values[o][n] for o, n in keys)):
        variant: dict[str, dict[str, str]] = {}
        for (owner, name), text in zip(keys, combo):
            variant.setdefault(owner, {})[name] = text
        out.append(variant)
    return out or [{}]


def plan_grid(registry: Registry, methods: list[str], datasets: list[str], backbones: list[str],
              seeds: list[int], preset: str, sets: list[str] | None = None,
              add_dependencies: bool = True, entries: list[Entry] | None = None,
              provenance: dict | None = None, max_cells: int = MAX_CELLS) -> Grid:
    """Cartesian grid method x dataset x backbone x seed x swept values, plus (when asked) the cells
    they need, ordered so that each cell runs after its dependencies.

    ``sets`` (``--set``) apply to every cell of their method, dependencies included; a value list
    (``prune.ratio=0.3,0.5``) is a sweep, and several sweeps make their cartesian product. ``entries``
    (a grid file's methods) add methods with parameters of their own, on top of ``sets``.
    ``provenance`` (e.g. the grid file that asked for the cells) is stored with each result."""
    overrides = split_overrides(sets or [])
    for name in datasets:
        registry.dataset(name)
    entries = [Entry(m) for m in methods] + list(entries or [])
    for entry in entries:
        registry.method(entry.method)
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not -SEED_LIMIT <= seed < SEED_LIMIT:
            raise OdnbenchError(f"--seed {seed!r} is out of range; allowed: an integer, -2**63 <= seed < 2**63")
    values = expand_values(registry, overrides)
    check_grid_size(values, entries, len(datasets) * len(backbones) * len(seeds), max_cells)
    declared_recipe = recipe_params()  # (method values were checked by expand_values)
    for name, texts in values.get("recipe", {}).items():
        if len(texts) > 1 and name in declared_recipe:
            for text in texts:
                _check_value(declared_recipe[name], text, "recipe", overrides["recipe"][name])
    for entry in entries:
        declared = {p.name: p for p in registry.method(entry.method).params}
        for name, texts in entry.params.items():
            where = f"{entry.where}: " if entry.where else ""
            if name not in declared:
                raise OdnbenchError(f"{where}{UnknownNameError(f'parameter of method {entry.method!r}', name, declared)}")
            for text in texts:
                try:
                    declared[name].parse(text, entry.method)
                except OdnbenchError as exc:
                    raise OdnbenchError(f"{where}{exc}") from None
    ordered: dict[str, Cell] = {}
    involved: set[str] = {e.method for e in entries}
    grid_methods = [e.method for e in entries]
    recipes = []
    for variant in _variants(values):
        recipe_overrides = variant.pop("recipe", {})
        try:
            recipe = make_recipe(preset, recipe_overrides)
        except UnknownNameError as exc:
            if exc.kind == "preset":
                raise
            raise OdnbenchError(f"{_set_text('recipe', exc.name, {'recipe': recipe_overrides})}: {exc}") from None
        except OdnbenchError as exc:
            raise OdnbenchError(f"--set {exc}") from None
        for name in backbones:
            check_width(registry, name, recipe, _set_text("recipe", "width", {"recipe": recipe_overrides})
                        if "width" in recipe_overrides else None)
        check_recipe_use(registry, grid_methods, recipe_overrides, preset, datasets, variant, entries)
        recipes.append((recipe, variant))
    for dataset, backbone, seed in itertools.product(datasets, backbones, seeds):
        for recipe, variant in recipes:
            for entry in entries:
                own = _variants({"m": entry.params}) if entry.params else [{}]
                for one in own:
                    mine = {**variant, entry.method: {**variant.get(entry.method, {}), **one.get("m", {})}}
                    _plan_cells(registry, ordered, involved, entry.method, dataset, backbone, seed, preset, recipe,
                                variant, mine, add_dependencies, provenance)
    for owner in overrides:
        if owner != "recipe" and owner not in involved:
            raise OdnbenchError(
                f"{_set_text(owner, next(iter(overrides[owner])), overrides)}: method {owner!r} is not in this grid "
                f"(its methods: {', '.join(sorted(involved))}); add --method {owner} or drop the --set")
    return Grid(list(ordered.values()))


def check_grid_size(values: dict[str, dict[str, list[str]]], entries: list[Entry], combos: int,
                    max_cells: int) -> None:
    """Refuse, before expanding anything, a grid of more than ``max_cells`` asked-for cells (one line
    saying how many and how to allow them)."""
    variants = math.prod(len(texts) for names in values.values() for texts in names.values())
    own = sum(math.prod(len(texts) for texts in e.params.values()) for e in entries)
    asked = combos * variants * own
    if asked > max_cells:
        sweeps = [f"{o}.{n} ({len(t)} values)" for o, names in values.items() for n, t in names.items() if len(t) > 1]
        sweeps += [f"{e.where or e.method}: {e.method}.{n} ({len(t)} values)" for e in entries
                   for n, t in e.params.items() if len(t) > 1]
        raise OdnbenchError(f"this grid asks for {asked:,} cells, more than the {max_cells:,} allowed"
                            + (f" (sweeps: {', '.join(sweeps[:4])}{' ...' if len(sweeps) > 4 else ''})" if sweeps else "")
                            + "; sweep fewer values, or raise the cap with --max-cells N")


def _plan_cells(registry: Registry, ordered: dict[str, Cell], involved: set[str], method: str, dataset: str,
                backbone: str, seed: int, preset: str, recipe: Recipe, overrides: dict[str, dict[str, str]],
                own: dict[str, dict[str, str]], add_dependencies: bool, provenance: dict | None) -> None:
    """Add one asked-for cell (parameters ``own``) and, recursively, the cells it requires (the
    grid-wide ``overrides``) to ``ordered``, each after what it needs."""

    def add(method: str, fixed: dict | None, as_dep: bool, stack: tuple[str, ...],
            sets: dict[str, dict[str, str]]) -> Cell:
        try:
            params = resolve_params(registry, method, preset, dataset, sets.get(method, {}), fixed)
        except PluginError as exc:  # the plugin's fault, not the user's: fail its cells, not the whole grid
            cell = Cell(make_config(method, {}, dataset, backbone, seed, recipe), added_as_dependency=as_dep,
                        error=str(exc), provenance=dict(provenance or {}))
            return ordered.setdefault(cell.key, cell)
        config = make_config(method, stored_params(registry.method(method), params), dataset, backbone, seed, recipe)
        cell = Cell(config, added_as_dependency=as_dep, defaults=resolve_params(registry, method, preset, dataset, {}),
                    provenance=dict(provenance or {}), asked=tuple(sets.get(method, {})))
        if cell.key in ordered:
            return ordered[cell.key]
        if method in stack:
            raise PluginError(f"dependency cycle: {' -> '.join(stack + (method,))}")
        plugin = registry.owner.get(("method", method), "?")
        why, reqs = None, []
        try:
            reqs = list(registry.method(method).requires(params))
            if not all(isinstance(req, Requirement) for req in reqs):
                raise PluginError("requires() must return a list of odnbench.Requirement objects")
            missing = [req.method for req in reqs if req.method not in registry.items["method"]]
            if missing:
                raise PluginError(f"it requires method {missing[0]!r}, which no loaded plugin registers")
        except PluginError as exc:  # same: a broken requires() fails this cell only
            why = str(exc)
        except OdnbenchError:
            raise  # requires() rejected the user's parameters (one-line error), not a plugin bug
        except Exception as exc:
            why = f"requires() raised {type(exc).__name__}: {exc}"
        if why is None:
            why = _check_backbone(registry, method, params, backbone, recipe)
        if why is not None:
            cell.error = f"plugin {plugin!r}: method {method!r}: {why}"
            reqs = []
        for req in reqs:
            involved.add(req.method)
            if add_dependencies:
                dep = add(req.method, dict(req.params), True, stack + (method,), overrides)
            else:
                dep_params = resolve_params(registry, req.method, preset, dataset,
                                            overrides.get(req.method, {}), dict(req.params))
                dep = Cell(make_config(req.method, stored_params(registry.method(req.method), dep_params), dataset,
                                       backbone, seed, recipe))
            cell.requires[req.name] = dep.key
        ordered[cell.key] = cell
        return cell

    key_before = set(ordered)
    cell = add(method, None, False, (), own)
    if cell.key in key_before:
        cell.added_as_dependency = False  # asked for explicitly too

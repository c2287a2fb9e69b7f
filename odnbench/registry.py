"""Plugin loading (pluggy + the ``odnbench`` entry-point group) and the name registry.

Built-in datasets, backbones and methods arrive through the same entry points as third-party
ones: nothing here imports a plugin by name.

Environment:
  ODNBENCH_LOAD_PLUGINS    unset: load every installed plugin; empty: none; ``a,b``: only those
                           (entry-point names or distribution names, as in simonw/llm).
  ODNBENCH_STRICT_PLUGINS  ``1``: a plugin that fails to import is fatal instead of skipped, and a
                           third-party plugin registering a built-in name makes commands that run or
                           rank anything refuse (otherwise the built-in is kept, with a warning).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from odnbench import hookspecs
from odnbench.contract import Backbone, Dataset, Method, Param
from odnbench.errors import PluginError, UnknownNameError
from odnbench.result import ROLES

ENTRY_POINT_GROUP = "odnbench"
#: The distribution whose plugins are the built-ins: on a name clash with a third party they win.
BUILTIN_DISTRIBUTION = "odnbench"
KINDS = {"dataset": Dataset, "backbone": Backbone, "method": Method}


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None


@dataclass
class Registry:
    """Everything the loaded plugins registered, by kind and name."""

    pm: pluggy.PluginManager
    strict: bool = False
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=lambda: {k: {} for k in KINDS})
    owner: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Name clashes found while loading (two distributions with one entry-point name, two plugins
    #: registering one method name). Neither side is used; commands that run or rank anything refuse
    #: with these lines (:meth:`require_sound`), while --help and list print them and go on.
    conflicts: list[str] = field(default_factory=list)
    collecting: bool = False  # inside collect(): a clash is recorded as a conflict instead of raised
    #: A registration that breaks the contract raises instead of being refused with a warning (strict
    #: mode; and odnbench.testing.registry_with, so that a plugin's own tests fail on it).
    fatal_registrations: bool = False

    def require_sound(self) -> None:
        """Raise the first name clash as a one-line PluginError (nothing may be silently replaced)."""
        if self.conflicts:
            more = f" (and {len(self.conflicts) - 1} more)" if len(self.conflicts) > 1 else ""
            raise PluginError(self.conflicts[0] + more)

    def get(self, kind: str, name: str):
        table = self.items[kind]
        if name in table:
            return table[name]
        if kind == "backbone":  # families that accept open-ended names (e.g. any timm ResNet)
            for family in table.values():
                resolved = getattr(family, "resolve", None)
                found = resolved(name) if resolved else None
                if found is not None:
                    return found
        raise UnknownNameError(kind, name, table)

    def baseline(self) -> str | None:
        """The method whose ``role`` is ``baseline`` (the first by name when several; None when none)."""
        return next((name for name in self.names("method") if self.items["method"][name].role == "baseline"), None)

    def names(self, kind: str) -> list[str]:
        return sorted(self.items[kind])

    def method(self, name: str) -> Method:
        return self.get("method", name)

    def dataset(self, name: str) -> Dataset:
        return self.get("dataset", name)

    def backbone(self, name: str) -> Backbone:
        return self.get("backbone", name)

    def register(self, kind: str, obj: Any, plugin: str) -> None:
        """Add a dataset, backbone or method that ``plugin`` registered (what ``register`` does)."""
        base = KINDS[kind]
        if isinstance(obj, type):
            obj = obj()  # accept the class as well as an instance
        if not isinstance(obj, base):
            raise PluginError(
                f"plugin {plugin!r} registered {obj!r} as a {kind}; it must be an instance of odnbench.{base.__name__}"
            )
        name = getattr(obj, "name", "")
        if not name:
            raise PluginError(f"plugin {plugin!r} registered a {kind} without a name")
        check_registered(kind, obj, plugin)
        if kind == "method":
            assert isinstance(obj, Method)  # checked against base above
            _check_method_attributes(obj, plugin)
        previous = self.owner.get((kind, name))
        if previous is not None and self.is_builtin(previous) != self.is_builtin(plugin):
            self._keep_builtin(kind, name, obj, plugin, previous)
            return
        if previous is not None:
            message = (f"{kind} {name!r} is registered twice: by plugin {previous!r} and by {plugin!r}; "
                       "uninstall one, or select plugins with ODNBENCH_LOAD_PLUGINS")
            if not self.collecting:
                raise PluginError(message)
            # Neither one is used: results must never be ranked under a name another plugin took over.
            self.conflicts.append(message)
            self.items[kind].pop(name, None)
            self.owner[(kind, name)] = f"{previous}, {plugin}"
            return
        self.items[kind][name] = obj
        self.owner[(kind, name)] = plugin

    def _register_or_refuse(self, kind: str, obj: Any, plugin: str) -> None:
        """:meth:`register` while collecting: a registration that breaks the contract (a string
        registered as a method, a bad ``role`` or name) refuses that one name with one warning, and
        the plugin's other names and every other plugin load, so one broken plugin disables only
        itself and every command (``--help`` included) still works. Fatal under
        ODNBENCH_STRICT_PLUGINS=1."""
        try:
            self.register(kind, obj, plugin)
        except PluginError as exc:
            if self.strict or self.fatal_registrations:
                raise
            _warn(f"{_one_line(exc)} (refused; ODNBENCH_STRICT_PLUGINS=1 makes this fatal)")

    def is_builtin(self, plugin: str) -> bool:
        info = self.plugins.get(plugin)
        return bool(info and info.distribution and _normal(info.distribution) == BUILTIN_DISTRIBUTION)

    def distribution(self, plugin: str) -> str:
        """``odnbench-mykd 1.0`` (or ``?``): how a clash names the package to uninstall or fix."""
        info = self.plugins.get(plugin)
        if info is None or not info.distribution:
            return "?"
        return f"{info.distribution} {info.version}" if info.version else info.distribution

    def _keep_builtin(self, kind: str, name: str, obj: Any, plugin: str, previous: str) -> None:
        """A third-party plugin registered a built-in name: the built-in is kept (whichever came
        first), the third party's registration of that one name is refused with one warning naming
        both distributions, and its other names load. Fatal for running under strict mode."""
        builtin, other = (previous, plugin) if self.is_builtin(previous) else (plugin, previous)
        if builtin == plugin:
            self.items[kind][name] = obj
            self.owner[(kind, name)] = plugin
        message = (f"{kind} {name!r} of plugin {other!r} ({self.distribution(other)}) is refused: {name!r} is "
                   f"the built-in {kind} of plugin {builtin!r} ({self.distribution(builtin)}), which is kept; "
                   f"rename it in {other!r}")
        if self.strict:
            self.conflicts.append(message + " (fatal under ODNBENCH_STRICT_PLUGINS=1)")
            if not self.collecting:
                raise PluginError(self.conflicts[-1])
            return
        _warn(message + " (its other names still load; ODNBENCH_STRICT_PLUGINS=1 makes this fatal)")

    def add_plugin(self, plugin: Any, name: str, info: PluginInfo | None = None) -> None:
        """Register a plugin object (a module with hook functions) under ``name`` and collect what
        it registers, exactly as an entry point is loaded: misspelled hooks fail here."""
        try:
            self.pm.register(plugin, name=name)  # a hook taking arguments its spec lacks fails here
            self.pm.check_pending()  # a misspelled hook name fails loudly, naming the plugin
        except pluggy.PluginValidationError as exc:
            known = ", ".join(sorted(n for n in dir(hookspecs) if n.startswith("register_")))
            dist = info.distribution if info else None
            raise PluginError(f"plugin {name!r} ({dist or '?'}): {_one_line(exc)}. Known hooks: {known}") from exc
        self.plugins[name] = info or PluginInfo(name, None, None)

    def collect(self, only: Any = None) -> None:
        """Call every ``register_*s`` hook (of plugin object ``only``, when given) into this registry.
        A name registered twice becomes a conflict (see :attr:`conflicts`) rather than an exception,
        so that --help and list can still show everything else."""
        self.collecting = True
        try:
            for kind in KINDS:
                def register_for(plugin, _kind=kind):
                    return {"register": lambda obj: self._register_or_refuse(_kind, obj, plugin)}

                self.call_each(f"register_{kind}s", register_for, only=only)
        finally:
            self.collecting = False

    def call_each(self, hook_name: str, kwargs_for, only: Any = None) -> None:
        """Call each plugin's implementation of ``hook_name`` on its own, with ``kwargs_for(plugin)``:
        one that raises is skipped with a warning (fatal under ODNBENCH_STRICT_PLUGINS=1), so one
        broken plugin cannot take the others down."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if only is not None and impl.plugin is not only:
                continue
            plugin = self.pm.get_name(impl.plugin)
            kwargs = kwargs_for(plugin)
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except PluginError:
                raise
            except Exception as exc:
                message = f"plugin {plugin!r} failed in {hook_name}: {type(exc).__name__}: {_one_line(exc)}"
                if self.strict:
                    raise PluginError(message) from exc
                _warn(message + " (skipped)")

    def plugin_list(self) -> list[dict[str, Any]]:
        """What ``odnbench plugins`` prints: name, version and implemented hooks."""
        out = []
        for name in sorted(self.plugins):
            module = self.pm.get_plugin(name)
            hooks = sorted(h.name for h in self.pm.get_hookcallers(module) or [])
            out.append({"name": name, "version": self.plugins[name].version, "hooks": hooks})
        return out


def _check_method_attributes(method: Method, plugin: str) -> None:
    """What the harness stores from a method's class attributes must have the declared shape."""
    if method.role is not None and method.role not in ROLES:
        raise PluginError(f"plugin {plugin!r}: method {method.name!r} has role {method.role!r}; allowed: None, "
                          f"{', '.join(map(repr, ROLES))}")
    params = method.params
    if not isinstance(params, (tuple, list)) or not all(isinstance(p, Param) for p in params):
        raise PluginError(f"plugin {plugin!r}: method {method.name!r} declares params {params!r:.80}; it must be a "
                          "tuple of odnbench.Param")
    packages = method.env_packages
    if not isinstance(packages, (tuple, list)) or not all(isinstance(p, str) and p for p in packages):
        raise PluginError(f"plugin {plugin!r}: method {method.name!r}: env_packages must be a tuple of distribution "
                          f"names, e.g. (\"torch-pruning\",), got {packages!r}")


def _selected(ep: importlib.metadata.EntryPoint, allowed: set[str] | None) -> bool:
    if allowed is None:
        return True
    dist = ep.dist.name if ep.dist else None
    # Distribution names compare as pip does: "My_Plugin" selects "my-plugin" (PEP 503 normalisation).
    return ep.name in allowed or (dist is not None and _normal(dist) in {_normal(a) for a in allowed})


def _normal(dist_name: str) -> str:
    return re.sub(r"[-_.]+", "-", dist_name).lower()


def _one_line(exc: BaseException) -> str:
    """pluggy and some import errors put newlines in their messages; the CLI prints one line."""
    return " ".join(str(exc).split())


def _warn(message: str) -> None:
    print(f"odnbench: warning: {message}", file=sys.stderr)


def load_registry() -> Registry:
    """Load the selected plugins one at a time, then collect what they register."""
    pm = pluggy.PluginManager("odnbench")
    pm.add_hookspecs(hookspecs)
    strict = _truthy(os.environ.get("ODNBENCH_STRICT_PLUGINS"))
    registry = Registry(pm=pm, strict=strict)
    env = os.environ.get("ODNBENCH_LOAD_PLUGINS")
    allowed = None if env is None else {s.strip() for s in env.split(",") if s.strip()}

    selected = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if _selected(ep, allowed)]
    providers: dict[str, set[str]] = {}
    for ep in selected:
        providers.setdefault(ep.name, set()).add(_normal(ep.dist.name) if ep.dist else f"? ({ep.value})")
    seen: set[str] = set()
    for ep in selected:
        if ep.name in seen:
            continue  # the same distribution can be visible twice (e.g. editable + site)
        seen.add(ep.name)
        others = sorted(providers[ep.name] - {BUILTIN_DISTRIBUTION})
        if len(providers[ep.name]) > 1 and BUILTIN_DISTRIBUTION in providers[ep.name]:
            # A third party's entry point named like a built-in one (e.g. "odn"): the built-in is loaded.
            ep = next(e for e in selected
                      if e.name == ep.name and e.dist and _normal(e.dist.name) == BUILTIN_DISTRIBUTION)
            message = (f"plugin name {ep.name!r} of {', '.join(others)} is refused: {ep.name!r} is a built-in plugin "
                       f"of {BUILTIN_DISTRIBUTION}, which is kept; rename its entry point")
            if strict:
                registry.conflicts.append(message + " (fatal under ODNBENCH_STRICT_PLUGINS=1)")
            else:
                _warn(message + " (ODNBENCH_STRICT_PLUGINS=1 makes this fatal)")
        elif len(providers[ep.name]) > 1:  # never a silent replacement between third parties
            registry.conflicts.append(
                f"plugin name {ep.name!r} is provided by {len(providers[ep.name])} distributions: "
                f"{', '.join(sorted(providers[ep.name]))}; neither is loaded. Uninstall one, or select one with "
                "ODNBENCH_LOAD_PLUGINS=<distribution name>")
            continue
        dist = ep.dist.name if ep.dist else None
        try:
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not kill the CLI
            message = f"plugin {ep.name!r} ({dist or '?'}) failed to load: {type(exc).__name__}: {_one_line(exc)}"
            if strict:
                raise PluginError(message) from exc
            _warn(message + " (skipped; ODNBENCH_STRICT_PLUGINS=1 makes this fatal)")
            continue
        registry.add_plugin(module, ep.name, PluginInfo(ep.name, ep.dist.version if ep.dist else None, dist))
    registry.collect()
    return registry


_cached: Registry | None = None


def get_registry(reload: bool = False) -> Registry:
    """The process-wide registry (loaded on first use)."""
    global _cached
    if _cached is None or reload:
        _cached = load_registry()
    return _cached


#: What a registered name may be: it becomes part of folder names (``<method>-<dataset>-...``) and
#: file names under --results and --out, so a safe character set, like user input: no path
#: separators, no leading dot, no spaces, at most 64 characters.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")


def check_registered(kind: str, obj: Any, plugin: str) -> None:
    """PluginError (one line naming the plugin and the rule) for a registered name outside
    :data:`SAFE_NAME` (``../../x``, ``/abs``, ``.hidden``, ``name ``)."""
    name = obj.name
    if not isinstance(name, str) or not SAFE_NAME.match(name):
        raise PluginError(f"plugin {plugin!r} registered a {kind} named {str(name)[:80]!r}; names may use letters, "
                          "digits and _ . + - only (no path separators or spaces, not starting with a dot or dash, "
                          "at most 64 characters)")

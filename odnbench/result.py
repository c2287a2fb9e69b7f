"""The result of one cell: the one type that the harness fills and everything else reads.

A :class:`Result` is stored as ``result.json`` in its cell folder (see :mod:`odnbench.store`) and
is the source of truth for every leaderboard. Whatever a board shows is stored here at run time
(measured metrics, the method's typed facts, its parameter defaults, a paper's reported numbers),
so that a board is a function of stored results alone, whatever plugins are installed.

``SCHEMA`` lists every field with its type; ``odnbench leaderboard verify`` checks stored files
against it and docs/results.md documents it (a test keeps the two in step). This module imports
no torch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

from odnbench.errors import OdnbenchDeprecationWarning

if TYPE_CHECKING:  # pragma: no cover
    from odnbench.data import Splits

#: Version of the result.json layout. 1 = odnbench 0.1 (typed facts lived in method_info);
#: 2 = facts, defaults and reference stored as fields of their own;
#: 3 = models stored as model.safetensors (never pickled), with ``files`` (sha256 of each model file),
#: ``digest`` (of the result itself) and ``data.fingerprint`` (of the data actually used);
#: 4 = ``curve`` (further models of the method measured by the harness: ODN's depths, the oracle's) and
#: ``provenance`` (the grid file that asked for the cell); older records read with both None;
#: 5 = ``artifacts`` (a method's extra files by name, from ``ctx.save_model``), ``role`` (the method's
#: part on a board, e.g. ``baseline``) and ``reference.preset`` stored, not inferred from names.
SCHEMA_VERSION = 5
STATUSES = ("ok", "failed")
#: What an artifact is (``artifacts.NAME.kind``); a ``model`` is a stored model (odnbench.modelio).
ARTIFACT_KINDS = ("model",)
#: What a method may say it is on a board (``Method.role``): ``baseline`` is what Δ top-1 and the size
#: reduction compare with (at most one method per board); ``depth-search`` and ``depth-oracle`` are the
#: two sides of the board's "did the search find the brute-force depth" comparison (odnbench.report.curves).
ROLES = ("baseline", "depth-search", "depth-oracle")
#: Records written before schema 5 carry no role nor reference preset: these were the built-in
#: baseline method and the preset published numbers were compared on (read by the upgrade only).
LEGACY_BASELINE_METHOD = "full"
LEGACY_REFERENCE_PRESET = "paper"
#: Likewise the depth comparison's two sides, for records stored before methods declared them.
LEGACY_DEPTH_ROLES = {"odn": "depth-search", "oracle": "depth-oracle"}


@dataclass(kw_only=True)
class Facts:
    """What a method states about the model it returns, in typed fields a board can show.

    The harness fills ``depth`` from the exported model when it is a DepthNet and ``converged``
    from the shared trainer when the method leaves them unset.
    """

    depth: int | None = None  # residual blocks kept in the exported model
    reached_target: bool | None = None  # the method met its own target (e.g. ODN's stop threshold)
    threshold: float | None = None  # that target, as validation top-1 %
    tolerance: float | None = None  # how far below its reference (full depth's validation top-1) that threshold sits
    converged: bool | None = None  # training ended by patience, not by an epoch cap
    cut_short: str | None = None  # why not converged, in words
    depth_curve: list[dict[str, Any]] | None = None  # [{"depth", "val"}]: validation top-1 per depth tried
    # Parameters of this cell's config that did not shape its model, e.g. prune's ratio when match
    # chose how far to prune: a board's label leaves them out (the config and key keep them).
    unused_params: list[str] | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> Facts:
        d = d if isinstance(d, dict) else {}
        return cls(**{f.name: d.get(f.name) for f in fields(Facts)})

    @classmethod
    def of(cls, source: Facts) -> Facts:
        """The facts of ``source`` (a MethodOutput, which subclasses Facts), as Facts alone."""
        return cls(**{f.name: getattr(source, f.name) for f in fields(Facts)})

    @staticmethod
    def types() -> dict[str, tuple[type, ...]]:
        """Each fact's allowed types besides None, read from the annotations above (``float`` takes
        an int too), so that checking a method's facts needs no second list of them."""
        import typing

        hints = typing.get_type_hints(Facts)
        out = {}
        for f in fields(Facts):
            allowed = tuple(typing.get_origin(a) or a for a in typing.get_args(hints[f.name]) if a is not type(None))
            out[f.name] = allowed + ((int,) if float in allowed else ())
        return out


@dataclass
class Result:
    status: str  # "ok" or "failed"
    key: str  # hash of config: the cell's identity
    config: dict[str, Any]  # the cell's canonical config (odnbench.plan.make_config)
    plugin: str = "?"  # the plugin that registered the method
    requires: dict[str, str] = field(default_factory=dict)  # dependency name -> cell key
    error: str | None = None
    traceback: str | None = None
    metrics: dict[str, Any] | None = None  # measured by the harness (odnbench.metrics.measure)
    cost: dict[str, Any] | None = None  # cost to obtain (odnbench.trainer.CostMeter.as_dict), dependencies included
    method_info: dict[str, Any] = field(default_factory=dict)  # the method's free-form, JSON-serialisable info
    facts: Facts = field(default_factory=Facts)
    defaults: dict[str, Any] = field(default_factory=dict)  # the method's parameters had nobody set any (board labels)
    reference: dict[str, Any] | None = None  # what a paper published for this method on (dataset, backbone)
    data: dict[str, Any] | None = None  # split sizes, split rule, augmentation, normalisation
    env: dict[str, Any] | None = None  # environment fingerprint (odnbench.envinfo)
    model_file: str | None = None
    files: dict[str, Any] | None = None  # {file name: {"sha256", "bytes"}}: model_file and every artifact's file, at write time
    artifacts: dict[str, Any] = field(default_factory=dict)  # {name: {"file", "sha256", "bytes", "kind", ...}}: ctx.save_model
    role: str | None = None  # the method's part on a board (Method.role), e.g. "baseline"
    curve: list[dict[str, Any]] | None = None  # further models measured by the harness (CURVE_POINT_FIELDS), e.g. per depth
    provenance: dict[str, Any] | None = None  # what asked for the cell: {"grid": file name, "grid_sha256"}; not in the key
    wall_seconds: float | None = None
    finished_at: str | None = None
    schema: int = SCHEMA_VERSION
    digest: str | None = None  # sha256 of this result's canonical JSON without the digest (odnbench.store)
    folder: str | None = field(default=None, repr=False, compare=False)  # where it was read from; not stored

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def method(self) -> str:
        method: str = self.config.get("method", "?")
        return method

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def stored_files(self) -> list[str]:
        """The files of the cell folder this result vouches for (``files``: its model and each
        artifact's file), by their record, never by a file-name pattern; plain names only."""
        return [name for name in (self.files or {}) if plain_file_name(name)]

    # -- odnbench 0.1 handed methods their dependencies' results as plain dicts (the result.json).
    # The mapping access below keeps such plugins working through 0.2 with a DeprecationWarning that
    # names the attribute to use; it is removed in 0.3.0 (docs/plugins.md, "Deprecation policy").

    def _mapping_value(self, key: str, how: str) -> Any:
        if key not in self._stored_fields():
            raise KeyError(key)
        _deprecated_mapping(how, f"result.{key}", stacklevel=4)
        value = getattr(self, key)
        if key == "method_info":  # 0.1's method_info held the facts 0.2 moved to ``facts`` (ODN's depth)
            return {**{k: v for k, v in asdict(self.facts).items() if v is not None}, **value}
        return asdict(value) if isinstance(value, Facts) else value

    @classmethod
    def _stored_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "folder")

    def __getitem__(self, key: str) -> Any:
        return self._mapping_value(key, f"result[{key!r}]")

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self._mapping_value(key, f"result.get({key!r})")
        except KeyError:
            _deprecated_mapping(f"result.get({key!r})", "the Result's attributes", stacklevel=3)
            return default

    def __contains__(self, key: object) -> bool:
        _deprecated_mapping(f"{key!r} in result", "the Result's attributes (hasattr)")
        return key in self.to_dict()

    def keys(self) -> list[str]:
        _deprecated_mapping("result.keys()", "the Result's attributes (Result.to_dict() for a plain dict)")
        return list(self.to_dict())

    def items(self) -> list[tuple[str, Any]]:
        _deprecated_mapping("result.items()", "Result.to_dict().items()")
        return list(self.to_dict().items())

    def values(self) -> list[Any]:
        _deprecated_mapping("result.values()", "Result.to_dict().values()")
        return list(self.to_dict().values())

    def __iter__(self) -> Iterator[str]:
        _deprecated_mapping("iterating over a result", "Result.to_dict()")
        return iter(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["folder"]
        if out["traceback"] is None:
            del out["traceback"]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        """Read a stored result, upgrading the 0.1 layout (schema 1) on the way in."""
        if not isinstance(d, dict) or not isinstance(d.get("config"), dict):
            raise ValueError("a result must be a JSON object with a config object")
        if d.get("schema", 1) == 1:
            d = upgrade_v1(d)
        if not isinstance(d.get("schema"), int) or d["schema"] < 5:
            d = upgrade_v4(d)
        known = {f.name for f in fields(cls)} - {"folder"}
        kwargs = {k: v for k, v in d.items() if k in known}
        kwargs["facts"] = Facts.from_dict(d.get("facts"))
        kwargs.setdefault("method_info", {})
        kwargs["method_info"] = kwargs["method_info"] or {}
        kwargs["defaults"] = kwargs.get("defaults") or {}
        kwargs["requires"] = kwargs.get("requires") or {}
        kwargs["artifacts"] = kwargs.get("artifacts") if isinstance(kwargs.get("artifacts"), dict) else {}
        kwargs.setdefault("status", None)  # anything but "ok" is treated as failed; verify names it
        kwargs.setdefault("key", "")
        return cls(**kwargs)


def _deprecated_mapping(used: str, instead: str, stacklevel: int = 3) -> None:
    """Warn, from the plugin's line, that 0.1's dict access to a Result is deprecated."""
    warnings.warn(f"{used}: a Result is no longer a dict (odnbench 0.2); use {instead} instead. "
                  "Dict access is removed in odnbench 0.3.0.", OdnbenchDeprecationWarning, stacklevel=stacklevel)


def upgrade_v1(d: dict[str, Any]) -> dict[str, Any]:
    """odnbench 0.1 kept the facts a board shows inside ``method_info``; lift them out."""
    raw_info = d.get("method_info")
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    stopped_early = info.get("stopped") == "max_epochs"
    cut = info.get("cut_short")
    cut_short = (cut if isinstance(cut, str) else "cut short by the method") if cut else (
        "the epoch cap ended training before patience (not converged)" if stopped_early else None)
    depth = info.get("optimal_depth", info.get("depth"))
    curve = info.get("depth_curve")
    facts = {
        "depth": depth if isinstance(depth, int) and not isinstance(depth, bool) else None,
        "reached_target": info.get("reached_target") if isinstance(info.get("reached_target"), bool) else None,
        "threshold": info.get("threshold") if _number(info.get("threshold")) else None,
        "converged": None if not (cut or "stopped" in info) else not (cut or stopped_early),
        "cut_short": cut_short,
        "depth_curve": [{"depth": p["depth"], "val": p["best_val"]}
                        for p in curve if isinstance(p, dict) and "depth" in p and "best_val" in p]
        if isinstance(curve, list) else None,
    }
    return {**d, "facts": facts, "schema": 1}


def upgrade_v4(d: dict[str, Any]) -> dict[str, Any]:
    """Before schema 5 a method's extra model files were only names in ``files`` (and a ``model_file``
    in its method_info, which described them); the baseline and the reference's preset were known by
    name. Read them as schema 5 states them (in memory: the stored file is not rewritten)."""
    files: dict[str, Any] = d["files"] if isinstance(d.get("files"), dict) else {}
    described: dict[str, dict[str, Any]] = {}
    _walk_model_files(d.get("method_info"), described)
    artifacts = {}
    for name, entry in files.items():
        if name == d.get("model_file") or not isinstance(name, str) or not isinstance(entry, dict):
            continue
        said = {k: v for k, v in described.get(name, {}).items() if k in ("params", "size_mb")}
        artifacts[name.rsplit(".", 1)[0]] = {"file": name, "sha256": entry.get("sha256"),
                                             "bytes": entry.get("bytes"), "kind": "model", **said}
    config: dict[str, Any] = d["config"] if isinstance(d.get("config"), dict) else {}
    reference = d.get("reference")
    if isinstance(reference, dict) and "preset" not in reference:
        reference = {**reference, "preset": LEGACY_REFERENCE_PRESET}
    role = d.get("role") or ("baseline" if config.get("method") == LEGACY_BASELINE_METHOD
                             else LEGACY_DEPTH_ROLES.get(str(config.get("method"))))
    return {**d, "artifacts": d.get("artifacts") or artifacts, "role": role, "reference": reference}


def _walk_model_files(value: Any, found: dict[str, Any]) -> None:
    """``{file: the dict that named it}`` for every ``model_file`` key in a 0.1-0.2 method_info."""
    if isinstance(value, dict):
        if isinstance(value.get("model_file"), str):
            found[value["model_file"]] = value
        for v in value.values():
            _walk_model_files(v, found)
    elif isinstance(value, list):
        for v in value:
            _walk_model_files(v, found)


# ------------------------------------------------------------------- the records the harness stores


def file_entry(data: bytes) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a stored file's content (an entry of ``files``)."""
    import hashlib

    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def artifact_entry(file: str, data: bytes, kind: str = "model", **described: Any) -> dict[str, Any]:
    """An entry of ``artifacts``: the file in the cell folder, its checksum and size, its kind, and
    what the harness measured of it (a model: ``params``, ``size_mb``)."""
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"artifact kind {kind!r}; allowed: {', '.join(ARTIFACT_KINDS)}")
    return {"file": file, **file_entry(data), "kind": kind, **described}


def files_record(model_file: str, model_entry: dict[str, Any], artifacts: dict[str, Any]) -> dict[str, Any]:
    """``files``: the checksum of every file an ok result vouches for, the model and each artifact."""
    return {model_file: model_entry, **{a["file"]: {"sha256": a["sha256"], "bytes": a["bytes"]}
                                        for a in artifacts.values()}}


def data_record(splits: Splits, data_dir: str | Path) -> dict[str, Any]:
    """``data``: what a cell was trained and measured on (``splits``: odnbench.data.Splits)."""
    return {"sizes": splits.sizes(), "split_rule": splits.info.split_rule, "augment": splits.info.augment,
            "normalisation": [splits.info.mean, splits.info.std], "fingerprint": splits.fingerprint,
            "data_dir": str(Path(data_dir).resolve())}  # where verify reloads it from


def env_record(fingerprint: dict[str, Any], *, threads: int | None, executor: dict[str, Any], execution: dict[str, Any] | None = None,
               packages: dict[str, Any] | None = None) -> dict[str, Any]:
    """``env``: the environment fingerprint (odnbench.envinfo), the torch threads the cell ran with,
    where it ran (``executor``), its execution settings and the versions of the packages its method
    declared (``Method.env_packages``, e.g. ``torch_pruning``)."""
    env = {**fingerprint, **(packages or {})}
    if threads is not None:
        env["threads"] = threads
    env["executor"] = dict(executor)
    env.update(execution or {})
    return env


def _number(v: object) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


#: A latency was measured on a busy machine (other processes took the cores) when its slowest
#: timed windows are this many times its median (p90 / p50), when its windows spread over more
#: than this share of the median ((max - min) / p50), or when the process got less than this
#: share of one core (``cpu_share``: its calling thread never sleeps while it times, so a quiet
#: CPU gives at least ~0.95 whatever the thread count; small layers may not use a second
#: thread, so the threads are not counted). On a quiet CPU they stay near 1.05, 0.1 and 1.
BUSY_P90_OVER_P50 = 1.5
BUSY_SPREAD = 1.0
BUSY_CPU_SHARE = 0.5


def latency_busy(latency: Any) -> bool | None:
    """Whether a stored ``metrics.latency_ms`` looks measured on a busy machine (None: unknown).
    Results stored before the spread was recorded are judged on their p90 / p50 alone."""
    if not isinstance(latency, dict) or not _number(latency.get("p50")) or not _number(latency.get("p90")):
        return None
    if latency["p50"] <= 0:
        return None
    spread, share = latency.get("spread"), latency.get("cpu_share")
    return bool(latency["p90"] / latency["p50"] > BUSY_P90_OVER_P50
                or (_number(spread) and spread > BUSY_SPREAD)
                or (_number(share) and share < BUSY_CPU_SHARE))


REFERENCE_ALIASES = {
    "depth": ("depth", "optimal_depth"),
    "top1": ("top1", "test_top1", "accuracy", "test_acc"),
    "size_reduction": ("size_reduction", "size_reduction_pct"),
    "size_mb": ("size_mb",),
    "full_size_mb": ("full_size_mb", "size_mb_full"),
    "source": ("source", "reference", "citation"),
    "preset": ("preset",),  # the odnbench preset that follows the paper's recipe: compared on its boards only
}


def normalise_reference(ref: Any) -> dict[str, Any] | None:
    """A method's ``reference_results`` in canonical keys (None when it gave none)."""
    if not isinstance(ref, dict) or not ref:
        return None

    def pick(name: str) -> Any:
        for alias in REFERENCE_ALIASES[name]:
            if ref.get(alias) is not None:
                return ref[alias]
        return None

    return {name: pick(name) for name in REFERENCE_ALIASES}


# ------------------------------------------------------------------------------------------ schema

_NUMBER = (int, float)


def _positive(v: float) -> bool | str:
    return v > 0 or "must be positive"


def _non_negative(v: float) -> bool | str:
    return v >= 0 or "must be ≥ 0"


def _percentage(v: float) -> bool | str:
    return 0 <= v <= 100 or "must be a percentage in [0, 100]"


def _names(v: list[Any]) -> bool | str:
    return all(isinstance(n, str) for n in v) or "must be a list of parameter names (strings)"


#: (dotted path, allowed types, extra check or None): what every stored result has.
COMMON_FIELDS: list[tuple[str, tuple[type, ...], Any]] = [
    ("status", (str,), None),
    ("key", (str,), None),
    ("config.method", (str,), None),
    ("config.dataset", (str,), None),
    ("config.backbone", (str,), None),
    ("config.seed", (int,), None),
    ("config.preset", (str,), None),
    ("env", (dict,), None),
]

#: ... and what an ``ok`` result has besides.
OK_FIELDS: list[tuple[str, tuple[type, ...], Any]] = COMMON_FIELDS + [
    ("metrics.top1", _NUMBER, _percentage),
    ("metrics.val_top1", _NUMBER, _percentage),
    ("metrics.params", (int,), _positive),
    ("metrics.size_mb", _NUMBER, _positive),
    ("metrics.size_mib", _NUMBER, _positive),
    ("metrics.macs", (int,), _non_negative),
    ("metrics.flops", (int,), _non_negative),
    ("metrics.latency_ms.p50", _NUMBER, _positive),
    ("metrics.latency_ms.p90", _NUMBER, _positive),
    ("metrics.throughput", (dict,) + _NUMBER, None),
    ("cost.epochs", _NUMBER, _non_negative),
    ("cost.sample_steps", _NUMBER, _non_negative),
    ("cost.train_seconds", _NUMBER, _non_negative),
    ("cost.device", (str,), None),
    ("method_info", (dict,), None),
]

FAILED_FIELDS: list[tuple[str, tuple[type, ...], Any]] = COMMON_FIELDS + [("error", (str,), None)]

#: Fields an ``ok`` result may lack or hold as null (results stored before they were recorded), checked
#: like the others when present. ``cost.train_macs``: training compute, null when a dependency predates it.
OPTIONAL_OK_FIELDS: list[tuple[str, tuple[type, ...], Any]] = [
    ("cost.train_macs", (int,), _non_negative),
    ("cost.own.train_macs", (int,), _non_negative),
    # An early-exit network's (odnbench.depthnet.EarlyExitNet): where images left and what each exit costs.
    ("metrics.exits.threshold", _NUMBER, _non_negative),
    ("metrics.exits.macs", (list,), None),
    ("metrics.exits.shares", (list,), None),
    ("metrics.exits.val_shares", (list,), None),
    ("metrics.exits.mean_macs", _NUMBER, _non_negative),
    ("metrics.exits.val_mean_macs", _NUMBER, _non_negative),
    # A method's statement of which parameters did not shape its model (Facts.unused_params).
    ("facts.unused_params", (list,), _names),
]

#: One point of ``curve`` (schema 4): what the harness measured on a further model of the method.
CURVE_POINT_FIELDS: list[tuple[str, tuple[type, ...], Any]] = [
    ("top1", _NUMBER, _percentage),
    ("val_top1", _NUMBER, _percentage),
    ("params", (int,), _positive),
    ("size_mb", _NUMBER, _positive),
    ("macs", (int,), _non_negative),
    ("flops", (int,), _non_negative),
]
#: ... and what a point may have, checked when present: an early-exit network's ``exits`` record
#: (its ``macs`` and ``flops`` are then the mean over the test images) and batch-1 latency.
OPTIONAL_CURVE_POINT_FIELDS: list[tuple[str, tuple[type, ...], Any]] = [
    (path.removeprefix("metrics."), types, extra) for path, types, extra in OPTIONAL_OK_FIELDS
    if path.startswith("metrics.exits.")] + [
    ("latency_ms.p50", _NUMBER, _positive),
    ("latency_ms.p90", _NUMBER, _positive),
]

#: What schema 3 added: every result has a digest; an ok one names its model file, the checksum of
#: each model file and the fingerprint of the data it was trained and measured on.
V3_COMMON_FIELDS: list[tuple[str, tuple[type, ...], Any]] = [("digest", (str,), None)]
V3_OK_FIELDS: list[tuple[str, tuple[type, ...], Any]] = [("model_file", (str,), None), ("files", (dict,), None),
                                               ("data.fingerprint", (str,), None)]

_MISSING = object()


def lookup(d: Any, path: str, default: Any = None) -> Any:
    """``lookup(result, "metrics.latency_ms.p50")``: a dotted path into nested dicts."""
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def schema_problems(d: Any, *, ranges_only: bool = False) -> list[str]:
    """Problems with one stored result's fields (empty when it conforms). ``d`` is the raw JSON.
    ``ranges_only``: a missing field other than ``metrics.top1`` is no problem (a board shows it as
    "–"); what is present must still have its type and range."""
    if not isinstance(d, dict):
        return [f"result.json holds a {type(d).__name__}, not an object"]
    status = d.get("status")
    if status not in STATUSES:
        return [f"status is {status!r}; allowed: {', '.join(STATUSES)}"]
    if not isinstance(d.get("schema", 1), int) or d.get("schema", 1) > SCHEMA_VERSION:
        return [f"schema {d.get('schema')!r} is newer than this odnbench reads ({SCHEMA_VERSION}); upgrade odnbench"]
    problems = []
    expected = OK_FIELDS if status == "ok" else FAILED_FIELDS
    if d.get("schema", 1) >= 3:
        expected = expected + V3_COMMON_FIELDS + (V3_OK_FIELDS if status == "ok" else [])
    optional = {path for path, _, _ in OPTIONAL_OK_FIELDS}
    if status == "ok":
        expected = expected + OPTIONAL_OK_FIELDS
    for path, types, extra in expected:
        if path == "key" and "key" not in d:
            continue  # 0.1 results may lack it; the folder name still carries it
        value = lookup(d, path, _MISSING)
        if path in optional and (value is _MISSING or value is None):
            continue
        if value is _MISSING or value is None:
            if not ranges_only or path == "metrics.top1":
                problems.append(f"{path} is missing")
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            names = " or ".join(sorted({t.__name__ for t in types}))
            problems.append(f"{path} is {type(value).__name__} {value!r:.60}, expected {names}")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{path} is {value}")
            continue
        if extra is not None:
            verdict = extra(value)
            if verdict is not True:
                problems.append(f"{path}={value!r} {verdict}")
    if status == "ok" and not problems and d.get("schema", 1) >= 3 and d.get("files") is not None \
            and d.get("model_file") is not None:
        problems += _files_problems(d["files"], d["model_file"])
    if status == "ok" and d.get("curve") is not None:
        problems += _curve_problems(d["curve"], ranges_only)
    if d.get("schema", 1) >= 5:
        problems += _v5_problems(d, status)
    if status == "ok" and not problems and not ranges_only:  # relations between fields all present
        m = d["metrics"]
        if m["macs"] != m["flops"] // 2:
            problems.append(f"metrics.macs {m['macs']} is not flops // 2 = {m['flops'] // 2}")
        if m["latency_ms"]["p90"] < m["latency_ms"]["p50"]:
            problems.append(f"metrics.latency_ms.p90 {m['latency_ms']['p90']} < p50 {m['latency_ms']['p50']}")
    return problems


def _curve_problems(curve: Any, ranges_only: bool = False) -> list[str]:
    if not isinstance(curve, list):
        return [f"curve is {type(curve).__name__}, expected a list of points or null"]
    problems = []
    optional = {path for path, _, _ in OPTIONAL_CURVE_POINT_FIELDS}
    for i, point in enumerate(curve):
        for path, types, extra in CURVE_POINT_FIELDS + OPTIONAL_CURVE_POINT_FIELDS:
            value = lookup(point, path, _MISSING)
            if (path in optional or (ranges_only and path != "top1")) and (value is _MISSING or value is None):
                continue
            if value is _MISSING or value is None or not isinstance(value, types) or isinstance(value, bool):
                problems.append(f"curve[{i}].{path} is {value if value is not _MISSING else 'missing'!r:.60}")
            elif isinstance(value, float) and not math.isfinite(value):
                problems.append(f"curve[{i}].{path} is {value}")
            elif extra is not None and extra(value) is not True:
                problems.append(f"curve[{i}].{path}={value!r} {extra(value)}")
        depth = point.get("depth") if isinstance(point, dict) else None
        if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool)):
            problems.append(f"curve[{i}].depth is {depth!r}, expected an integer or null")
    return problems


def plain_file_name(name: object) -> bool:
    """A bare file name inside the cell folder (no folders, no parent references, not hidden)."""
    return (isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and not name.startswith(".") and "\x00" not in name)


def _v5_problems(d: dict[str, Any], status: str) -> list[str]:
    """Schema 5's fields: ``role`` one of ROLES or null; each artifact a named file of the cell that
    ``files`` vouches for, with the same checksum."""
    problems = []
    if d.get("role") is not None and d.get("role") not in ROLES:
        problems.append(f"role is {d.get('role')!r:.60}; allowed: null, {', '.join(ROLES)}")
    artifacts = d.get("artifacts", {})
    if not isinstance(artifacts, dict):
        return problems + [f"artifacts is {type(artifacts).__name__}, expected object"]
    if status != "ok" and artifacts:
        problems.append("artifacts recorded for a failed result (only an ok result keeps files)")
    files: dict[str, Any] = d["files"] if isinstance(d.get("files"), dict) else {}
    for name, a in artifacts.items():
        if not (isinstance(a, dict) and plain_file_name(a.get("file")) and isinstance(a.get("sha256"), str)
                and len(a["sha256"]) == 64 and isinstance(a.get("bytes"), int) and a.get("kind") in ARTIFACT_KINDS):
            problems.append(f"artifacts.{name} must be {{\"file\": <file name>, \"sha256\", \"bytes\", \"kind\": "
                            f"{' or '.join(ARTIFACT_KINDS)}}}")
        elif status == "ok" and (files.get(a["file"]) or {}).get("sha256") != a["sha256"]:
            problems.append(f"artifacts.{name}: files has no matching checksum for {a['file']}")
    return problems


def _files_problems(files: dict[str, Any], model_file: str) -> list[str]:
    problems = []
    if not plain_file_name(model_file):
        problems.append(f"model_file {model_file!r:.60} is not a plain file name in the cell folder")
    for name, entry in files.items():
        if not plain_file_name(name):
            problems.append(f"files names {name!r:.60}, not a plain file name in the cell folder")
        elif not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64
                  and isinstance(entry.get("bytes"), int) and not isinstance(entry.get("bytes"), bool)):
            problems.append(f"files.{name} must be {{\"sha256\": <64 hex digits>, \"bytes\": <int>}}")
    if plain_file_name(model_file) and model_file not in files:
        problems.append(f"files has no checksum for the model file {model_file}")
    return problems

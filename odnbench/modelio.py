"""The stored-model format: weights as safetensors plus a JSON description of the architecture.

Why not ``torch.save(model)``: reloading a pickled module runs whatever the pickle says (a
``model.pt`` dropped into a results folder ran arbitrary code in ``leaderboard verify``), and it
needs the code of every class in it (a model whose plugin was uninstalled no longer loaded).

A stored model is one ``.safetensors`` file (https://github.com/huggingface/safetensors: a JSON
header and raw tensor bytes; reading it parses JSON and copies bytes, nothing else). Its header
metadata holds ``architecture``: a tree with one node per module,

    {"class": "torch.nn.Conv2d", "attrs": {...}, "params": [[name, ...]], "buffers": [...], "children": [...]}

(lists of ``[name, value]`` pairs where order matters: a Sequential runs its children in order).

Loading rebuilds the tree from an allowlist of classes only (:data:`ALLOWED`: the layers of
``torch.nn``, timm's layers and model blocks, and :class:`odnbench.depthnet.DepthNet` and ``EarlyExitNet``),
never from code named by the file: each node is ``cls.__new__(cls)`` plus ``nn.Module.__init__``,
its attributes set from JSON values (numbers, strings, booleans, None, lists, tuples, dicts) and
its parameters and buffers taken from the tensors. No constructor runs, so pruned layers come back
with exactly the shapes of their stored tensors and the attributes torch-pruning left on them.
A model holding any other class (a plugin's own layer) is refused when it is saved, with one
line naming the class and what is allowed: build exported models from standard layers.

``save_model(..., example=x)`` also rebuilds the model from the bytes it is about to write and
checks that it gives the same outputs on ``x``, so a stored model is known to reload faithfully.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from pathlib import Path
from typing import Any

from odnbench.errors import ModelFileError, UnstorableModelError

FORMAT = "odnbench-model"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"

#: Class names a stored architecture may use: ``torch.nn.X`` (an nn.Module class exported by torch.nn),
#: any nn.Module class defined in timm (``timm.<module path>.X``: its layers and its models' blocks,
#: e.g. ResNet's BasicBlock or MobileNetV3's InvertedResidual), and odnbench's DepthNet and EarlyExitNet. All of them
#: are library code that odnbench depends on, so a stored model needs no plugin to reload.
ALLOWED_CLASSES = ("odnbench.depthnet.DepthNet", "odnbench.depthnet.EarlyExitNet")
ALLOWED = "torch.nn layers, timm's layers and model blocks, and odnbench's DepthNet and EarlyExitNet"

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_HEADER = 100_000_000  # bytes; a larger header is not a model this code wrote

#: Bounds on the sizes a stored architecture may state, checked before anything runs: a forged file
#: must not make a reload ask for gigabytes (a Conv2d padding of 600 asked verify for 12.3 GB, an
#: inserted Upsample(300) as much). Generous for image classifiers: the largest torchvision/timm
#: layers stay far below them.
MAX_DIMENSION = 1 << 16  # channels, features, embeddings, groups
MAX_SPATIAL = 64  # kernel size, stride, dilation, padding (per side)
MAX_SCALE = 8.0  # an upsampling factor
MAX_OUTPUT_SIZE = 4096  # an explicit output size (Upsample size, adaptive pooling)
MAX_PARAMETERS = 2_000_000_000  # elements over all tensors
_SIZE_BOUNDS = {
    **dict.fromkeys(("in_channels", "out_channels", "in_features", "out_features", "num_features", "groups",
                     "num_embeddings", "embedding_dim", "num_channels", "num_groups", "in1_features",
                     "in2_features", "hidden_size", "input_size", "embed_dim", "num_heads"), MAX_DIMENSION),
    **dict.fromkeys(("kernel_size", "stride", "dilation", "padding", "output_padding"), MAX_SPATIAL),
    **dict.fromkeys(("size", "output_size"), MAX_OUTPUT_SIZE),
    "scale_factor": MAX_SCALE,
}


# ------------------------------------------------------------------------------------- classes

def _module_internals() -> frozenset:
    from torch import nn

    return frozenset(vars(nn.Module())) - {"training"}


def class_name(cls) -> str | None:
    """The allowlisted name of a module class (None when it is not allowed)."""
    import torch.nn

    name = cls.__name__
    if getattr(torch.nn, name, None) is cls:
        return f"torch.nn.{name}"
    full = f"{cls.__module__}.{cls.__qualname__}"
    if cls.__module__.split(".")[0] == "timm" and "<" not in cls.__qualname__ and "." not in cls.__qualname__:
        return full
    return full if full in ALLOWED_CLASSES else None


def resolve_class(name: str):
    """The class an allowlisted name stands for; ModelFileError for anything else. Only torch.nn,
    timm's own modules and odnbench.depthnet are ever looked in (timm's are imported with timm)."""
    import importlib

    from torch import nn

    cls = None
    if isinstance(name, str) and all(_NAME.match(part) for part in name.split(".")):
        module, _, attr = name.rpartition(".")
        if module == "torch.nn" or (module.split(".")[0] == "timm") or name in ALLOWED_CLASSES:
            try:
                cls = getattr(importlib.import_module(module), attr, None)
            except ImportError:
                cls = None
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)) or class_name(cls) != name:
        raise ModelFileError(f"the architecture names class {str(name)[:80]!r}, which is not allowed "
                             f"(allowed: {ALLOWED})")
    return cls


# ---------------------------------------------------------------------------------- JSON values

def _encode(value, where: str):
    """Attribute value -> JSON (tuples and non-finite floats tagged); UnstorableModelError otherwise."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"__float__": repr(value)}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v, where) for v in value]}
    if isinstance(value, list):
        return [_encode(v, where) for v in value]
    if isinstance(value, dict) and all(isinstance(k, str) for k in value) and not (
            set(value) & {"__tuple__", "__float__"}):
        return {k: _encode(v, where) for k, v in value.items()}
    raise UnstorableModelError(f"cannot store the model: {where} is a {type(value).__name__}; stored models "
                               "keep only numbers, strings, booleans, None, lists, tuples and dicts as attributes")


def _decode(value):
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"__tuple__"} and isinstance(value["__tuple__"], list):
            return tuple(_decode(v) for v in value["__tuple__"])
        if set(value) == {"__float__"} and value["__float__"] in ("inf", "-inf", "nan"):
            return float(value["__float__"])
        return {k: _decode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ModelFileError(f"the architecture holds a {type(value).__name__} value")


# ----------------------------------------------------------------------------------- describe

def describe(model) -> tuple[dict, dict]:
    """(architecture tree, {dotted name: tensor}) of a module; UnstorableModelError naming the first
    module or attribute that the format cannot hold."""
    from torch import nn

    internals = _module_internals()
    tensors: dict[str, Any] = {}
    seen: dict[int, str] = {}

    def node(module: nn.Module, path: str) -> dict:
        where = path or "the model"
        name = class_name(type(module))
        if name is None:
            cls = type(module)
            raise UnstorableModelError(
                f"cannot store the model: {where} is a {cls.__module__}.{cls.__qualname__}, which is not allowed "
                f"in a stored model (allowed: {ALLOWED}); export the model built from those, so that it "
                "reloads without your plugin's code")
        attrs = {}
        for key, value in vars(module).items():
            if key in internals:
                continue
            attrs[key] = _encode(value, f"{where}.{key} ({name})")
        out: dict[str, Any] = {"class": name, "attrs": attrs, "params": [], "buffers": [], "children": []}
        for kind, table in (("params", module._parameters), ("buffers", module._buffers)):
            for key, tensor in table.items():
                if tensor is None:
                    out[kind].append([key, None])
                    continue
                full = f"{path}.{key}" if path else key
                if id(tensor) in seen:
                    raise UnstorableModelError(f"cannot store the model: {full} and {seen[id(tensor)]} are the same "
                                               "tensor (tied weights are not supported in a stored model)")
                seen[id(tensor)] = full
                tensors[full] = tensor.detach().to("cpu").contiguous().clone()
                out[kind].append([key, {"requires_grad": bool(tensor.requires_grad)} if kind == "params"
                                  else {"persistent": key not in module._non_persistent_buffers_set}])
        for key, child in module._modules.items():
            out["children"].append([key, None if child is None else node(child, f"{path}.{key}" if path else key)])
        return out

    return node(model, ""), tensors


def build(tree: dict, tensors: dict):
    """Rebuild a module from :func:`describe`'s output, from allowlisted classes only."""
    from torch import nn

    internals = _module_internals()
    used: set[str] = set()

    def make(spec, path: str):
        if not isinstance(spec, dict) or not isinstance(spec.get("class"), str):
            raise ModelFileError(f"the architecture node {path or 'root'} is malformed")
        cls = resolve_class(spec["class"])
        module = cls.__new__(cls)
        nn.Module.__init__(module)
        for key, value in (spec.get("attrs") or {}).items():
            if not _NAME.match(str(key)) or key.startswith("__") or key in internals:
                raise ModelFileError(f"the architecture sets attribute {str(key)[:40]!r} on {path or 'root'}")
            module.__dict__[key] = _decode(value)
            _check_size(key, module.__dict__[key], spec["class"], path)
        for kind in ("params", "buffers"):
            for key, info in _pairs(spec.get(kind), path):
                if not _NAME.match(str(key)):
                    raise ModelFileError(f"the architecture names tensor {str(key)[:40]!r} on {path or 'root'}")
                full = f"{path}.{key}" if path else key
                if info is None:
                    (module._parameters if kind == "params" else module._buffers)[key] = None
                    continue
                if full not in tensors:
                    raise ModelFileError(f"tensor {full} is named by the architecture but missing from the file")
                used.add(full)
                if kind == "params":
                    module._parameters[key] = nn.Parameter(tensors[full], requires_grad=bool(info.get("requires_grad")))
                else:
                    module._buffers[key] = tensors[full]
                    if not info.get("persistent", True):
                        module._non_persistent_buffers_set.add(key)
        for key, child in _pairs(spec.get("children"), path):
            if not _NAME.match(str(key)) and not str(key).isdigit():
                raise ModelFileError(f"the architecture names child {str(key)[:40]!r} on {path or 'root'}")
            module._modules[key] = None if child is None else make(child, f"{path}.{key}" if path else key)
        return module

    model = make(tree, "")
    extra = sorted(set(tensors) - used)
    if extra:
        raise ModelFileError(f"the file holds tensors the architecture does not use ({', '.join(extra[:3])})")
    return model


def _check_size(key: str, value, cls: str, path: str) -> None:
    """ModelFileError when a size attribute states more than :data:`_SIZE_BOUNDS` allows (or a
    negative or non-finite size), before the module could allocate for it."""
    bound = _SIZE_BOUNDS.get(key)
    if bound is None or value is None or isinstance(value, (str, bool)):
        return
    values = value if isinstance(value, (list, tuple)) else (value,)
    for v in values:
        if isinstance(v, (list, tuple, dict)) or isinstance(v, bool):
            continue
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or v > bound:
            raise ModelFileError(f"the architecture gives {path or 'root'} ({cls.rsplit('.', 1)[-1]}) {key}={value!r:.60}; "
                                 f"allowed: 0..{bound:g} (a stored model never needs more; refused before allocating)")


def _pairs(value, path: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], str)
                                              for p in value):
        raise ModelFileError(f"the architecture node {path or 'root'} is malformed")
    return value


# ---------------------------------------------------------------------------------- files

def to_bytes(model, example=None) -> bytes:
    """The stored form of ``model``; with ``example`` (an input batch), checked to reload into a
    model that gives the same outputs."""
    import torch
    from safetensors.torch import save

    tree, tensors = describe(model)
    data = save(tensors, metadata={"format": FORMAT, "version": FORMAT_VERSION,
                                   "architecture": json.dumps(tree, allow_nan=False)})
    if example is not None:
        rebuilt = from_bytes(data, "the model being saved").to(example.device)
        was = model.training
        model.eval()
        rebuilt.eval()
        with torch.inference_mode():
            want, got = model(example), rebuilt(example)
        model.train(was)
        # Exact on the CPU up to float noise; on a GPU two module instances may get different kernels (TF32),
        # so looser there. A wrong rebuild (a missing layer, a wrong attribute) is off by far more.
        rtol, atol = (1e-4, 1e-5) if example.device.type == "cpu" else (1e-2, 1e-3)
        if not (isinstance(got, torch.Tensor) and got.shape == want.shape
                and torch.allclose(got.float(), want.float(), rtol=rtol, atol=atol)):
            raise UnstorableModelError(
                f"cannot store the model: rebuilt from its stored form it gives different outputs "
                f"({type(model).__name__} keeps state outside its attributes, parameters and buffers)")
    return data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_bytes(path: Path, expected_sha256: str | None = None) -> bytes:
    """A stored model file's bytes, checked against the checksum its result recorded."""
    from odnbench.safeio import MAX_MODEL_BYTES, UnsafePathError, read_regular

    path = Path(path)
    try:  # never through a link, never a FIFO or device, never more than MAX_MODEL_BYTES
        data = read_regular(path, MAX_MODEL_BYTES)
    except FileNotFoundError:
        raise ModelFileError(f"{path.name} is missing from {path.parent}") from None
    except UnsafePathError as exc:
        raise ModelFileError(str(exc)) from None
    except OSError as exc:
        raise ModelFileError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if expected_sha256 is not None and sha256(data) != expected_sha256:
        raise ModelFileError(f"{path.name} changed since its result was written (sha256 {sha256(data)[:12]}…, "
                             f"recorded {expected_sha256[:12]}…); it is not the model that was measured")
    return data


def load_model(path: Path, device=None, expected_sha256: str | None = None):
    """Reload a stored model (never unpickles; runs no code named by the file)."""
    path = Path(path)
    data = read_bytes(path, expected_sha256)
    model = from_bytes(data, path.name)
    return model.to(device) if device is not None else model


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (size,) = struct.unpack("<Q", data[:8])
    return 2 <= size <= min(_MAX_HEADER, len(data) - 8) and data[8:9] == b"{"


def legacy_reason(data: bytes, name: str) -> str | None:
    """Why ``data`` is refused when it is a pickled PyTorch file (odnbench 0.1's model.pt): a zip
    archive (torch.save) or a raw pickle (protocol 2+ starts with 0x80). Only the first bytes are read."""
    if not _looks_like_safetensors(data) and (data[:4] == b"PK\x03\x04" or data[:1] == b"\x80"):
        return (f"{name} is a pickled PyTorch file (the odnbench 0.1 model format); it is never loaded, because "
                "unpickling can run any code. Rerun the cell to store its model as model.safetensors")
    return None


def header(data: bytes, name: str) -> dict:
    """The safetensors JSON header of ``data`` (ModelFileError when it is not a stored model)."""
    legacy = legacy_reason(data, name)
    if legacy:
        raise ModelFileError(legacy)
    if not _looks_like_safetensors(data):
        raise ModelFileError(f"{name} is not a stored model (truncated, or not an odnbench safetensors file; "
                             f"{len(data):,} bytes)")
    (size,) = struct.unpack("<Q", data[:8])
    try:
        head = json.loads(data[8:8 + size])
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{name} is not a stored model (its header is not JSON)") from None
    if not isinstance(head, dict):
        raise ModelFileError(f"{name} is not a stored model (its header is not an object)")
    return head


def from_bytes(data: bytes, name: str = "model"):
    from safetensors import SafetensorError
    from safetensors.torch import load

    meta = header(data, name).get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise ModelFileError(f"{name} is a safetensors file but not an odnbench model (no architecture in it)")
    if meta.get("version") != FORMAT_VERSION:
        raise ModelFileError(f"{name} is odnbench model format {meta.get('version')!r}; this odnbench reads "
                             f"{FORMAT_VERSION!r} (upgrade odnbench)")
    from odnbench.safeio import json_depth_problem

    total = 0
    for entry in header(data, name).values():
        if isinstance(entry, dict) and isinstance(entry.get("shape"), list):
            n = 1
            for d in entry["shape"]:
                n *= d if isinstance(d, int) and d >= 0 else 0
            total += n
    if total > MAX_PARAMETERS:
        raise ModelFileError(f"{name} states {total:,} tensor elements; at most {MAX_PARAMETERS:,} are read")
    deep = json_depth_problem(str(meta.get("architecture", "")), limit=400)
    if deep:
        raise ModelFileError(f"{name}: its architecture is not readable JSON ({deep})")
    try:
        tree = json.loads(meta.get("architecture", ""))
        tensors = load(data)
    except (json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"{name}: its architecture is not readable JSON") from None
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{name}: its tensors cannot be read ({' '.join(str(exc).split())[:200]})") from None
    try:
        return build(tree, tensors)
    except RecursionError:
        raise ModelFileError(f"{name}: its architecture is nested too deeply") from None

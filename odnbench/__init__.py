"""odnbench: rank ways of making image classifiers smaller under one harness.

Everything a plugin needs is importable from here (``from odnbench import Method, Trainer``).
The names that need torch are loaded on first use, so that ``odnbench --help`` and
``odnbench list`` start without importing torch.
"""

import importlib
import warnings

import pluggy

__version__ = "0.2.0"

#: Bumped whenever a change makes stored results incomparable with earlier ones
#: (split rules, metric definitions, recipe semantics). It is part of every cell key.
#: 2: backbones are initialised by ``recipe.init`` (default ``torch``); protocol 1 used timm's init.
PROTOCOL_VERSION = 2

#: Decorate plugin hook implementations with this, as in pytest/llm/datasette.
hookimpl = pluggy.HookimplMarker("odnbench")

from odnbench.contract import (  # noqa: E402  (re-exported for plugin authors)
    DEFAULT_TOLERANCE,
    TARGET_TOLERANCES,
    Backbone,
    BackboneShape,
    CurvePoint,
    Dataset,
    Dependency,
    Method,
    MethodContext,
    MethodOutput,
    Param,
    Requirement,
    target_tolerance,
)
from odnbench.errors import OdnbenchDeprecationWarning, OdnbenchError  # noqa: E402

# Plugin code is not __main__, where Python shows DeprecationWarnings: show odnbench's own (once per line).
warnings.filterwarnings("default", category=OdnbenchDeprecationWarning)
from odnbench.result import SCHEMA_VERSION as RESULT_SCHEMA_VERSION  # noqa: E402
from odnbench.result import Facts, Result  # noqa: E402

#: Public names that import torch, by the module that owns them (loaded on first access).
_LAZY = {
    "Trainer": "odnbench.trainer",
    "FitResult": "odnbench.trainer",
    "EpochStats": "odnbench.trainer",
    "CostMeter": "odnbench.trainer",
    "Improvement": "odnbench.trainer",
    "PlateauLR": "odnbench.trainer",
    "cosine_lr": "odnbench.trainer",
    "set_lr": "odnbench.trainer",
    "cross_entropy": "odnbench.trainer",
    "DepthNet": "odnbench.depthnet",
    "footprint": "odnbench.metrics",
    "Splits": "odnbench.data",
    "Split": "odnbench.data",
    "DatasetInfo": "odnbench.data",
    "carve_validation": "odnbench.data",
}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'odnbench' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_TOLERANCE",
    "PROTOCOL_VERSION",
    "TARGET_TOLERANCES",
    "RESULT_SCHEMA_VERSION",
    "Backbone",
    "BackboneShape",
    "CurvePoint",
    "Dataset",
    "Dependency",
    "Facts",
    "Method",
    "MethodContext",
    "MethodOutput",
    "OdnbenchDeprecationWarning",
    "OdnbenchError",
    "Param",
    "Requirement",
    "Result",
    "__version__",
    "hookimpl",
    "target_tolerance",
    *_LAZY,
]

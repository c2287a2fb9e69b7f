"""odnbench: rank ways of making image classifiers smaller under one harness.

This module stays free of torch so that ``odnbench --help`` and ``odnbench list`` start fast.
"""

import pluggy

__version__ = "0.1.0"

#: Bumped whenever a change makes stored results incomparable with earlier ones
#: (split rules, metric definitions, recipe semantics). It is part of every cell key.
PROTOCOL_VERSION = 1

#: Decorate plugin hook implementations with this, as in pytest/llm/datasette.
hookimpl = pluggy.HookimplMarker("odnbench")

from odnbench.contract import (  # noqa: E402  (re-exported for plugin authors)
    Backbone,
    Dataset,
    Method,
    MethodContext,
    MethodOutput,
    Param,
    Requirement,
)
from odnbench.errors import OdnbenchError  # noqa: E402

__all__ = [
    "PROTOCOL_VERSION",
    "Backbone",
    "Dataset",
    "Method",
    "MethodContext",
    "MethodOutput",
    "OdnbenchError",
    "Param",
    "Requirement",
    "__version__",
    "hookimpl",
]

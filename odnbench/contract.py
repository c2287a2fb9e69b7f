"""The plugin contract: what a dataset, a backbone and a method are, receive and return.

Plugins subclass :class:`Dataset`, :class:`Backbone` or :class:`Method` and hand instances to
the ``register`` callback of the matching hook (see docs/plugins.md). This module imports no
torch, so that registering plugins (done by every CLI command) stays cheap; import torch
inside ``load``/``build``/``run``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from odnbench.errors import OdnbenchError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from odnbench.data import Splits
    from odnbench.depthnet import DepthNet
    from odnbench.progress import Progress
    from odnbench.recipes import Recipe
    from odnbench.trainer import CostMeter, Trainer

_PARAM_TYPES = (int, float, str, bool)


@dataclass(frozen=True)
class Param:
    """A declared method parameter, settable with ``--set METHOD.NAME=VALUE``.

    ``type`` is one of int, float, str, bool; ``choices`` restricts the value;
    ``nullable`` lets ``none`` stand for "not set" (e.g. a target filled in from a preset).
    """

    name: str
    type: type
    default: Any
    help: str = ""
    choices: tuple | None = None
    nullable: bool = False

    def __post_init__(self):
        if self.type not in _PARAM_TYPES:
            raise TypeError(f"Param {self.name!r}: type must be one of int, float, str, bool")

    def parse(self, text: str, owner: str = "") -> Any:
        """Turn command-line text into a typed, validated value (one-line error otherwise)."""
        where = f"{owner}.{self.name}" if owner else self.name
        raw = text.strip()
        if self.nullable and raw.lower() in ("none", "null", ""):
            return None
        try:
            if self.type is bool:
                low = raw.lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                value = low in ("1", "true", "yes", "on")
            elif self.type is int:
                value = int(raw)
            elif self.type is float:
                value = float(raw)
            else:
                value = raw
        except ValueError:
            raise OdnbenchError(
                f"{where}={text!r} is not a valid {self.type.__name__}"
                + (" (or none)" if self.nullable else "")
            ) from None
        return self.check(value, owner)

    def check(self, value: Any, owner: str = "") -> Any:
        where = f"{owner}.{self.name}" if owner else self.name
        if value is None and self.nullable:
            return None
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.type) or (self.type is int and isinstance(value, bool)):
            raise OdnbenchError(f"{where} must be {self.type.__name__}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise OdnbenchError(f"{where}={value!r} is not allowed; choose one of: {allowed}")
        return value


@dataclass(frozen=True)
class Requirement:
    """Another method's result that a method needs, on the same dataset/backbone/seed/recipe.

    ``method`` is run (once, and reused) with ``params`` on top of its defaults; the method
    then finds it as ``ctx.dependencies[key or method]``.
    """

    method: str
    params: Mapping[str, Any] = field(default_factory=dict)
    key: str | None = None

    @property
    def name(self) -> str:
        return self.key or self.method


class Dataset:
    """An image-classification dataset with train / validation / test splits.

    Subclasses set ``name`` and ``description`` and implement :meth:`load`.
    """

    name: str = ""
    description: str = ""

    def load(self, data_dir: Path, *, download: bool, seed: int) -> "Splits":
        """Return :class:`odnbench.data.Splits` (normalised float tensors on the CPU).

        The validation split must be carved from the training data with ``seed`` (never
        from test). Raise :class:`odnbench.errors.DataNotFoundError` saying where files are
        expected when they are missing and ``download`` is off or impossible.
        """
        raise NotImplementedError


class Backbone:
    """A network family with block-level depth access.

    :meth:`build` returns an :class:`odnbench.depthnet.DepthNet`: a stem, the residual blocks
    as one ordered list, and a linear head, so that any method can cut or grow it by block.
    """

    name: str = ""
    description: str = ""

    def build(
        self,
        *,
        in_chans: int,
        num_classes: int,
        stem: str = "cifar",
        width: tuple[int, ...] | None = None,
    ) -> "DepthNet":
        raise NotImplementedError


@dataclass
class MethodContext:
    """Everything a method receives for one cell of the grid.

    ``build_backbone()`` returns a fresh, randomly initialised :class:`DepthNet` for this
    cell's backbone, input policy and width. ``trainer`` is the shared training loop (with
    cost accounting already wired in); ``dependencies`` holds the results of the methods
    named by :meth:`Method.requires`.
    """

    method: str
    params: dict[str, Any]
    splits: "Splits"
    build_backbone: Callable[[], "DepthNet"]
    recipe: "Recipe"
    seed: int
    device: "torch.device"
    progress: "Progress"
    trainer: "Trainer"
    cost: "CostMeter"
    workdir: Path
    dependencies: dict[str, "Dependency"] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dependency:
    """A finished result another method needs: its ``result.json`` and its exported model."""

    result: dict[str, Any]
    model_path: Path

    def load_model(self, device=None) -> "nn.Module":
        from odnbench.store import load_model

        return load_model(self.model_path, device=device)


@dataclass
class MethodOutput:
    """What a method hands back: the exported model (an ordinary ``nn.Module``) and what it
    learned (JSON-serialisable, stored as ``method_info``). The harness measures the model."""

    model: "nn.Module"
    info: dict[str, Any] = field(default_factory=dict)


class Method:
    """A way of obtaining a (smaller) model.

    Subclasses set ``name``, ``description`` and ``params`` and implement :meth:`run`.
    """

    name: str = ""
    description: str = ""
    params: tuple[Param, ...] = ()

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        """Parameter defaults that depend on the preset or dataset (e.g. the paper's targets)."""
        return {}

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        """Other methods' results this cell needs, given its resolved parameters."""
        return []

    def reference_results(self, dataset: str, backbone: str) -> dict[str, Any] | None:
        """Numbers a paper published for this method on (dataset, backbone), shown as "reported"
        beside the measured ones on leaderboards; None when there are none."""
        return None

    def run(self, ctx: MethodContext) -> MethodOutput:
        raise NotImplementedError

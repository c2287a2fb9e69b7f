"""The plugin contract: what a dataset, a backbone and a method are, receive and return.

Plugins subclass :class:`Dataset`, :class:`Backbone` or :class:`Method` and hand instances to
the ``register`` callback of the matching hook (see docs/plugins.md). This module imports no
torch, so that registering plugins (done by every CLI command) stays cheap; import torch
inside ``load``/``build``/``run``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odnbench.errors import OdnbenchError
from odnbench.params import Param as Param  # defined below recipes, which declare theirs with it
from odnbench.result import Facts

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

    from odnbench.data import Splits
    from odnbench.depthnet import DepthNet
    from odnbench.progress import Progress
    from odnbench.recipes import Recipe
    from odnbench.result import Result
    from odnbench.trainer import CostMeter, Trainer

#: The board's tolerance: a row "meets target" when its test top-1 is within this many points of full
#: depth's (Δ vs full >= -tolerance), in every preset (``leaderboard publish --tolerance`` may say otherwise).
DEFAULT_TOLERANCE = 1.75
#: How far below full depth's *validation* top-1 a method that stops at a target sets its threshold,
#: per preset, so that its *test* top-1 lands within DEFAULT_TOLERANCE: a depth's best validation
#: reading is the maximum of several readings of a small split, which overstates it (quick: 500
#: images, about a point; tiny: 256 images, about two). Other presets: DEFAULT_TOLERANCE.
TARGET_TOLERANCES: Mapping[str, float] = {"quick": 0.75, "tiny": 3.0}


def target_tolerance(preset: str) -> float:
    """The tolerance below full depth's validation top-1 that follows the board's in ``preset``
    (:data:`TARGET_TOLERANCES`, else :data:`DEFAULT_TOLERANCE`): what a method declaring
    ``Method.follows_board_tolerance`` gets as that parameter's default."""
    return float(TARGET_TOLERANCES.get(preset, DEFAULT_TOLERANCE))


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

    def load(self, data_dir: Path, *, download: bool, seed: int) -> Splits:
        """Return :class:`odnbench.data.Splits` (normalised float tensors on the CPU).

        The validation split must be carved from the training data with ``seed`` (never
        from test). Raise :class:`odnbench.errors.DataNotFoundError` saying where files are
        expected when they are missing and ``download`` is off or impossible.
        """
        raise NotImplementedError


class Backbone:
    """A network family with block-level depth access.

    :meth:`build` returns an :class:`odnbench.depthnet.DepthNet`: a stem, the blocks as one
    ordered list (one depth level each) grouped into its declared ``stages``, and a head, so that
    any method can cut, grow, prune or widen it by block. ``width`` is one width per stage in the
    family's own terms (``None``: the family's own widths; timm ResNets: each stage's ``channels``,
    which a Bottleneck expands 4x at its output). Record the widths built at in ``meta["width"]``
    when they differ from the stages' output widths, so ``ctx.stage_widths`` can give them back.
    A backbone that cannot honour a ``width`` says so in :meth:`check_width`.
    """

    name: str = ""
    description: str = ""

    def check_width(self, width: tuple[int, ...] | None) -> None:
        """Raise ``ValueError`` saying what this backbone takes when it cannot be built at ``width``.

        Called when a grid is planned (with the recipe's widths), so that ``--set recipe.width=...``
        or a preset's narrow widths that this family cannot honour fail with one line before
        anything runs. The default accepts any width."""

    def build(
        self,
        *,
        in_chans: int,
        num_classes: int,
        stem: str = "cifar",
        width: tuple[int, ...] | None = None,
    ) -> DepthNet:
        raise NotImplementedError


@dataclass(frozen=True)
class BackboneShape:
    """What :meth:`Method.check_backbone` sees of a cell's backbone at plan time, built (untrained)
    at the cell's stem and widths: ``depth`` residual blocks grouped into ``stages`` (blocks per
    stage, e.g. ResNet-18: (2, 2, 2, 2)), and each stage's output width."""

    name: str
    depth: int
    stages: tuple[int, ...]
    stage_widths: tuple[int, ...]


@dataclass
class MethodContext:
    """Everything a method receives for one cell of the grid.

    ``build_backbone(width=None)`` returns a fresh, randomly initialised :class:`DepthNet` for this
    cell's backbone and input policy, at the cell's stage widths or at ``width`` (one width per
    stage). ``trainer`` is the shared training loop (cost accounting wired in); ``dependencies``
    holds the results named by :meth:`Method.requires`, whose costs the harness has already
    counted in ``cost``.
    """

    method: str
    params: dict[str, Any]
    splits: Splits
    build_backbone: Callable[..., DepthNet]
    recipe: Recipe
    seed: int
    device: torch.device
    progress: Progress
    trainer: Trainer
    cost: CostMeter
    workdir: Path
    dependencies: dict[str, Dependency] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    #: What :meth:`save_model` stored, by name; the harness records it as the result's ``artifacts``.
    artifacts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def save_model(self, name: str, model: nn.Module) -> Path:
        """Keep ``model`` as this cell's artifact ``name``: stored as ``<name>.safetensors`` in the cell
        folder (odnbench's model format, never pickled) and recorded in the result's ``artifacts`` with
        its checksum, size, parameter count and saved size. ``leaderboard verify`` reloads it, the Ray
        executor ships it back, and a method that requires this one loads it with
        ``ctx.dependency(...).load_artifact(name)``. Returns the file's path."""
        import re

        from odnbench.errors import PluginError
        from odnbench.metrics import count_params, saved_size_mb
        from odnbench.result import artifact_entry
        from odnbench.store import MODEL_FILE, MODEL_SUFFIX, save_model

        file = f"{name}{MODEL_SUFFIX}" if isinstance(name, str) else ""
        if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}", name)) or file == MODEL_FILE:
            raise PluginError(f"method {self.method!r}: ctx.save_model({name!r}, ...): a name is 1-100 letters, "
                              f"digits, '-', '_' or '.', starting with a letter or digit, and not "
                              f"{MODEL_FILE.split('.')[0]!r} (the exported model's file)")
        path = self.workdir / file
        save_model(model, path)
        self.artifacts[name] = artifact_entry(file, path.read_bytes(), "model", params=count_params(model),
                                              size_mb=round(saved_size_mb(model), 6))
        return path

    def sub_seed(self, name: str) -> int:
        """A seed of its own for the sub-run ``name`` of this cell (a method that trains several
        networks: one per depth, a teacher and a student), from the cell's seed, method and ``name``
        alone: the same on every run and platform, whatever ran before it."""
        import hashlib

        digest = hashlib.sha256(f"odnbench:{self.method}:{self.seed}:{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big") & (2**63 - 1)

    def generator(self, name: str) -> torch.Generator:
        """A ``torch.Generator`` seeded with :meth:`sub_seed` (``name``), for the sub-run's own random draws."""
        import torch

        return torch.Generator().manual_seed(self.sub_seed(name))

    def seeded(self, name: str) -> AbstractContextManager[None]:
        """``with ctx.seeded(name):`` the sub-run ``name`` builds its network (``ctx.build_backbone``
        draws its initial weights from torch's global generator) and trains (``ctx.trainer`` shuffles
        with its generator) from :meth:`sub_seed` (``name``), and both generators are restored after
        it. So each sub-run's weights depend on its name and the cell's seed, not on how many random
        numbers the sub-runs before it drew (nor on their order)."""
        import contextlib

        import torch

        @contextlib.contextmanager
        def scope() -> Iterator[None]:
            devices = [self.device] if getattr(self.device, "type", "cpu") == "cuda" else []
            trainer_generator = getattr(self.trainer, "generator", None)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(self.sub_seed(name))
                if trainer_generator is not None:
                    self.trainer.generator = self.generator(f"{name}/batches")
                try:
                    yield
                finally:
                    if trainer_generator is not None:
                        self.trainer.generator = trainer_generator

        return scope()

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one image: what MACs and latency are measured on."""
        info = self.splits.info
        return (info.channels, info.image_size, info.image_size)

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """The cell's widths, one per stage, as ``build_backbone(width=...)`` takes them: the
        recipe's, else the backbone's own (its ``meta["width"]``, else its stages' output widths).
        ``build_backbone(width=tuple(w // 2 for w in ctx.stage_widths))`` is this cell at half width."""
        if self.recipe.widths is not None:
            return tuple(self.recipe.widths)
        net = self.build_backbone()
        width = net.meta.get("width")
        return tuple(width) if isinstance(width, (list, tuple)) else tuple(net.stage_widths)

    def dependency(self, name: str) -> Dependency:
        """The result :meth:`Method.requires` asked for under ``name`` (one-line error when absent)."""
        from odnbench.errors import MissingDependencyError

        if name not in self.dependencies:
            have = ", ".join(sorted(self.dependencies)) or "none"
            raise MissingDependencyError(f"{self.method} needs the {name!r} result of the same cell "
                                         f"(its requires() must return Requirement({name!r})); it has: {have}")
        return self.dependencies[name]

    def start_from(self, name: str | None = None) -> DepthNet:
        """The trained model of dependency ``name`` as a trainable DepthNet on ``device``: for methods
        that cut, prune or fine-tune another method's model. Default: the dependency whose method is
        the baseline (``Method.role``; ``full`` among the built-ins). Its cost is already in ``cost``."""
        if name is None:
            from odnbench.errors import MissingDependencyError

            baselines = [k for k, dep in self.dependencies.items() if dep.result.role == "baseline"]
            if len(baselines) != 1:
                have = ", ".join(sorted(self.dependencies)) or "none"
                raise MissingDependencyError(
                    f"{self.method}: ctx.start_from() without a name starts from the baseline dependency (a "
                    f"Requirement of the method whose role is 'baseline', e.g. full); it has {len(baselines)} among: "
                    f"{have}. Name the dependency: ctx.start_from(name)")
            name = baselines[0]
        return self.dependency(name).load_depthnet(self.device)


@dataclass
class Dependency:
    """A finished result another method needs: its stored :class:`odnbench.result.Result` and its
    exported model."""

    result: Result
    model_path: Path

    @property
    def key(self) -> str:
        return self.result.key

    @property
    def metrics(self) -> dict[str, Any]:
        return self.result.metrics or {}

    @property
    def facts(self) -> Facts:
        return self.result.facts

    @property
    def artifacts(self) -> dict[str, Any]:
        """The dependency's extra files by name (what its method stored with ``ctx.save_model``)."""
        return self.result.artifacts

    def load_artifact(self, name: str, device: torch.device | str | None = None) -> nn.Module:
        """A model the dependency's method stored with ``ctx.save_model(name, ...)``, checked against
        its recorded checksum (one-line error naming the artifacts it has when ``name`` is not one)."""
        from odnbench.errors import MissingDependencyError, ModelFileError
        from odnbench.result import plain_file_name
        from odnbench.store import load_model

        entry = self.result.artifacts.get(name)
        if not isinstance(entry, dict) or not plain_file_name(entry.get("file")):
            have = ", ".join(sorted(self.result.artifacts)) or "none"
            raise MissingDependencyError(f"the {self.result.method!r} result ({self.key}) has no artifact {name!r}; "
                                         f"it has: {have}")
        try:
            return load_model(self.model_path.parent / entry["file"], device=device,
                              expected_sha256=entry.get("sha256"))
        except ModelFileError as exc:
            raise ModelFileError(f"cannot use the {self.result.method!r} artifact {name!r} in "
                                 f"{self.model_path.parent.name}: {exc}") from None

    def load_model(self, device: torch.device | str | None = None) -> nn.Module:
        """The exported model, checked against the checksum its result recorded and rebuilt without
        running any code from the file (a pickled or edited file is refused with one line)."""
        from odnbench.errors import ModelFileError
        from odnbench.store import load_model

        entry = (self.result.files or {}).get(self.model_path.name)
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        try:
            return load_model(self.model_path, device=device, expected_sha256=sha)
        except ModelFileError as exc:
            raise ModelFileError(f"cannot use the {self.result.method!r} model in {self.model_path.parent.name}: "
                                 f"{exc}") from None

    def load_depthnet(self, device: torch.device | str | None = None) -> DepthNet:
        """The model as a DepthNet with every parameter trainable (one-line error when it is not one)."""
        from odnbench.depthnet import DepthNet

        model = self.load_model(device)
        if not isinstance(model, DepthNet):
            raise OdnbenchError(f"the {self.result.method!r} model ({self.model_path}) is a {type(model).__name__}, "
                                "not an odnbench DepthNet, so it cannot be cut or pruned by block")
        for p in model.parameters():
            p.requires_grad_(True)
        return model


@dataclass
class CurvePoint:
    """A further model a method obtained on its way (ODN's best model at each depth it tried, the
    oracle's model at every depth), handed to the harness to be measured like the main model: test
    and validation top-1, params, size MB and MACs (no latency). The method never measures the test
    split itself. ``depth``: the model's residual blocks (None when depth is not what varies);
    ``label``: what the point is, in a few words; ``info``: the method's own JSON numbers for it
    (its validation top-1 as the method read it, epochs, cost)."""

    model: nn.Module
    depth: int | None = None
    label: str = ""
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class MethodOutput(Facts):
    """What a method hands back: the exported model (an ordinary ``nn.Module``), what it learned
    (``info``: JSON-serialisable, stored as ``method_info``) and, as keyword arguments, the typed
    facts a leaderboard shows: the fields of :class:`odnbench.result.Facts` (declared once, there),
    e.g. ``MethodOutput(model, info, depth=k, reached_target=True, threshold=97.5)``. The harness
    fills ``depth`` from a DepthNet and ``converged``/``cut_short`` from the shared trainer when left
    None, and measures the model itself.

    ``curve``: further models to measure (:class:`CurvePoint`), stored as ``Result.curve``, one
    record per point; a board draws them as the method's trade-off curve.
    """

    model: nn.Module
    info: dict[str, Any] = field(default_factory=dict)
    curve: list[CurvePoint] | None = field(default=None, kw_only=True)


class Method:
    """A way of obtaining a (smaller) model.

    Subclasses set ``name``, ``description`` and ``params`` and implement :meth:`run`.
    """

    name: str = ""
    description: str = ""
    params: tuple[Param, ...] = ()
    #: Its part on a board, stored in each result: ``"baseline"`` is the method Δ top-1 and size
    #: reductions compare with (``full`` among the built-ins); None for every other method.
    role: str | None = None
    #: Distributions (pip names) whose versions its results depend on, stored in the result's ``env``
    #: under the name with ``-`` as ``_`` (e.g. ``("torch-pruning",)`` -> ``env["torch_pruning"]``).
    env_packages: tuple[str, ...] = ()
    #: Recipe fields this method never reads, each with what governs that instead (optional; the
    #: default, empty, means "uses every field"). ``--set recipe.FIELD`` is refused when no method
    #: in the grid uses FIELD, since it would only make separate cells that train the same way.
    unused_recipe_fields: Mapping[str, str] = {}
    #: The name of a float parameter that follows the board's tolerance per preset: its default in each
    #: preset is :func:`target_tolerance` (0.75 in quick, 3 in tiny, DEFAULT_TOLERANCE = 1.75 otherwise),
    #: below the values of :meth:`preset_defaults` and ``--set`` (ODN and the oracle: ``relative_tolerance``).
    #: None: the method's parameters declare their own defaults.
    follows_board_tolerance: str | None = None

    def preset_defaults(self, preset: str, dataset: str) -> dict[str, Any]:
        """Parameter defaults that depend on the preset or dataset (e.g. the paper's targets)."""
        return {}

    def requires(self, params: Mapping[str, Any]) -> list[Requirement]:
        """Other methods' results this cell needs, given its resolved parameters."""
        return []

    def check_backbone(self, params: Mapping[str, Any], backbone: BackboneShape) -> None:
        """Raise :class:`odnbench.errors.OdnbenchError` (one line: the value, and what this backbone
        allows) when this cell cannot run on ``backbone``, e.g. a depth bound beyond its blocks. Called
        when the grid is planned, before anything trains (only for methods that override it); the
        default accepts every backbone."""

    def reference_results(self, dataset: str, backbone: str) -> dict[str, Any] | None:
        """Numbers a paper published for this method on (dataset, backbone), shown as "reported"
        beside the measured ones on leaderboards; None when there are none. Its ``preset`` key names
        the odnbench preset that follows the paper's recipe: the numbers are compared on that
        preset's boards only (and only noted on others)."""
        return None

    def run(self, ctx: MethodContext) -> MethodOutput:
        raise NotImplementedError

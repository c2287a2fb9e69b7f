"""Block-level depth access: a network as stem -> ordered blocks (in stages) -> pool -> head.

Every backbone plugin returns a :class:`DepthNet`, so methods can cut a network after any
block (ODN, truncation) or prune it (torch-pruning traces it like any ``nn.Module``). A
truncated network is a new, ordinary ``DepthNet`` holding only the kept blocks.

What a backbone must give: ``blocks`` whose outputs are 4-D feature maps, the channel width
after each, and a ``head`` from pooled features (N x widths[-1]) to logits. The head may be any
module (e.g. a small MLP); when it is not an ``nn.Linear``, pass ``num_classes``. ``stages``
(blocks per stage) defaults to runs of equal width. A cut network always gets a linear head.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn


class DepthNet(nn.Module):
    """``head(flatten(avgpool(blocks[:k](stem(x)))))`` with ``k = len(blocks)``.

    ``widths[i]`` is the channel width after block ``i`` (0-based); ``meta`` records the
    input policy (backbone name, stem, in_chans, stage widths) and is saved with the model.
    """

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], widths: Sequence[int],
                 head: nn.Module, meta: dict | None = None, *, stages: Sequence[int] | None = None,
                 num_classes: int | None = None, pool: nn.Module | None = None):
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError("one width per block is needed")
        if num_classes is None:
            if not isinstance(head, nn.Linear):
                raise ValueError(f"the head is a {type(head).__name__}, not an nn.Linear: pass num_classes")
            num_classes = head.out_features
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.pool = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        self.head = head
        self.widths = [int(w) for w in widths]
        self.stages = [int(n) for n in stages] if stages is not None else _equal_width_runs(self.widths)
        if sum(self.stages) != len(self.widths) or any(n < 1 for n in self.stages):
            raise ValueError(f"stages {self.stages} must be positive block counts adding up to {len(self.widths)}")
        self.classes = int(num_classes)
        self.meta = dict(meta or {})

    @property
    def meta(self) -> dict:
        """The input policy and whatever the backbone and methods record (saved with the model)."""
        found = self.__dict__.get("meta")
        if not isinstance(found, _Meta):  # a plain dict, e.g. from a stored model: wrap it in place
            found = self.__dict__["meta"] = _Meta(found or {})
        found.stages = self.stages
        return found

    @meta.setter
    def meta(self, value: dict) -> None:
        self.__dict__["meta"] = _Meta(value)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def num_classes(self) -> int:
        return self.classes

    @property
    def stage_widths(self) -> list[int]:
        """The width after the last block of each stage."""
        ends = [sum(self.stages[: i + 1]) for i in range(len(self.stages))]
        return [self.widths[e - 1] for e in ends]

    def features(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """Pooled features after the first ``depth`` blocks (all blocks when None)."""
        x = self.stem(x)
        for block in self.blocks[: self.depth if depth is None else depth]:
            x = block(x)
        return torch.flatten(self.pool(x), 1)

    def block_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features after every block, in one pass (for multi-exit training)."""
        x = self.stem(x)
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(torch.flatten(self.pool(x), 1))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def truncated(self, depth: int, head: nn.Linear | None = None) -> DepthNet:
        """A standalone copy with stem + blocks 1..depth + ``head`` (a fresh linear head when None)."""
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must be between 1 and {self.depth}, got {depth}")
        if head is None:
            head = nn.Linear(self.widths[depth - 1], self.num_classes)
        elif isinstance(head, nn.Linear) and head.in_features != self.widths[depth - 1]:
            raise ValueError(f"head takes {head.in_features} features but block {depth} gives {self.widths[depth - 1]}")
        stages, left = [], depth
        for n in self.stages:
            if left > 0:
                stages.append(min(n, left))
                left -= n
        net = DepthNet(
            copy.deepcopy(self.stem),
            [copy.deepcopy(b) for b in self.blocks[:depth]],
            self.widths[:depth],
            copy.deepcopy(head),
            {**self.meta, "depth": depth},
            stages=stages, num_classes=self.num_classes, pool=copy.deepcopy(self.pool),
        )
        return net.to(next(self.parameters()).device)


def _equal_width_runs(widths: Sequence[int]) -> list[int]:
    runs: list[int] = []
    for i, w in enumerate(widths):
        if i and w == widths[i - 1]:
            runs[-1] += 1
        else:
            runs.append(1)
    return runs


class _Meta(dict):
    """A DepthNet's ``meta``: a plain dict, except that odnbench 0.1's ``meta["stage_blocks"]`` (blocks
    per stage, which 0.1's backbones stored there) still reads the network's ``stages``, with an
    OdnbenchDeprecationWarning, until odnbench 0.3.0."""

    stages: list[int] | None = None

    def _stage_blocks(self) -> list[int]:
        import warnings

        from odnbench.errors import OdnbenchDeprecationWarning

        warnings.warn('net.meta["stage_blocks"]: odnbench 0.2 keeps the blocks per stage in net.stages; use '
                      'net.stages instead (meta["stage_blocks"] is removed in odnbench 0.3.0).',
                      OdnbenchDeprecationWarning, stacklevel=3)
        return list(self.stages or [])

    def __missing__(self, key):
        if key == "stage_blocks" and self.stages is not None:
            return self._stage_blocks()
        raise KeyError(key)

    def get(self, key, default=None):
        if key == "stage_blocks" and key not in self.keys() and self.stages is not None:
            return self._stage_blocks()
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        return super().__contains__(key) or (key == "stage_blocks" and self.stages is not None)


class EarlyExitNet(nn.Module):
    """A multi-exit network used as an anytime classifier: a classifier (pool + ``exits[i]``) after
    every block, and each image leaves at the first exit whose softmax confidence (its largest
    class probability) reaches ``threshold`` (Shallow-Deep Networks, Kaya et al. 2019; BranchyNet).
    ``threshold`` 0 sends every image out at exit 1; above 1 no exit is ever confident enough, so
    every image runs every block and every exit and leaves at the last.

    The forward returns the logits of each image's exit, so top-1 reads it like any classifier;
    :meth:`run_exits` also says where each image left (``odnbench.metrics`` counts what it spent).
    Its parts are a :class:`DepthNet`'s (``stem``, ``blocks``, ``pool``, ``widths``, ``stages``,
    ``meta``), so a stored one reloads without plugin code (``odnbench.modelio``).
    """

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], widths: Sequence[int],
                 exits: Sequence[nn.Module], meta: dict | None = None, *, threshold: float = 1.0,
                 stages: Sequence[int] | None = None, num_classes: int | None = None, pool: nn.Module | None = None):
        super().__init__()
        if not len(blocks) == len(widths) == len(exits) or not blocks:
            raise ValueError("one width and one exit per block are needed (and at least one block)")
        if num_classes is None:
            last = exits[-1]
            if not isinstance(last, nn.Linear):
                raise ValueError(f"the last exit is a {type(last).__name__}, not an nn.Linear: pass num_classes")
            num_classes = last.out_features
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.pool = pool if pool is not None else nn.AdaptiveAvgPool2d(1)
        self.exits = nn.ModuleList(exits)
        self.widths = [int(w) for w in widths]
        self.stages = [int(n) for n in stages] if stages is not None else _equal_width_runs(self.widths)
        if sum(self.stages) != len(self.widths) or any(n < 1 for n in self.stages):
            raise ValueError(f"stages {self.stages} must be positive block counts adding up to {len(self.widths)}")
        self.classes = int(num_classes)
        self.threshold = float(threshold)
        self.meta = dict(meta or {})

    @classmethod
    def from_depthnet(cls, net: DepthNet, exits: Sequence[nn.Module], threshold: float = 1.0) -> EarlyExitNet:
        """``net``'s stem, blocks and pool (shared, not copied; its own head is dropped) with ``exits``."""
        return cls(net.stem, list(net.blocks), net.widths, list(exits), {**net.meta, "exits": len(exits)},
                   threshold=threshold, stages=net.stages, num_classes=net.num_classes, pool=net.pool)

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def num_classes(self) -> int:
        return self.classes

    def with_threshold(self, threshold: float) -> EarlyExitNet:
        """The same network (its modules shared, not copied, in the same mode) exiting at ``threshold``."""
        net = EarlyExitNet(self.stem, list(self.blocks), self.widths, list(self.exits), self.meta,
                           threshold=threshold, stages=self.stages, num_classes=self.classes, pool=self.pool)
        net.training = self.training
        return net

    def exit_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every exit for every image, in one pass through all blocks (for training all
        exits jointly and for sweeping thresholds without running the network once per threshold)."""
        x = self.stem(x)
        out = []
        for block, head in zip(self.blocks, self.exits):
            x = block(x)
            out.append(head(torch.flatten(self.pool(x), 1)))
        return out

    def run_exits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, exit)``: each image's logits at its exit and that exit (0-based). Only the
        images still undecided go through the next block (eval-mode layers treat images one by
        one, so this gives the logits one pass through every block would)."""
        x = self.stem(x)
        n = x.shape[0]
        logits: torch.Tensor | None = None
        where = torch.full((n,), self.depth - 1, dtype=torch.long, device=x.device)
        alive = torch.arange(n, device=x.device)
        for i, (block, head) in enumerate(zip(self.blocks, self.exits)):
            x = block(x)
            out = head(torch.flatten(self.pool(x), 1))
            if logits is None:
                logits = out.new_zeros((n, out.shape[1]))
            if i == self.depth - 1:
                logits[alive] = out
                break
            leave = confident(out, self.threshold)
            if bool(leave.any()):
                logits[alive[leave]] = out[leave]
                where[alive[leave]] = i
                stay = ~leave
                x, alive = x[stay], alive[stay]
                if alive.numel() == 0:
                    break
        assert logits is not None
        return logits, where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_exits(x)[0]

    def cut(self, depth: int) -> DepthNet:
        """A standalone DepthNet (copies): stem + blocks 1..depth + exit ``depth`` as its head, every
        image leaving there (the static, one-exit use of this network)."""
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must be between 1 and {self.depth}, got {depth}")
        full = DepthNet(self.stem, list(self.blocks), self.widths, self.exits[-1], self.meta, stages=self.stages,
                        num_classes=self.classes, pool=self.pool)
        return full.truncated(depth, head=self.exits[depth - 1])  # type: ignore[arg-type]


def confident(logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Which rows' largest softmax probability reaches ``threshold`` (computed in fp32)."""
    return torch.softmax(logits.float(), dim=1).amax(dim=1) >= threshold


def first_exits(logits: Sequence[torch.Tensor], threshold: float) -> torch.Tensor:
    """The exit (0-based) each image leaves at, given every exit's logits (``exit_logits``): the
    first whose confidence reaches ``threshold``, else the last. The same rule as ``run_exits``."""
    hits = torch.stack([confident(out, threshold) for out in logits[:-1]] +
                       [torch.ones(logits[-1].shape[0], dtype=torch.bool, device=logits[-1].device)], dim=1)
    return hits.long().argmax(dim=1)  # the first True

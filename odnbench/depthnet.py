"""Block-level depth access: a network as stem -> ordered residual blocks -> pool -> linear head.

Every backbone plugin returns a :class:`DepthNet`, so methods can cut a network after any
block (ODN, truncation) or prune it (torch-pruning traces it like any ``nn.Module``). A
truncated network is a new, ordinary ``DepthNet`` holding only the kept blocks.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
from torch import nn


class DepthNet(nn.Module):
    """``head(flatten(avgpool(blocks[:k](stem(x)))))`` with ``k = len(blocks)``.

    ``widths[i]`` is the channel width after block ``i`` (0-based); ``meta`` records the
    input policy (backbone name, stem, in_chans, stage widths) and is saved with the model.
    """

    def __init__(self, stem: nn.Module, blocks: Sequence[nn.Module], widths: Sequence[int],
                 head: nn.Linear, meta: dict | None = None):
        super().__init__()
        if len(blocks) != len(widths):
            raise ValueError("one width per block is needed")
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = head
        self.widths = [int(w) for w in widths]
        self.meta = dict(meta or {})

    @property
    def depth(self) -> int:
        return len(self.blocks)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

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

    def truncated(self, depth: int, head: nn.Linear | None = None) -> "DepthNet":
        """A standalone copy with stem + blocks 1..depth + ``head`` (a fresh linear head when None)."""
        if not 1 <= depth <= self.depth:
            raise ValueError(f"depth must be between 1 and {self.depth}, got {depth}")
        if head is None:
            head = nn.Linear(self.widths[depth - 1], self.num_classes)
        elif head.in_features != self.widths[depth - 1]:
            raise ValueError(f"head takes {head.in_features} features but block {depth} gives {self.widths[depth - 1]}")
        net = DepthNet(
            copy.deepcopy(self.stem),
            [copy.deepcopy(b) for b in self.blocks[:depth]],
            self.widths[:depth],
            copy.deepcopy(head),
            {**self.meta, "depth": depth},
        )
        return net.to(next(self.parameters()).device)

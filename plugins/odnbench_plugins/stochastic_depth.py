"""Stochastic depth with a per-mini-batch block skip (Huang et al., ECCV 2016): the training loss of
``full.survival`` < 1. Imported by ``full`` only when it is used (it imports torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from odnbench import DepthNet
from odnbench.metrics import count_macs
from odnbench.trainer import FORWARDS_PER_STEP


def linear_survival(depth: int, last: float) -> list[float]:
    """Block l of ``depth`` (1-based) survives with 1 - l/depth x (1 - last): the paper's linear decay."""
    return [1.0 - (i + 1) / depth * (1.0 - last) for i in range(depth)]


@dataclass
class StochasticDepth:
    """Which blocks a mini-batch runs, and the compute the skipped ones did not spend.

    ``survival[i]``: block i's probability of running (1 for a block that changes its input's shape:
    it cannot be left out); ``block_macs[i]``: its forward MACs per image. The draws come from a
    generator seeded with the cell's seed, so a run is repeatable."""

    survival: list[float]
    droppable: list[bool]
    block_macs: list[int]
    seed: int
    last: float
    batches: int = 0
    blocks_run: int = 0
    blocks_skipped: int = 0
    unspent_macs: int = 0  # forward MACs of the skipped blocks, summed over the images they skipped
    _generator: torch.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)
        self._probs = torch.tensor(self.survival, dtype=torch.float64)

    @classmethod
    def for_model(cls, model: DepthNet, last: float, input_shape: tuple[int, ...], seed: int) -> StochasticDepth:
        was = model.training
        model.eval()
        droppable, macs = [], []
        with torch.no_grad():
            x = model.stem(torch.zeros((1, *input_shape), device=next(model.parameters()).device))
            for block in model.blocks:
                macs.append(count_macs(block, tuple(x.shape[1:])))
                y = block(x)
                droppable.append(tuple(y.shape) == tuple(x.shape))
                x = y
        model.train(was)
        survival = [p if d else 1.0 for p, d in zip(linear_survival(model.depth, last), droppable)]
        return cls(survival, droppable, macs, seed, last)

    def draw(self) -> list[bool]:
        """Which blocks this mini-batch runs."""
        return (torch.rand(len(self.survival), generator=self._generator, dtype=torch.float64) < self._probs).tolist()

    # Each mini-batch's draw decides which blocks run: eager under recipe.compile (a graph would fix one draw).
    @torch.compiler.disable
    def loss(self, model: DepthNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of ``model`` with this mini-batch's dropped blocks left out (not run)."""
        keep = self.draw()
        h = model.stem(x)
        for i, block in enumerate(model.blocks):
            if keep[i]:
                h = block(h)
                self.blocks_run += 1
            else:
                self.blocks_skipped += 1
                self.unspent_macs += self.block_macs[i] * len(y)
        self.batches += 1
        return F.cross_entropy(model.head(torch.flatten(model.pool(h), 1)), y)

    @property
    def unspent_train_macs(self) -> int:
        """What the trainer counted for the skipped blocks (forward and backward)."""
        return self.unspent_macs * FORWARDS_PER_STEP

    def record(self) -> dict:
        total = self.blocks_run + self.blocks_skipped
        return {"survival_last": self.last, "survival": [round(p, 6) for p in self.survival],
                "droppable": [i + 1 for i, d in enumerate(self.droppable) if d], "block_macs": self.block_macs,
                "batches": self.batches, "blocks_skipped": self.blocks_skipped,
                "skipped_share": round(self.blocks_skipped / total, 6) if total else 0.0,
                "expected_skipped_share": round(sum(1 - p for p in self.survival) / len(self.survival), 6),
                "train_macs_not_spent": self.unspent_train_macs}

"""Weight initialisation policies for backbones (``recipe.init``).

Why this exists: a method's result can hinge on how the network starts, not only on how it is
trained. timm builds ResNets with ``zero_init_last=True`` (the last BatchNorm of every residual
block starts at 0, so every block starts as an identity) and its own conv init; the ODN authors
built theirs with PyTorch's default layer init and every BatchNorm weight at 1. ODN's joint
warm-up of all heads barely trains any head from timm's start (issue 10, and
../shared/odn-method.md section 2), so a faithful benchmark must be able to build the networks
the authors' way, for every method of a cell alike. The harness applies the recipe's policy to
every backbone it builds, whichever plugin provides it.

- ``torch``: PyTorch's default init for every layer: ``reset_parameters()`` on every module that
  owns parameters and defines it (Conv, Linear, BatchNorm, GroupNorm, LayerNorm, ...), then every
  normalisation weight 1 and bias 0. Nothing is zero-initialised. Parameters of modules with no
  ``reset_parameters`` (rare custom layers) are left as the backbone made them.
- ``timm``: the backbone as it built itself (for timm ResNets: timm's kaiming-normal conv init
  and ``zero_init_last``); protocol-1 results, which have no ``recipe.init``, ran this way.
"""

from __future__ import annotations

POLICIES = ("torch", "timm")


def apply_init(net, policy: str):
    """Initialise ``net`` (any ``nn.Module``) in place by ``policy`` and return it."""
    from torch import nn

    if policy == "timm":
        return net
    if policy != "torch":
        raise ValueError(f"unknown init policy {policy!r}; use one of {', '.join(POLICIES)}")
    norms = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d, nn.InstanceNorm2d,
             nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)
    with_reset = [m for m in net.modules()
                  if callable(getattr(m, "reset_parameters", None)) and any(True for _ in m.parameters(recurse=False))]
    for m in with_reset:
        m.reset_parameters()
    for m in net.modules():
        if isinstance(m, norms):
            if getattr(m, "weight", None) is not None:
                nn.init.ones_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
    return net

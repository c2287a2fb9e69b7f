"""Built-in backbones: timm ResNets with block-level depth access (see odnbench.depthnet).

Input policies: ``cifar`` (default for 28-32 px images, as in the ODN paper) replaces timm's
7x7/stride-2 stem and max-pool with a 3x3 stride-1 conv + BN + ReLU and no pooling;
``imagenet`` keeps timm's stem. A ``width`` such as (16, 32, 64, 128) builds a narrower network
for CPU runs, with the stem and the first block sized to match (timm's plain stem is always 64
wide and ignores ``stem_width``, so the stages are rebuilt with timm's own ``make_blocks``).
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import re
from pathlib import Path

from odnbench import Backbone, hookimpl

NAMED = {
    "resnet18": "timm ResNet-18: 2+2+2+2 BasicBlocks = 8 depth levels",
    "resnet34": "timm ResNet-34: 3+4+6+3 BasicBlocks = 16 depth levels",
    "resnet50": "timm ResNet-50: 3+4+6+3 Bottlenecks = 16 depth levels",
}


FAMILY_PREFIXES = ("resnet", "resnext", "wide_resnet")


@functools.lru_cache(maxsize=1)
def timm_resnet_names() -> frozenset[str]:
    """The model names timm's ``timm/models/resnet.py`` registers (the ``ResNet`` class, whose
    ``layer1..layer4`` a DepthNet is cut from), read from its source text: importing timm (and
    torch) only to refuse a misspelled name took seconds, tens on a cold disk. Falls back to
    ``timm.list_models(module="resnet")`` if timm's layout ever changes."""
    spec = importlib.util.find_spec("timm")
    source = Path(spec.origin).parent / "models" / "resnet.py" if spec and spec.origin else None
    try:
        names = re.findall(r"@register_model\s*\ndef\s+(\w+)\s*\(", source.read_text()) if source else []
    except OSError:
        names = []
    if not names:
        import timm

        names = timm.list_models(module="resnet")
    return frozenset(names)


class TimmResNet(Backbone):
    def __init__(self, name: str, description: str | None = None):
        self.name = name
        self.description = description or f"timm {name}"

    def resolve(self, name: str):
        """Any other timm ResNet by its timm name (resnet26, resnet101, resnet18d, ...)."""
        if name.startswith(FAMILY_PREFIXES) and name in timm_resnet_names():
            return TimmResNet(name)
        return None

    def check_width(self, width):
        if width is not None and len(width) != 4:
            raise ValueError(f"{self.name} takes 4 stage widths (e.g. 16,32,64,128) or full, got {len(width)}")

    def build(self, *, in_chans, num_classes, stem="cifar", width=None):
        import timm
        from timm.models.resnet import ResNet
        from torch import nn

        from odnbench.depthnet import DepthNet

        self.check_width(width)
        kwargs = {"num_classes": num_classes, "in_chans": in_chans, "pretrained": False}
        if width is not None:
            kwargs["channels"] = tuple(width)
        model = timm.create_model(self.name, **kwargs)
        stages = [model.layer1, model.layer2, model.layer3, model.layer4]
        if width is not None and _in_channels(stages[0][0]) != width[0]:
            stages = _rebuild_stages(model, stages, tuple(width))
        stem_width = _in_channels(stages[0][0])
        if stem == "cifar":
            stem_module = nn.Sequential(
                nn.Conv2d(in_chans, stem_width, kernel_size=3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(stem_width),
                nn.ReLU(inplace=True),
            )
        elif stem == "imagenet":
            if width is not None and stem_width != 64:
                stem_module = nn.Sequential(
                    nn.Conv2d(in_chans, stem_width, kernel_size=7, stride=2, padding=3, bias=False),
                    nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
                )
            else:
                stem_module = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
        else:
            raise ValueError(f"unknown stem {stem!r}; use cifar or imagenet")
        blocks = [block for stage in stages for block in stage]
        widths = [_out_channels(b) for b in blocks]
        # In timm's terms (each stage's `channels`): what ctx.stage_widths hands back to build(width=).
        meta = {"width": list(width or inspect.signature(ResNet).parameters["channels"].default)}
        return DepthNet(stem_module, blocks, widths, model.fc, meta, stages=[len(s) for s in stages])


def _in_channels(block) -> int:
    return block.conv1.in_channels


def _out_channels(block) -> int:
    last = getattr(block, "conv3", None) or block.conv2
    return last.out_channels


def _rebuild_stages(model, stages, width):
    """Stages whose first block takes ``width[0]`` channels (timm built them for a 64-wide stem)."""
    from timm.models.resnet import make_blocks

    block_type = type(stages[0][0])
    built, _ = make_blocks((block_type,) * 4, width, tuple(len(s) for s in stages), inplanes=width[0])
    new_stages = [module for _, module in built]
    for i, stage in enumerate(new_stages, 1):
        setattr(model, f"layer{i}", stage)
    model.init_weights()
    return new_stages


@hookimpl
def register_backbones(register):
    for name, description in NAMED.items():
        register(TimmResNet(name, description))

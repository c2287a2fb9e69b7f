"""The stored-model format (odnbench/modelio.py): round trips of every backbone shape a method can
export, and files crafted to make the loader run code or build something else, refused with one line."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from torch import nn

from odnbench import modelio
from odnbench.modelio import ModelFileError, UnstorableModelError

SHAPES = {"cifar": (1, 28, 28), "imagenet": (3, 64, 64)}


@pytest.mark.parametrize("backbone, stem", [("resnet18", "cifar"), ("resnet50", "cifar"), ("resnet18d", "imagenet"),
                                            ("resnet34", "imagenet")])
def test_round_trip_gives_the_same_model(reg, backbone, stem):
    shape = SHAPES[stem]
    net = reg.backbone(backbone).build(in_chans=shape[0], num_classes=10, stem=stem, width=(8, 16, 16, 32)).eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    back = modelio.from_bytes(modelio.to_bytes(net, x)).eval()
    assert type(back) is type(net) and back.widths == net.widths and back.stages == net.stages
    assert list(back.state_dict()) == list(net.state_dict())  # same names, same order
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), net.state_dict().values()))
    assert torch.equal(back(x), net(x))


def test_timm_blocks_beyond_resnets_round_trip():
    """Any class timm defines is library code, allowed: MobileNetV3's blocks (docs/writing-plugins.md)."""
    import timm

    net = timm.create_model("mobilenetv3_small_050", pretrained=False, in_chans=1, num_classes=10).eval()
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    tree, _ = modelio.describe(net)
    assert "timm.models._efficientnet_blocks.InvertedResidual" in json.dumps(tree)
    assert torch.equal(modelio.from_bytes(modelio.to_bytes(net, x)).eval()(x), net(x))


def test_a_pruned_model_keeps_its_shapes(reg):
    from odnbench_plugins.prune import core

    net = reg.backbone("resnet18").build(in_chans=1, num_classes=10, width=(8, 16, 16, 32)).eval()
    example = torch.zeros(1, 1, 28, 28)
    core.prune_by_ratio(net, example, "l2", ratio=0.5)
    core.refresh_widths(net, example)
    back = modelio.from_bytes(modelio.to_bytes(net.eval(), example)).eval()
    assert back.widths == net.widths == [4, 4, 8, 8, 8, 8, 16, 16]
    assert back.stem[0].out_channels == 4 and back.stem[0].weight.shape == (4, 1, 3, 3)
    assert torch.equal(back(example), net(example))


def _crafted(tree: dict, tensors: dict | None = None) -> bytes:
    from safetensors.torch import save

    return save(tensors or {}, metadata={"format": modelio.FORMAT, "version": modelio.FORMAT_VERSION,
                                         "architecture": json.dumps(tree)})


def _crafted_text(architecture: str) -> bytes:
    from safetensors.torch import save

    return save({}, metadata={"format": modelio.FORMAT, "version": modelio.FORMAT_VERSION,
                              "architecture": architecture})


def _node(cls, attrs=None, params=None, children=None):
    return {"class": cls, "attrs": attrs or {}, "params": params or [], "buffers": [], "children": children or []}


@pytest.mark.parametrize("cls", ["os.system", "builtins.eval", "subprocess.Popen", "torch.nn.functional",
                                 "torch.nn.modules.conv.Conv2d", "torch.nn.Conv2d.__init__", "timm.layers.to_2tuple",
                                 "timm.layers.BatchNormAct2d", "timm.nonexistent.Module",
                                 "odnbench.modelio.ModelFileError"])
def test_a_class_outside_the_allowlist_is_refused(cls):
    with pytest.raises(ModelFileError, match=r"names class .* which is not allowed \(allowed: torch.nn layers"):
        modelio.from_bytes(_crafted(_node("torch.nn.Sequential", children=[["0", _node(cls)]])))


@pytest.mark.parametrize("attr", ["__class__", "__dict__", "_forward_hooks", "_modules", "bad-name"])
def test_module_internals_cannot_be_set_from_the_file(attr):
    with pytest.raises(ModelFileError, match="the architecture sets attribute"):
        modelio.from_bytes(_crafted(_node("torch.nn.ReLU", attrs={attr: 1})))


def test_tensors_must_match_the_architecture():
    linear = _node("torch.nn.Linear", attrs={"in_features": 2, "out_features": 1},
                   params=[["weight", {"requires_grad": True}], ["bias", {"requires_grad": True}]])
    with pytest.raises(ModelFileError, match="tensor bias is named by the architecture but missing"):
        modelio.from_bytes(_crafted(linear, {"weight": torch.zeros(1, 2)}))
    with pytest.raises(ModelFileError, match="tensors the architecture does not use \\(extra\\)"):
        modelio.from_bytes(_crafted(linear, {"weight": torch.zeros(1, 2), "bias": torch.zeros(1),
                                             "extra": torch.zeros(3)}))


def test_damaged_or_foreign_files_are_one_line():
    good = modelio.to_bytes(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))
    assert isinstance(modelio.from_bytes(good), nn.Sequential)
    deep = '{"class": "torch.nn.Sequential", "children": [["0", ' * 5000 + '{"class": "torch.nn.ReLU"}' + "]]}" * 5000
    cases = {
        good[:40]: "is not a stored model (truncated, or not an odnbench safetensors file",
        b"": "is not a stored model",
        struct.pack("<Q", 3) + b"{x}": "its header is not JSON",
        _crafted_text(deep): "its architecture is not readable JSON",
    }
    from safetensors.torch import save

    cases[save({"w": torch.zeros(1)})] = "is a safetensors file but not an odnbench model"
    for data, message in cases.items():
        with pytest.raises(ModelFileError, match=message.replace("(", r"\(")) as err:
            modelio.from_bytes(data, "model.safetensors")
        assert "\n" not in str(err.value)


def test_tied_weights_and_hooks_are_refused_or_checked():
    a = nn.Linear(2, 2)
    tied = nn.Sequential(a, nn.ReLU(), nn.Linear(2, 2))
    tied[2].weight = a.weight
    with pytest.raises(UnstorableModelError, match="2.weight and 0.weight are the same tensor"):
        modelio.to_bytes(tied)
    hooked = nn.Sequential(nn.Linear(2, 2))
    hooked.register_forward_hook(lambda m, i, o: o * 2)  # behaviour outside attributes and tensors
    with pytest.raises(UnstorableModelError, match="rebuilt from its stored form it gives different outputs"):
        modelio.to_bytes(hooked, torch.ones(1, 2))


def test_an_attribute_that_is_not_data_is_refused():
    net = nn.Sequential(nn.ReLU())
    net[0].callback = print
    with pytest.raises(UnstorableModelError, match=r"0.callback \(torch.nn.ReLU\) is a builtin_function_or_method"):
        modelio.to_bytes(net)

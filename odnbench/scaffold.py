"""``odnbench new-plugin NAME``: write a ready-to-install plugin package ``odnbench-NAME/``.

The package is one module registered through the ``odnbench`` entry-point group, a README and
a pytest test that runs the plugin through the real harness with :mod:`odnbench.testing`::

    odnbench new-plugin mymethod
    pip install -e ./odnbench-mymethod      # now listed by `odnbench plugins`
    pytest ./odnbench-mymethod              # passes as generated

Every generated plugin works as written (a real method, a real dataset, a real backbone), so
the author starts from something green and changes it.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from odnbench import __version__
from odnbench.errors import OdnbenchError

KINDS = ("method", "dataset", "backbone")
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)*$")

_PYPROJECT = '''\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "odnbench-{name}"
version = "0.1.0"
description = "odnbench {kind} plugin: {name}"
readme = "README.md"
requires-python = ">=3.10"
dependencies = [{dependencies}]

[project.optional-dependencies]
test = ["pytest>=8"]

# The line that makes odnbench find the plugin: entry-point name = module that holds the hooks.
[project.entry-points.odnbench]
{name} = "{module}"

[tool.setuptools]
py-modules = ["{module}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

_METHOD = '''\
"""odnbench method plugin `{name}`: keep the first `blocks` residual blocks of the backbone
and train that shallow network with the shared recipe.

Change ``run`` to do your own thing; keep torch imports inside functions so that
``odnbench --help`` stays fast. Docs: odnbench's docs/writing-plugins.md.
"""

from odnbench import Method, MethodOutput, OdnbenchError, Param, hookimpl


class {cls}(Method):
    name = "{name}"
    description = "Keep the first `blocks` residual blocks (fresh head), train with the recipe"
    params = (
        Param("blocks", int, 2, help="residual blocks to keep (1 = shallowest)"),
    )

    def run(self, ctx):
        if ctx.params["blocks"] < 1:
            raise OdnbenchError(f"{{self.name}}.blocks must be at least 1, got {{ctx.params['blocks']}}")
        net = ctx.build_backbone()  # a fresh DepthNet for this cell's backbone, input policy and width
        k = min(ctx.params["blocks"], net.depth)
        model = net.truncated(k).to(ctx.device)  # stem + blocks 1..k + a new linear head
        fit = ctx.trainer.fit(model, label=self.name)  # recipe's optimiser/schedule, best epoch on validation
        return MethodOutput(model, {{"blocks": k, "best_val": fit.best_val, "epochs": fit.epochs}})


@hookimpl
def register_methods(register):
    register({cls}())
'''

_METHOD_TEST = '''\
"""Runs `{name}` through odnbench's real harness (smoke preset, seconds) and checks the contract."""

pytest_plugins = ["odnbench.testing"]


def test_{ident}_is_ranked(check_method):
    check = check_method("{name}", sets=["{name}.blocks=3"])
    assert check.info["blocks"] == 3
    assert check.model.depth == 3  # the exported model really has 3 blocks
    assert check.row["params"] == check.metrics["params"]  # ranked on the leaderboard


def test_{ident}_rejects_zero_blocks(check_method):
    import pytest

    with pytest.raises(AssertionError, match="blocks must be at least 1"):
        check_method("{name}", sets=["{name}.blocks=0"])
'''

_DATASET = '''\
"""odnbench dataset plugin `{name}`: scikit-learn's 1,797 real 8x8 handwritten digits
(bundled with scikit-learn, so it works offline).

Replace ``load`` with your own data: return normalised float tensors N x C x H x W and int64
labels, with validation carved from the training data using ``seed`` (never from test).
"""

from odnbench import Dataset, hookimpl


class {cls}(Dataset):
    name = "{name}"
    description = "scikit-learn digits: 1,797 real 8x8 handwritten digits, 1,137 train / 300 val / 360 test"
    val_size = 300

    def load(self, data_dir, *, download, seed):
        import torch
        from sklearn.datasets import load_digits

        from odnbench.data import DatasetInfo, Split, Splits, carve_validation

        digits = load_digits()
        x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # N x 1 x 8 x 8 in 0..1
        y = torch.tensor(digits.target, dtype=torch.int64)
        test = torch.arange(len(y)) % 5 == 0  # a fixed test split, the same for every seed
        mean, std = x[~test].mean().item(), x[~test].std().item()  # statistics of the training part only
        x = (x - mean) / std
        train, val = carve_validation(x[~test], y[~test], self.val_size, seed)
        info = DatasetInfo(self.name, channels=1, image_size=8, num_classes=10, mean=(mean,), std=(std,),
                           split_rule="test = every 5th image; val = 300 seeded from the rest")
        return Splits(info, train, val, Split(x[test], y[test]))


@hookimpl
def register_datasets(register):
    register({cls}())
'''

_DATASET_TEST = '''\
"""Loads `{name}`, checks its splits, and ranks odnbench's `full` method on it (smoke preset)."""

pytest_plugins = ["odnbench.testing"]


def test_{ident}_loads_and_ranks(check_dataset):
    check = check_dataset("{name}")
    assert check.sizes == {{"train": 1137, "val": 300, "test": 360}}
    assert check.info.image_size == 8
    assert check.full.metrics["test_examples"] == 256  # the smoke preset tests on 256 images
'''

_BACKBONE = '''\
"""odnbench backbone plugin `{name}`: a plain (non-residual) CNN of 4 stages x 2 conv blocks.

``build`` returns an ``odnbench.depthnet.DepthNet`` (stem -> ordered blocks -> pool -> head)
so every method can cut it after any block. Replace the blocks with your own network.
"""

from odnbench import Backbone, hookimpl


class {cls}(Backbone):
    name = "{name}"
    description = "Plain CNN: 4 stages x 2 conv-BN-ReLU blocks (8 depth levels)"
    default_width = (64, 128, 256, 512)

    def build(self, *, in_chans, num_classes, stem="cifar", width=None):
        from torch import nn

        from odnbench.depthnet import DepthNet

        widths = tuple(width) if width else self.default_width
        if len(widths) != 4:
            raise ValueError(f"{{self.name}}: width needs 4 stage widths, got {{widths}}")
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"{{self.name}}: unknown stem {{stem!r}}; use cifar or imagenet")

        def conv(c_in, c_out, stride):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.ReLU(inplace=True))

        stem_module = conv(in_chans, widths[0], 1 if stem == "cifar" else 2)
        blocks, outs, channels = [], [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(2):
                blocks.append(conv(channels, w, 2 if stage > 0 and i == 0 else 1))  # halve the size per stage
                outs.append(w)
                channels = w
        return DepthNet(stem_module, blocks, outs, nn.Linear(channels, num_classes),
                        {{"stage_blocks": [2, 2, 2, 2], "width": list(widths)}})


@hookimpl
def register_backbones(register):
    register({cls}())
'''

_BACKBONE_TEST = '''\
"""Builds `{name}`, checks its DepthNet, and ranks odnbench's `full` method with it (smoke preset)."""

pytest_plugins = ["odnbench.testing"]


def test_{ident}_builds_and_ranks(check_backbone):
    check = check_backbone("{name}")
    assert check.depth == 8
    assert check.widths == [8, 8, 16, 16, 16, 16, 32, 32]  # the smoke preset's stage widths 8,16,16,32
    assert check.full.metrics["params"] > 0
'''

_README = '''\
# odnbench-{name}

An odnbench {kind} plugin: {summary}

## Install

```bash
pip install -e ./odnbench-{name}
odnbench plugins            # lists "{name}"
odnbench list {kind}s        # lists the {kind} "{name}"
```

## Use

```bash
{usage}
```

## Test

```bash
pytest ./odnbench-{name}
```

The test runs the plugin through odnbench's real harness with the `smoke` preset (a few
seconds on a CPU) using the helpers in `odnbench.testing`.
'''

_USAGE = {
    "method": "odnbench compare --method {name} --method full --preset smoke\n"
              "odnbench compare --method {name} --set {name}.blocks=3 --method full",
    "dataset": "odnbench compare --method full --dataset {name} --preset smoke",
    "backbone": "odnbench profile --backbone {name} --depth 4\n"
                "odnbench compare --method full --backbone {name} --preset smoke",
}
_SUMMARY = {
    "method": "keep the first `blocks` residual blocks of the backbone and train them.",
    "dataset": "scikit-learn's 1,797 real 8x8 handwritten digits.",
    "backbone": "a plain CNN of 4 stages x 2 conv blocks, cut-able after any block.",
}
_TEMPLATES = {"method": (_METHOD, _METHOD_TEST), "dataset": (_DATASET, _DATASET_TEST),
              "backbone": (_BACKBONE, _BACKBONE_TEST)}


def check_name(name: str, kind: str) -> None:
    """One-line errors for names that would not make a valid, unambiguous plugin."""
    if kind not in KINDS:
        raise OdnbenchError(f"unknown plugin kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if not NAME_RE.match(name) or len(name) > 40:
        raise OdnbenchError(f"plugin name {name!r} is not allowed: use lowercase letters, digits and single "
                            "hyphens, starting with a letter (e.g. mymethod, my-method2), at most 40 characters")
    if name.startswith("odnbench"):
        raise OdnbenchError(f"plugin name {name!r}: give the plugin's own name without the 'odnbench' prefix "
                            f"(the package is called odnbench-NAME)")


def create_plugin(name: str, kind: str = "method", directory: Path | str = ".", *,
                  taken: dict[str, str] | None = None) -> Path:
    """Write ``directory/odnbench-NAME/`` and return its path.

    ``taken`` maps names already registered for ``kind`` to the plugin that registered them
    (a new plugin with one of those names would fail to load next to it).
    """
    check_name(name, kind)
    if taken and name in taken:
        raise OdnbenchError(f"{kind} {name!r} already exists (registered by plugin {taken[name]!r}); "
                            "pick another name")
    module = "odnbench_" + name.replace("-", "_")
    if importlib.util.find_spec(module) is not None:
        raise OdnbenchError(f"a Python module {module!r} is already installed; pick another plugin name")
    target = Path(directory) / f"odnbench-{name}"
    if target.exists():
        raise OdnbenchError(f"{target} already exists; remove it or pass another --dir")

    ident = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-")) + kind.capitalize()
    deps = [f'"odnbench>={__version__}"'] + (['"scikit-learn"'] if kind == "dataset" else [])
    fields = {"name": name, "kind": kind, "module": module, "ident": ident, "cls": cls,
              "dependencies": ", ".join(deps), "summary": _SUMMARY[kind]}
    fields["usage"] = _USAGE[kind].format(**fields)
    source, test = _TEMPLATES[kind]
    files = {
        "pyproject.toml": _PYPROJECT.format(**fields),
        f"{module}.py": source.format(**fields),
        f"tests/test_{ident}.py": test.format(**fields),
        "README.md": _README.format(**fields),
    }
    for rel, text in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return target

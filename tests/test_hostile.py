"""odnbench used as a hostile user, a broken plugin or a damaged disk would use it (issue 12).

One parametrised test, ``test_hostile``, runs every case of the issue (58 cases: the issue's 37
failures as 43 cases, a few split or added, e.g. NaN, Infinity and -Infinity separately, and 15
representative ones that already passed, marked ``already_passed``) against a private copy of one real finished cell
(``full``, smoke preset). Each case asserts its exact outcome: the exit code, the one line that
says what was wrong (and what is allowed), the failed-cell record where a cell ran, and, after
every case, that no finished result was lost or changed (file bytes compared).

``test_planted_model_never_runs`` plants a pickle that writes a marker file when unpickled and runs
compare (resume and a dependency load), leaderboard, publish and verify over it: the marker never
appears, while ``torch.load(weights_only=False)`` on the same file does create it (the payload is live).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _errors import says
from _plugin_helpers import install_plugin
from click.testing import CliRunner

from odnbench.store import LOCK_DIR, MODEL_FILE, RESULT_FILE, ResultStore, result_digest, write_json

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "odnbench-oneshot-odn"

# ---------------------------------------------------------------------------------------- the world


@pytest.fixture(scope="module")
def finished(smoke_full_results, tmp_path_factory) -> Path:
    """One real finished cell: `full`, mnist5k, smoke preset, seed 0 (from conftest's shared grid)."""
    from conftest import copy_cells

    return copy_cells(smoke_full_results, tmp_path_factory.mktemp("finished") / "results", seeds=(0,))


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def errors(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error: ")]

    def one_error(self) -> str:
        """The single ``Error:`` line (the CLI's one-line message), checked to be alone."""
        assert len(self.errors) == 1, self.stderr
        return self.errors[0]


@dataclass
class World:
    """A private copy of the finished results, and the ways a case acts on it."""

    root: Path
    results: Path
    cell: Path
    monkeypatch: pytest.MonkeyPatch
    request: pytest.FixtureRequest
    frozen: dict[Path, bytes] = field(default_factory=dict)

    def freeze(self) -> None:
        """What must stay as it is from now on: every file of the results folder's cells."""
        self.frozen = {p: p.read_bytes() for p in self.results.rglob("*") if p.is_file() and p.parent != self.results}

    def intact(self) -> None:
        for path, data in self.frozen.items():
            assert path.is_file(), f"{path} was lost"
            assert path.read_bytes() == data, f"{path} was changed"

    def cli(self, *args: str) -> Outcome:
        from odnbench.cli import cli

        res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
        return Outcome(res.exit_code, res.stdout, res.stderr)

    def compare(self, *args: str, results: Path | None = None) -> Outcome:
        (self.root / "data").mkdir(exist_ok=True)  # a --data-dir must exist (it is never created)
        return self.cli("compare", "--preset", "smoke", "--results", str(results or self.results), "--data-dir",
                        str(self.root / "data"), "--no-download", "-q", *args)

    def verify(self, *args: str) -> Outcome:
        (self.root / "data").mkdir(exist_ok=True)
        return self.cli("leaderboard", "verify", "--results", str(self.results), "--data-dir", str(self.root / "data"),
                        "--no-download", *args)

    def stored(self, method: str) -> dict:
        [f] = self.results.glob(f"{method}-*/{RESULT_FILE}")
        return json.loads(f.read_text())

    def folders(self) -> set[str]:
        return {p.name for p in self.results.iterdir() if p.is_dir() and p.name != LOCK_DIR}

    def edit(self, change, restamp: bool = False) -> dict:
        """Edit the finished result.json by hand; ``restamp``: also recompute its digest (a thorough tamperer)."""
        f = self.cell / RESULT_FILE
        d = json.loads(f.read_text())
        change(d)
        if restamp:
            d["files"] = ResultStore(self.results).checksums(self.cell)
            d["digest"] = result_digest(d)
        write_json(f, d)
        return d


@pytest.fixture
def world(finished, tmp_path, monkeypatch, request) -> World:
    results = Path(shutil.copytree(finished, tmp_path / "results"))
    [cell] = ResultStore(results).folders()
    w = World(tmp_path, results, cell, monkeypatch, request)
    w.freeze()
    return w


def line_of(text: str, needle: str) -> str:
    found = [line for line in text.splitlines() if needle in line]
    assert found, f"no line with {needle!r} in:\n{text}"
    return found[0]


# -------------------------------------------------------------------------------------- plugins

HOSTILE_PLUGIN = '''
import math
import sys

import torch
import torch.nn.functional as F
from torch import nn

from odnbench import Dataset, Method, MethodOutput, Param, hookimpl


class WrongOutputs(Method):
    name = "wrongout"
    description = "a head with 3 outputs on a 10-class dataset"

    def run(self, ctx):
        net = ctx.build_backbone()
        net.head = nn.Linear(net.head.in_features, 3)
        return MethodOutput(net)


class NanWeights(Method):
    name = "nanweights"
    description = "NaN in the head's weights"

    def run(self, ctx):
        net = ctx.build_backbone()
        with torch.no_grad():
            net.head.weight[0, 0] = math.nan
        return MethodOutput(net)


class NanLayer(nn.Module):
    def forward(self, x):
        return x * math.nan


class NanOutputs(Method):
    name = "nanout"
    description = "finite weights, NaN outputs"

    def run(self, ctx):
        return MethodOutput(nn.Sequential(ctx.build_backbone(), NanLayer()))


class NanLoss(Method):
    name = "nanloss"
    description = "a loss that turns NaN"

    def run(self, ctx):
        net = ctx.build_backbone()
        ctx.trainer.fit(net, label="nanloss", loss_fn=lambda m, x, y: F.cross_entropy(m(x), y) * math.nan)
        return MethodOutput(net)


class NonFiniteInfo(Method):
    name = "nonfinite-info"
    description = "a finite model, non-finite numbers in its info"
    params = (Param("value", str, "nan", choices=("nan", "inf", "-inf")),)

    def run(self, ctx):
        net = ctx.build_backbone().truncated(1)
        return MethodOutput(net, {"score": float(ctx.params["value"]), "curve": [1.0, float(ctx.params["value"])]})


class Quitter(Method):
    name = "quitter"
    description = "calls sys.exit"

    def run(self, ctx):
        sys.exit(3)


class Marker(nn.Identity):
    """A plugin's own layer: code a stored model cannot carry."""


class OwnLayer(Method):
    name = "ownlayer"
    description = "exports a model holding the plugin's own class"

    def run(self, ctx):
        return MethodOutput(nn.Sequential(ctx.build_backbone().truncated(1), Marker()))


class Untrained(Method):
    name = "untrained"
    description = "a plain backbone, untrained (cheap)"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().truncated(2))


class BadLabels(Dataset):
    name = "badlabels"
    description = "labels 0..12 for 10 classes"

    def load(self, data_dir, *, download, seed):
        from odnbench.data import DatasetInfo, Split, Splits

        g = torch.Generator().manual_seed(seed)
        def split(n):
            return Split(torch.randn(n, 1, 28, 28, generator=g), torch.arange(n) % 13)
        info = DatasetInfo("badlabels", 1, 28, 10, (0.0,), (1.0,))
        return Splits(info, split(64), split(32), split(32))


@hookimpl
def register_methods(register):
    for m in (WrongOutputs, NanWeights, NanOutputs, NanLoss, NonFiniteInfo, Quitter, OwnLayer, Untrained):
        register(m())


@hookimpl
def register_datasets(register):
    register(BadLabels())
'''


def hostile(w: World) -> None:
    install_plugin(w.monkeypatch, w.root, "hostile", HOSTILE_PLUGIN)


def install_dist(w: World, dist: str, ep_name: str, source: str) -> Path:
    """A real distribution on sys.path (a module + a .dist-info with its entry point), as pip leaves it."""
    module = dist.replace("-", "_")
    site = w.root / "site"
    info = site / f"{module}-0.1.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[odnbench]\n{ep_name} = {module}\n")
    w.monkeypatch.syspath_prepend(str(site))
    w.monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", f"odnbench,{dist}")
    from odnbench import registry

    w.monkeypatch.setattr(registry, "_cached", None)
    return site


EVIL_ODN = '''
from odnbench import Method, MethodOutput, hookimpl


class FakeODN(Method):
    name = "odn"
    description = "not ODN at all"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().truncated(1))


@hookimpl
def register_methods(register):
    register(FakeODN())
'''


def main_subprocess(w: World, *args: str, site: Path | None = None) -> Outcome:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site) if site else "", str(REPO / "tests")]))}
    done = subprocess.run([sys.executable, "-c", "from odnbench.cli import main; main()", *args], cwd=w.root,
                          capture_output=True, text=True, env=env, timeout=300)
    return Outcome(done.returncode, done.stdout, done.stderr)


# ------------------------------------------------------------------------------------------ cases

CASES: dict[str, callable] = {}


def case(name: str, *, already_passed: bool = False):
    """Register a case. ``already_passed``: handled well before issue 12 (kept so it stays so)."""
    def add(fn):
        fn.already_passed = already_passed
        CASES[name] = fn
        return fn
    return add


# --- security -------------------------------------------------------------------------------------

def _plant_pickle(path: Path, marker: Path) -> None:
    import torch

    torch.save({"model": Payload(str(marker))}, path)


class Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious model.pt can do."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@case("security: a pickle planted as model.safetensors is refused by verify, never run")
def _(w):
    marker = w.root / "PWNED"
    _plant_pickle(w.cell / MODEL_FILE, marker)
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    assert line_of(out.stdout, w.cell.name) == (f"PROBLEM  {w.cell.name}: {MODEL_FILE} changed since its result was "
                                                f"written (sha256 {_sha(w.cell / MODEL_FILE)[:12]}…, recorded "
                                                f"{w.stored('full')['files'][MODEL_FILE]['sha256'][:12]}…); it is "
                                                "not the model that was measured")
    w.edit(lambda d: None, restamp=True)  # even with the checksum recomputed, it is never unpickled
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    assert (f"PROBLEM  {w.cell.name}: could not re-evaluate: {MODEL_FILE} is a pickled PyTorch file (the odnbench 0.1 "
            "model format); it is never loaded, because unpickling can run any code") in out.stdout
    assert not marker.exists()


@case("security: a pickle planted as the full model is refused when prune loads it (compare --method prune)")
def _(w):
    marker = w.root / "PWNED"
    _plant_pickle(w.cell / MODEL_FILE, marker)
    w.freeze()
    out = w.compare("--method", "prune")
    assert out.exit_code == 1 and not marker.exists()
    error = w.stored("prune")["error"]
    assert error.startswith(f"ModelFileError: cannot use the 'full' model in {w.cell.name}: {MODEL_FILE} changed "
                            "since its result was written")
    assert f"FAILED prune mnist5k seed 0: {error}" in out.stderr


@case("security: env.device = cpu/../../../x cannot make publish write outside --out")
def _(w):
    w.edit(lambda d: d["env"].update(device="cpu/../../../x"))
    w.freeze()
    out_dir = w.root / "pub" / "deep" / "out"
    before = {p for p in w.root.rglob("*") if p.is_file()}
    out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert out.exit_code == 0, out.stderr
    written = {p for p in w.root.rglob("*") if p.is_file()} - before
    assert written and all(p.resolve().is_relative_to(out_dir.resolve()) for p in written)
    [board] = [p for p in out_dir.iterdir() if p.is_dir()]
    assert board.name.startswith("mnist5k-resnet18-smoke-cpu_.._.._.._x-") and (board / "README.md").is_file()


@case("security: a third-party entry point named 'odn' is refused, never silently replacing the built-in")
def _(w):
    install_dist(w, "odnbench-evil", "odn", EVIL_ODN)
    out = w.cli("list", "methods")
    assert out.exit_code == 0 and "Error" not in out.stderr
    odn = [line for line in out.stdout.splitlines() if line.startswith("odn ")]
    assert odn and "not ODN at all" not in odn[0]  # the built-in is the one loaded
    [warning] = out.stderr.strip().splitlines()
    assert "'odn'" in warning and "odnbench-evil" in warning and "built-in" in warning


@case("security: two third-party entry points with one name are refused, naming both")
def _(w):
    install_dist(w, "odnbench-evil", "evilplug", EVIL_ODN.replace('"odn"', '"evil"'))
    install_dist(w, "odnbench-evil-two", "evilplug", EVIL_ODN.replace('"odn"', '"evil"'))
    w.monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "odnbench,odnbench-evil,odnbench-evil-two")
    out = w.compare("--method", "evil")
    assert out.exit_code == 2 and w.folders() == {w.cell.name}
    error = out.one_error()
    assert "plugin name 'evilplug'" in error and "odnbench-evil" in error and "odnbench-evil-two" in error


@case("security: two third-party plugins registering one method name are refused (naming both)")
def _(w):
    install_plugin(w.monkeypatch, w.root, "evil2", EVIL_ODN.replace('"odn"', '"evil"'))
    install_plugin(w.monkeypatch, w.root, "evil3", EVIL_ODN.replace('"odn"', '"evil"'))
    out = w.compare("--method", "evil")
    assert out.exit_code == 2 and w.folders() == {w.cell.name}
    error = out.one_error()
    assert "method 'evil' is registered twice" in error and "'evil2'" in error and "'evil3'" in error


@case("security: a third-party plugin registering a built-in name never replaces the built-in")
def _(w):
    install_plugin(w.monkeypatch, w.root, "evil2", EVIL_ODN)
    out = w.cli("list", "methods")
    assert out.exit_code == 0 and "Error" not in out.stderr
    odn = [line for line in out.stdout.splitlines() if line.startswith("odn ")]
    assert odn and "not ODN at all" not in odn[0]
    [warning] = out.stderr.strip().splitlines()
    assert "'odn'" in warning and "'evil2'" in warning and "odnbench" in warning


@case("security: a third-party model re-evaluates after its plugin is uninstalled (example oneshot-odn)")
def _(w):
    from odnbench import harness, plan
    from odnbench.progress import Progress
    from odnbench.testing import registry_with

    w.monkeypatch.syspath_prepend(str(EXAMPLE))
    import importlib

    reg = registry_with(importlib.import_module("odnbench_oneshot_odn"))
    grid = plan.plan_grid(reg, ["oneshot-odn"], ["mnist5k"], ["resnet18"], [0], "smoke")
    report = harness.run_grid(reg, grid, w.results, data_dir=w.root, download=False, progress=Progress(quiet=True))
    assert report.skipped == 1 and not report.failed  # full resumed, oneshot-odn trained
    w.freeze()
    # "Uninstalled": a fresh process where the package cannot be imported and no entry point names it.
    gone = main_subprocess(w, "leaderboard", "verify", "--results", str(w.results), "--no-download")
    assert gone.exit_code == 0, gone.stdout + gone.stderr
    assert line_of(gone.stdout, "oneshot-odn-").startswith("ok       oneshot-odn-mnist5k-resnet18-s0-")
    assert "2 ok (2 re-evaluated, 0 schema only), 0 with problems" in gone.stdout
    probe = subprocess.run([sys.executable, "-c", "import odnbench_oneshot_odn"], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": ""}, cwd=w.root)
    assert probe.returncode == 1 and "ModuleNotFoundError" in probe.stderr


@case("security: a model holding a plugin's own class is refused at save time, naming the class")
def _(w):
    hostile(w)
    out = w.compare("--method", "ownlayer")
    assert out.exit_code == 1
    assert w.stored("ownlayer")["error"] == (
        "UnstorableModelError: cannot store the model: 1 is a odnbench_testplugin_hostile.Marker, which is not "
        "allowed in a stored model (allowed: torch.nn layers, timm's layers and model blocks, and "
        "odnbench's DepthNet and EarlyExitNet); export the model built from those, so that it reloads without your plugin's code")
    assert not list(w.results.glob("ownlayer-*/*.safetensors"))


@case("security: an odnbench 0.1 result (pickled model.pt) is refused with one line, never loaded")
def _(w):
    marker = w.root / "PWNED"
    _make_legacy(w, marker)
    out = w.verify()
    assert out.exit_code == 1 and not marker.exists()
    assert line_of(out.stdout, w.cell.name) == (
        f"PROBLEM  {w.cell.name}: model.pt is a pickled PyTorch file (the odnbench 0.1 model format); it is never "
        "loaded, because unpickling can run any code. Rerun the cell to store its model as model.safetensors")


def _make_legacy(w: World, marker: Path) -> None:
    (w.cell / MODEL_FILE).unlink()
    _plant_pickle(w.cell / "model.pt", marker)

    def to_v2(d):
        d.update(schema=2, model_file="model.pt")
        for k in ("files", "digest"):
            d.pop(k)
        d["data"].pop("fingerprint")

    w.edit(to_v2)
    w.freeze()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- integrity -----------------------------------------------------------------------------------

def _timing_case(field_path: str, what: str):
    def run(w):
        def shrink(d):
            parent = d["metrics"][field_path[0]]
            parent[field_path[1]] = parent[field_path[1]] / 1000 if what == "latency p50" else parent[field_path[1]] * 1000
            if what == "latency p50":
                d["metrics"]["latency_ms"]["p90"] = d["metrics"]["latency_ms"]["p50"]
        w.edit(shrink, restamp=True)  # a thorough tamperer recomputes the digest: only re-timing tells
        w.freeze()
        out = w.verify()
        assert out.exit_code == 1
        line = line_of(out.stdout, w.cell.name)
        assert line.startswith(f"PROBLEM  {w.cell.name}: {what} re-timed ")
        assert line.endswith(" on cpu: the stored value is more than 20x better than anything re-measured, which no "
                             "machine difference explains (edited?)")
    return run


case("integrity: verify catches an edited latency (re-timed; the ratio is a problem only when absurd)")(
    _timing_case(("latency_ms", "p50"), "latency p50"))
case("integrity: verify catches an edited throughput")(_timing_case(("throughput", "images_per_s"), "throughput"))


@case("integrity: verify catches an edited size_mib (re-measured)")
def _(w):
    w.edit(lambda d: d["metrics"].update(size_mib=d["metrics"]["size_mib"] * 2), restamp=True)
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    size = w.stored("full")["metrics"]["size_mib"]
    assert line_of(out.stdout, w.cell.name) == (f"PROBLEM  {w.cell.name}: metrics.size_mib stored {size:.6f} but "
                                                f"re-measured {size / 2:.6f}")


def _digest_case(change, label):
    def run(w):
        w.edit(change)
        w.freeze()
        out = w.verify()
        assert out.exit_code == 1
        assert line_of(out.stdout, w.cell.name) == (f"PROBLEM  {w.cell.name}: result.json was edited after it was "
                                                    "written (its digest does not match its content)")
        assert line_of(out.stdout, "note: not re-measurable").startswith("note: not re-measurable: cost (epochs, ")
    return run


case("integrity: verify catches an edited cost (by the digest; cost cannot be re-measured and says so)")(
    _digest_case(lambda d: d["cost"].update(train_seconds=0.001, epochs=0), "cost"))
case("integrity: verify catches an edited method_info (by the digest)")(
    _digest_case(lambda d: d["method_info"].update(best_val=99.9), "method_info"))


@case("integrity: an ok result whose model was deleted fails verify even with top-1 edited to 99.9")
def _(w):
    (w.cell / MODEL_FILE).unlink()
    w.edit(lambda d: d["metrics"].update(top1=99.9))
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    # a folder without any model file is checked as records published without models (issue 33): the
    # digest still shows the edit
    assert line_of(out.stdout, w.cell.name) == (
        f"PROBLEM  {w.cell.name}: result.json was edited after it was written (its digest does not match its content)")
    assert "no model was re-measured" in out.stdout
    assert "0 ok (0 re-evaluated, 0 schema only), 1 with problems" in out.stdout


def _failed_cell_case(method: str, error: str):
    def run(w):
        hostile(w)
        out = w.compare("--method", method)
        assert out.exit_code == 1
        stored = w.stored(method)
        assert stored["status"] == "failed" and stored["error"] == error
        assert stored["metrics"] is None and not list(w.results.glob(f"{method}-*/*.safetensors"))
        assert f"FAILED {method} mnist5k seed 0: {error}" in out.stderr
    return run


case("integrity: a model with the wrong number of outputs fails its cell")(_failed_cell_case(
    "wrongout", "PluginError: method 'wrongout' (plugin 'hostile') exported a model whose output is (8, 3) for 8 "
                "images; expected 8 x 10 (one logit per class of mnist5k)"))
case("integrity: a model with NaN weights fails its cell")(_failed_cell_case(
    "nanweights", "DivergedError: method 'nanweights' (plugin 'hostile') exported a model with NaN or infinite "
                  "values in head.weight"))
case("integrity: a model with NaN outputs fails its cell")(_failed_cell_case(
    "nanout", "DivergedError: method 'nanout' (plugin 'hostile') exported a model whose outputs are NaN or infinite"))
case("integrity: a NaN loss ends training as 'diverged at epoch N'")(_failed_cell_case(
    "nanloss", "DivergedError: training diverged at epoch 1 (nanloss epoch 1/1): the loss is nan; lower the learning "
               "rate (recipe.lr=0.05) or check the data"))


@case("integrity: a learning rate that would blow up training is refused at plan time (recipe.lr=1e6; issue 23)")
def _(w):
    # Issue 12 let it run and fail as diverged; issue 23 bounds recipe.lr (a diverging loss is still
    # a failed cell: see the nanloss case).
    out = w.compare("--method", "full", "--set", "recipe.lr=1e6")
    assert out.exit_code == 2
    assert says(out.one_error(), "recipe.lr=1000000", "0 < recipe.lr <= 10")
    assert w.folders() == {w.cell.name}


def _nonfinite_info_case(value: str):
    def run(w):
        hostile(w)
        out = w.compare("--method", "nonfinite-info", "--set", f"nonfinite-info.value={value}")
        assert out.exit_code == 0, out.stderr
        [f] = w.results.glob(f"nonfinite-info-*/{RESULT_FILE}")

        def refuse(name):
            raise AssertionError(f"result.json holds {name}")

        stored = json.loads(f.read_text(), parse_constant=refuse)  # strict JSON
        assert stored["status"] == "ok" and stored["method_info"] == {"score": None, "curve": [1.0, None]}
        assert ("warning: method 'nonfinite-info' (plugin 'hostile') reported non-finite numbers, stored as null: "
                "score, curve[1]") in out.stderr
    return run


case("integrity: NaN in a method's info is stored as null (result.json stays strict JSON)")(_nonfinite_info_case("nan"))
case("integrity: Infinity in a method's info is stored as null")(_nonfinite_info_case("inf"))
case("integrity: -Infinity in a method's info is stored as null")(_nonfinite_info_case("-inf"))


@case("integrity: stale .tmp files are listed by verify and removed on resume")
def _(w):
    old = time.time() - 3600
    stale = [w.cell / ".result.json.abc123.tmp", w.results / ".leaderboard.md.def456.tmp"]
    for p in stale:
        p.write_text("half a write")
        os.utime(p, (old, old))
    fresh = w.cell / ".model.safetensors.live.tmp"  # a write in progress elsewhere: never touched
    fresh.write_text("being written")
    w.freeze()
    out = w.verify()
    assert out.exit_code == 0, out.stdout
    line = line_of(out.stdout, w.cell.name)
    assert "stale temporary file .result.json.abc123.tmp (left by an interrupted write; safe to delete)" in line
    assert ("note: stale temporary file .leaderboard.md.def456.tmp (left by an interrupted write; safe to delete)"
            in out.stdout)
    for p in stale:
        w.frozen.pop(p, None)
    out = w.cli("compare", "--method", "full", "--preset", "smoke", "--results", str(w.results), "--no-download")
    assert out.exit_code == 0
    assert not any(p.exists() for p in stale) and fresh.exists()
    assert f"removed .result.json.abc123.tmp, left in {w.cell.name} by an interrupted write" in out.stderr


@case("integrity: a truncated result.json is set aside and its cell rerun, not a JSONDecodeError")
def _(w):
    f = w.cell / RESULT_FILE
    truncated = f.read_bytes()[:200]
    f.write_bytes(truncated)
    w.frozen = {}  # this cell's result is what the damage destroyed
    out = w.compare("--method", "full")
    assert out.exit_code == 0, out.stderr
    assert (f"warning: {f} is not a readable result (JSONDecodeError: ") in out.stderr
    assert line_of(out.stderr, "warning:").endswith("; moved it to result.json.corrupt-1 and running the cell again")
    assert (w.cell / "result.json.corrupt-1").read_bytes() == truncated
    assert w.stored("full")["status"] == "ok"
    out = w.cli("leaderboard", "--results", str(w.results))  # and the boards read the rerun result
    assert out.exit_code == 0 and "| full |" in out.stdout


# --- bad input -------------------------------------------------------------------------------------

def _plan_error_case(sets: list[str], facts: tuple[str, ...], methods=("full",)):
    def run(w):
        args = [a for m in methods for a in ("--method", m)] + [a for s in sets for a in ("--set", s)]
        out = w.compare(*args)
        assert out.exit_code == 2 and says(out.one_error(), *facts)
        assert w.folders() == {w.cell.name}  # planned only: nothing ran, nothing was written
    return run


for _sets, _facts in [
    (["recipe.epochs=0"], ("recipe.epochs=0", "1 <= recipe.epochs <= 100000")),
    (["recipe.epochs=-1"], ("recipe.epochs=-1", "1 <= recipe.epochs <= 100000")),
    (["recipe.lr=0"], ("recipe.lr=0", "0 < recipe.lr <= 10")),
    (["recipe.lr=nan"], ("recipe.lr=nan", "finite", "0 < recipe.lr <= 10")),
    (["recipe.batch_size=-1"], ("recipe.batch_size=-1", "1 <= recipe.batch_size <= 65536")),
    (["recipe.batch_size=0"], ("recipe.batch_size=0", "1 <= recipe.batch_size <= 65536")),
]:
    case(f"bad input: --set {_sets[0]} is refused at plan time")(_plan_error_case(_sets, _facts))
case("bad input: odn.target=150 is refused at plan time")(_plan_error_case(
    ["odn.target=150"], ("odn.target=150", "0 < odn.target <= 100", "none"), ("odn",)))


def _damaged_mnist(w: World, name: str, damage) -> Path:
    shared = w.request.getfixturevalue("shared_data")
    raw = w.root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for f in (shared / "MNIST" / "raw").iterdir():
        if f.name == name:
            data = bytearray(f.read_bytes())
            (raw / f.name).write_bytes(bytes(damage(data)))
        else:
            (raw / f.name).symlink_to(f)
    return w.root / "mnist"


def _mnist_case(name: str, damage, *facts: str):
    def run(w):
        data_dir = _damaged_mnist(w, name, damage)
        out = w.cli("compare", "--method", "full", "--dataset", "mnist", "--preset", "smoke", "--results",
                    str(w.results), "--data-dir", str(data_dir), "--no-download", "-q")
        assert out.exit_code == 1
        [f] = w.results.glob(f"full-mnist-*/{RESULT_FILE}")
        stored = json.loads(f.read_text())
        md5 = hashlib.md5((data_dir / "MNIST" / "raw" / name).read_bytes()).hexdigest()
        error = stored["error"]
        assert error.startswith("DataError: mnist: ") and "\n" not in error
        missing = [fact for fact in facts if fact.format(root=data_dir, md5=md5) not in error]
        assert not missing, f"{error!r} does not name {missing}"
        assert "traceback" not in stored  # the data's fault, not the method's
    return run


def _flip(data: bytearray) -> bytearray:
    data[5000] ^= 0xFF  # one pixel of one test image
    return data


def _label(data: bytearray) -> bytearray:
    data[8 + 17] = 200  # the 18th test label: 200 of 10 classes
    return data


case("bad input: a truncated MNIST file is named as truncated, not 'files not found'")(_mnist_case(
    "t10k-images-idx3-ubyte", lambda d: d[:1000],
    "MNIST/raw/t10k-images-idx3-ubyte", "truncated", "1,000 of 7,840,016 bytes", "{root}", "--download"))
case("bad input: flipped pixel bytes in an MNIST file are noticed (md5)")(_mnist_case(
    "t10k-images-idx3-ubyte", _flip,
    "MNIST/raw/t10k-images-idx3-ubyte", "corrupt", "md5 {md5}", "2646ac647ad5339dbf082846283269ea", "{root}"))
case("bad input: a corrupt MNIST header is one line, not an AssertionError blamed on the method")(_mnist_case(
    "t10k-labels-idx1-ubyte", lambda d: bytearray(4) + d[4:],
    "MNIST/raw/t10k-labels-idx1-ubyte", "corrupt header", "magic 0x00000000", "magic 0x00000801", "{root}"))
case("bad input: an out-of-range MNIST label is noticed (md5), not an IndexError blamed on the method")(_mnist_case(
    "t10k-labels-idx1-ubyte", _label,
    "MNIST/raw/t10k-labels-idx1-ubyte", "corrupt", "md5 {md5}", "27ae3e4e09519cfbb04c329615203637", "{root}"))


@case("bad input: out-of-range labels from any dataset plugin are one line naming the dataset")
def _(w):
    hostile(w)
    out = w.compare("--method", "untrained", "--dataset", "badlabels")
    assert out.exit_code == 1
    stored = w.stored("untrained")
    assert stored["error"].startswith("DataError: ") and "\n" not in stored["error"]
    assert all(fact in stored["error"] for fact in ("'badlabels'", "train labels", "0..12", "0..9", "10 classes"))
    assert "traceback" not in stored


@case("bad input: the offline download error is one line")
def _(w):
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    w.monkeypatch.setattr(urllib.request, "urlopen", offline)
    (w.root / "empty").mkdir(exist_ok=True)
    out = w.cli("compare", "--method", "full", "--dataset", "fashion-mnist", "--preset", "smoke", "--results",
                str(w.results), "--data-dir", str(w.root / "empty"), "--download", "-q")
    assert out.exit_code == 1
    error = json.loads(next(w.results.glob(f"full-fashion-mnist-*/{RESULT_FILE}")).read_text())["error"]
    assert error.startswith(f"DataNotFoundError: fashion-mnist: not found under {w.root / 'empty'} and the download "
                            "failed (RuntimeError: Error downloading train-images-idx3-ubyte.gz: Tried ")
    assert "Temporary failure in name resolution" in error and error.endswith(
        "Offline? Copy torchvision's files there, pass --data-dir, or use the offline dataset mnist5k.")
    assert "\n" not in error
    assert "Downloading" not in out.stdout and "Failed to download" not in out.stdout  # torchvision's chatter
    assert len([line for line in out.stderr.splitlines() if "FAILED" in line]) == 1


def _results_case(make):
    def run(w):
        target, expected = make(w)
        out = w.compare("--method", "full", results=target)
        assert out.exit_code == 2 and says(out.one_error(), *expected)
    return run


def _results_file(w):
    f = w.root / "results.txt"
    f.write_text("not a folder")
    w.frozen[f] = f.read_bytes()
    return f, (f"--results {f}", "is a file, not a folder")


def _results_unwritable(w):
    if os.geteuid() == 0:  # root writes through permissions; sysfs refuses everyone
        target = Path("/sys/odnbench-results")
        return target, (f"--results {target}", "not writable", "Operation not permitted")
    locked = w.root / "locked"
    locked.mkdir(mode=0o500)
    target = locked / "results"
    return target, (f"--results {target}", "not writable", "Permission denied")


def _results_too_long(w):
    target = w.root / ("r" * 300)
    shown = str(target)[:60]
    return target, (f"--results {shown}…", f"{'r' * 24}…", "300 bytes", "255")


case("bad input: --results that is a file is one line, before any training")(_results_case(_results_file))
case("bad input: --results that is not writable is one line, before any training")(_results_case(_results_unwritable))
case("bad input: --results with too long a name is one line, before any training")(_results_case(_results_too_long))


@case("bad input: non-UTF-8 bytes in a publish path are one line, before anything is written")
def _(w):
    out_dir = Path(os.fsdecode(bytes(w.root) + b"/pages-\xff"))
    out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert out.exit_code == 2
    assert says(out.one_error(), f"--out {w.root}/pages-\\xff", "not valid UTF-8", "0xff",
                f"position {len(str(w.root)) + 7}")
    assert not os.path.exists(out_dir)


@case("bad input: a method calling sys.exit() is a failed cell and the grid goes on")
def _(w):
    hostile(w)
    out = w.compare("--method", "quitter", "--method", "untrained")
    assert out.exit_code == 1
    stored = w.stored("quitter")
    assert stored["status"] == "failed" and stored["error"] == (
        "method 'quitter' (plugin 'hostile') called sys.exit(3); a method must return a MethodOutput or raise an "
        "exception")
    assert w.stored("untrained")["status"] == "ok"  # the next cell ran
    assert "1 ok (0 resumed), 1 failed" in out.stdout


@case("bad input: --help and list still work with colliding plugins installed")
def _(w):
    install_dist(w, "odnbench-evil", "evilplug", EVIL_ODN.replace('"odn"', '"evil"'))
    site = install_dist(w, "odnbench-evil-two", "evilplug", EVIL_ODN.replace('"odn"', '"evil"'))
    w.monkeypatch.setenv("ODNBENCH_LOAD_PLUGINS", "odnbench,odnbench-evil,odnbench-evil-two")
    facts = ("plugin name 'evilplug'", "odnbench-evil, odnbench-evil-two", "ODNBENCH_LOAD_PLUGINS")
    helped = main_subprocess(w, "--help", site=site)
    assert helped.exit_code == 0 and "Usage: odnbench" in helped.stdout and says(helped.one_error(), *facts)
    listed = main_subprocess(w, "list", "methods", site=site)
    assert listed.exit_code == 0 and says(listed.one_error(), *facts)
    assert [row.split()[0] for row in listed.stdout.splitlines()] == ["autogrow", "blockdrop", "early-exit", "full", "kd",
                                                                       "odn", "oracle", "prune", "scratch", "slim", "truncate"]


# --- representative cases that were already handled well ------------------------------------------

for _args, _facts in [
    (["--method", "odm"], ("unknown method 'odm'", "Did you mean: odn?", "blockdrop, early-exit, full, kd, odn, oracle")),
    (["--method", "full", "--dataset", "mnist6k"], ("unknown dataset 'mnist6k'", "mnist5k", "cifar10, emnist")),
    (["--method", "full", "--set", "odn.target"], ("'odn.target'", "METHOD.PARAM=VALUE", "recipe.PARAM=VALUE")),
    (["--method", "full", "--set", "recipe.epochs=abc"], ("recipe.epochs='abc'", "int")),
    (["--method", "full", "--set", "recipe.epoch=3"], ("recipe.epoch=3", "'epoch'", "Did you mean: epochs?",
                                                       ", ".join(sorted(__import__("odnbench.recipes").recipes.recipe_params())))),
    (["--method", "prune", "--set", "prune.ratio=1.5"], ("prune.ratio=1.5", "0 < prune.ratio < 1")),
    (["--method", "odn", "--set", "odn.target_mode=fixed"], ("odn.target_mode=fixed", "odn.target",
                                                             "odn.target_mode=relative")),
]:
    def _run(w, args=_args, facts=_facts):
        out = w.compare(*args)
        assert out.exit_code == 2 and says(out.one_error(), *facts)
        assert w.folders() == {w.cell.name}
    case(f"already handled: compare {' '.join(_args)} is one line, exit 2", already_passed=True)(_run)


@case("already handled: an unknown preset is one line, exit 2", already_passed=True)
def _(w):
    out = w.cli("compare", "--method", "full", "--preset", "fast", "--results", str(w.results))
    assert out.exit_code == 2 and says(out.one_error(), "unknown preset 'fast'", "paper, quick, smoke, tiny")


@case("already handled: a plugin that fails to import is skipped with one warning; list still works",
      already_passed=True)
def _(w):
    install_plugin(w.monkeypatch, w.root, "broken", "raise ImportError('no module named torch_magic')\n")
    out = w.cli("list", "methods")
    assert out.exit_code == 0
    assert out.stderr.strip() == ("odnbench: warning: plugin 'broken' (?) failed to load: ImportError: no module named "
                                  "torch_magic (skipped; ODNBENCH_STRICT_PLUGINS=1 makes this fatal)")
    assert [row.split()[0] for row in out.stdout.splitlines()] == ["autogrow", "blockdrop", "early-exit", "full", "kd", "odn",
                                                                    "oracle", "prune", "scratch", "slim", "truncate"]


@case("already handled: verify, leaderboard and publish of a missing folder are one line, exit 2",
      already_passed=True)
def _(w):
    missing = w.root / "nothing-here"
    for args in (["leaderboard", "verify", "--results", str(missing)], ["leaderboard", "--results", str(missing)],
                 ["leaderboard", "publish", "--results", str(missing), "--out", str(w.root / "out")]):
        out = w.cli(*args)
        assert out.exit_code == 2 and says(out.one_error(), f"results folder {missing}", "does not exist")


@case("already handled: publish refuses to overwrite a README it did not generate", already_passed=True)
def _(w):
    out_dir = w.root / "site"
    out_dir.mkdir()
    (out_dir / "README.md").write_text("# my own page\n")
    out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert out.exit_code == 2 and says(out.one_error(), str(out_dir / "README.md"), "not generated by odnbench",
                                       "--out")
    assert (out_dir / "README.md").read_text() == "# my own page\n"


@case("already handled: verify names an edited config (folder key mismatch)", already_passed=True)
def _(w):
    w.edit(lambda d: d["config"].update(seed=7), restamp=True)
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    assert line_of(out.stdout, w.cell.name).startswith(
        f"PROBLEM  {w.cell.name}: folder name does not end with the config's key -")


@case("already handled: verify re-measures an edited top-1 (model present)", already_passed=True)
def _(w):
    top1 = w.stored("full")["metrics"]["top1"]
    w.edit(lambda d: d["metrics"].update(top1=round(top1 + 0.5, 4)), restamp=True)
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    assert line_of(out.stdout, w.cell.name).startswith(f"PROBLEM  {w.cell.name}: metrics.top1 stored {top1 + 0.5:.4f} "
                                                       f"but re-measured {top1:.4f} on cpu")


@case("already handled: prune without a finished full result is a failed cell saying what to run",
      already_passed=True)
def _(w):
    empty = w.root / "empty-results"
    out = w.cli("run", "--method", "prune", "--preset", "smoke", "--results", str(empty), "-q")
    assert out.exit_code == 1
    [f] = empty.glob(f"prune-*/{RESULT_FILE}")
    error = json.loads(f.read_text())["error"]
    assert error.startswith("MissingDependencyError: prune needs a finished 'full' result for mnist5k/resnet18/seed "
                            "0/preset smoke") and "has no stored result" in error


@case("already handled: kill -9 during a write never leaves a half-written result.json", already_passed=True)
def _(w):
    target = w.root / "killed" / RESULT_FILE
    code = ("import itertools, sys; from odnbench.store import write_json\n"
            "for i in itertools.count(): write_json(__import__('pathlib').Path(sys.argv[1]), "
            "{'i': i, 'pad': 'x' * 400000})")
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)])
    try:
        deadline = time.time() + 60
        while not target.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert json.loads(target.read_text())["pad"] == "x" * 400000  # the old or the new file, never half of one
    # what it may leave is a temporary file, which verify lists and a resumed run removes
    assert all(p.name.startswith(".result.json.") for p in target.parent.iterdir() if p != target)


#: Cases that train or re-evaluate for more than a CPU second or two: the slow tier's.
SLOW_CASES = {
    "security: a third-party model re-evaluates after its plugin is uninstalled (example oneshot-odn)",
    "integrity: verify catches an edited throughput",
}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_CASES else n for n in CASES])
def test_hostile(name, world):
    CASES[name](world)
    world.intact()


def test_case_count():
    """The cases of issue 12 (37 that failed) plus the representative ones that already passed."""
    new = [n for n, fn in CASES.items() if not fn.already_passed]
    assert len(new) >= 37, len(new)
    assert len(CASES) - len(new) >= 10


# ------------------------------------------------------------------------------ planted malicious model

@pytest.mark.parametrize("where", [pytest.param("model.safetensors", marks=pytest.mark.slow),
                                   pytest.param("model.pt beside it", marks=pytest.mark.slow), "0.1 record"])
def test_planted_model_never_runs(world, where):
    w = world
    marker = w.root / "PWNED"
    if where == "model.safetensors":
        _plant_pickle(w.cell / MODEL_FILE, marker)
        w.edit(lambda d: None, restamp=True)  # even a checksum that matches the planted file
    elif where == "model.pt beside it":
        _plant_pickle(w.cell / "model.pt", marker)
    else:
        _make_legacy(w, marker)
    w.freeze()
    commands = [
        ["compare", "--method", "full", "--preset", "smoke", "--results", str(w.results), "-q"],
        ["compare", "--method", "full", "--method", "prune", "--preset", "smoke", "--results", str(w.results), "-q"],
        ["leaderboard", "--results", str(w.results)],
        ["leaderboard", "publish", "--results", str(w.results), "--out", str(w.root / "pages")],
        ["leaderboard", "verify", "--results", str(w.results), "--no-download"],
    ]
    codes = []
    for args in commands:
        out = w.cli(*args)
        codes.append(out.exit_code)
        assert not marker.exists(), f"`odnbench {' '.join(args[:2])}` ran the planted code"
    prune = w.stored("prune")
    if where == "model.pt beside it":  # ignored: the real model is used, and verify passes
        assert codes == [0, 0, 0, 0, 0] and prune["status"] == "ok"
    else:
        assert codes == [0, 1, 0, 0, 1] and prune["status"] == "failed"
        assert prune["error"].startswith(f"ModelFileError: cannot use the 'full' model in {w.cell.name}: ")
    w.intact()
    import torch  # the payload is live: the unsafe loader would have run it

    planted = w.cell / ("model.pt" if where != "model.safetensors" else MODEL_FILE)
    torch.load(io.BytesIO(planted.read_bytes()), weights_only=False)  # (from bytes: torch.load sends a
    # .safetensors path to safetensors)
    assert marker.exists()


def test_every_numeric_recipe_field_and_builtin_parameter_declares_its_range(reg):
    """Plan-time range checks only help where a range is declared: every number a user can --set has one."""
    from odnbench.recipes import recipe_params

    bare = [f"recipe.{p.name}" for p in recipe_params().values()
            if p.type in (int, float) and not p.range_text()]
    for name in ("full", "odn", "prune", "scratch", "truncate", "slim", "blockdrop", "kd"):
        bare += [f"{name}.{p.name}" for p in reg.method(name).params if p.type in (int, float) and not p.range_text()]
    assert bare == []

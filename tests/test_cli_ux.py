"""What a newcomer meets at the command line: each rough edge is a one-line error (exit status 2)
that says what was wrong and what is allowed, and leaves nothing behind; finished results are
not redone or overwritten unless asked; the summary compare prints fits 100 columns.

Real smoke cells where something must run (a cell takes seconds); planning errors need none.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from odnbench import metrics
from odnbench.store import RESULT_FILE, ResultStore

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def invoke(*args: str):
    from odnbench.cli import cli

    return CliRunner().invoke(cli, list(args))


def one_line_error(out, *needles: str) -> str:
    """The one stderr line of a refused command (exit status 2), checked for ``needles``."""
    assert out.exit_code == 2, out.output
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------- --set


@pytest.mark.parametrize("args, needles", [
    # a method's parameter for a method that is not in the grid (nor needed by it)
    (["-m", "full", "--set", "prune.ratio=0.5"],
     ["Error: --set prune.ratio=0.5: method 'prune' is not in this grid (its methods: full)", "--method prune"]),
    # an unknown owner: says it came from --set and that recipe.* is also allowed
    (["-m", "full", "--set", "nosuch.x=1"],
     ["Error: --set nosuch.x=1: unknown method 'nosuch'", "Available: autogrow, blockdrop, early-exit, ", "oracle, prune, scratch, slim, truncate",
      "--set also takes recipe.FIELD=VALUE"]),
    # a recipe field that none of the chosen methods uses: ODN's epochs are its own parameters
    (["-m", "odn", "--set", "recipe.epochs=5"],
     ["Error: --set recipe.epochs=5: no method in this grid uses recipe.epochs",
      "odn: its epochs come from odn.max_epochs_per_depth", "Recipe fields that odn uses: batch_size",
      "weight_decay, width"]),
    (["-m", "odn", "--set", "recipe.patience=3"], ["odn: its patience is odn.patience"]),
    # values: still one line, now saying where they came from
    (["-m", "odn", "--set", "odn.patience=soon"], ["Error: --set odn.patience='soon' is not a valid int"]),
    (["-m", "full", "--set", "recipe.lr=fast"], ["Error: --set recipe.lr='fast' is not a valid float"]),
    (["-m", "full", "--set", "recipe.eopchs=2"], ["Error: --set recipe.eopchs=2: unknown recipe parameter",
                                                  "Did you mean: epochs?"]),
])
@pytest.mark.parametrize("command", ["compare", "run"])
def test_set_errors_name_what_is_allowed_and_create_nothing(tmp_path, command, args, needles):
    results = tmp_path / "results"
    one_line_error(invoke(command, "--preset", "smoke", "--results", str(results), *args), *needles)
    assert not results.exists()


def test_a_recipe_field_a_preset_parameter_replaces_is_refused_naming_the_parameter(reg):
    """Quick sets full.epochs=30 (Param.replaces_recipe="epochs"): `-m full --set recipe.epochs=3` would
    label its cell recipe.epochs=3 and train 30 epochs. It is refused at plan time, naming full.epochs."""
    from odnbench import plan
    from odnbench.errors import OdnbenchError

    def grid(*sets, methods=("full",), preset="quick"):
        return plan.plan_grid(reg, list(methods), ["mnist5k"], ["resnet18"], [0], preset, list(sets))

    with pytest.raises(OdnbenchError) as err:
        grid("recipe.epochs=3")
    assert "no method in this grid uses recipe.epochs (full: full.epochs=30 (preset quick's value) replaces " \
           "recipe.epochs for it; --set full.epochs=VALUE instead)" in str(err.value)
    with pytest.raises(OdnbenchError, match=r"full.patience=2 \(set by --set\) replaces recipe.patience"):
        grid("full.patience=2", "recipe.patience=3")
    # the parameter back at none, a preset without the value, or a method that uses the field: allowed
    assert {c.config["recipe"]["epochs"] for c in grid("full.epochs=none", "recipe.epochs=3").cells} == {3}
    assert {c.config["recipe"]["epochs"] for c in grid("recipe.epochs=3", preset="smoke").cells} == {3}
    assert {c.config["recipe"]["epochs"] for c in grid("recipe.epochs=3", methods=("full", "slim")).cells} == {3}


def test_a_recipe_field_one_chosen_method_uses_is_allowed(reg):
    from odnbench import plan

    # full uses recipe.epochs, so the grid odn + full takes it (and ODN's relative target follows full)
    grid = plan.plan_grid(reg, ["odn", "full"], ["mnist5k"], ["resnet18"], [0], "smoke", ["recipe.epochs=2"])
    assert {c.config["recipe"]["epochs"] for c in grid.cells} == {2}
    # a dependency added by the grid counts as in the grid for --set METHOD.PARAM
    grid = plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "smoke",
                          ["prune.match=odn:size", "odn.max_depth=2"])
    assert [c.config["params"].get("max_depth") for c in grid.cells if c.config["method"] == "odn"] == [2]


def test_unused_recipe_fields_must_name_recipe_fields():
    from odnbench import Method
    from odnbench.testing import ContractError, check_declaration

    class Sloppy(Method):
        name = "sloppy"
        description = "declares a recipe field that does not exist"
        unused_recipe_fields = {"epoch": "typo"}

    with pytest.raises(ContractError, match="unused_recipe_fields names 'epoch', which is not a recipe field"):
        check_declaration(Sloppy(), "test")

    from odnbench import Param

    class Typo(Method):
        name = "typo"
        description = "a parameter that replaces a recipe field that does not exist"
        params = (Param("epochs", int, None, nullable=True, replaces_recipe="epoch"),)

    with pytest.raises(ContractError, match="parameter 'epochs' declares replaces_recipe='epoch', which is not a "
                                            "recipe field"):
        check_declaration(Typo(), "test")


# ----------------------------------------------------------------------------- run: finished cells


@pytest.mark.slow
def test_run_skips_a_finished_cell_and_force_redoes_it(tmp_path):
    results = tmp_path / "results"
    args = ["run", "-m", "full", "--preset", "smoke", "--results", str(results), "-q", "--set", "recipe.threads=1"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    [(folder, _)] = list(ResultStore(results).raw())
    path = folder / RESULT_FILE
    before, mtime = path.read_bytes(), path.stat().st_mtime_ns

    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert "finished already" in again.stdout and "--force runs it again" in again.stdout
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime  # not retrained, not rewritten

    forced = invoke(*args, "--force")
    assert forced.exit_code == 0 and "finished already" not in forced.stdout
    assert path.stat().st_mtime_ns != mtime
    assert json.loads(path.read_text())["status"] == "ok"


# ----------------------------------------------------------------------------- --data-dir


@pytest.mark.parametrize("command", [
    ["compare", "-m", "full"], ["run", "-m", "full"], ["compare", "-m", "odn", "--dataset", "mnist"],
    ["leaderboard", "verify"],
])
def test_a_data_dir_that_does_not_exist_is_refused_and_not_created(tmp_path, command):
    missing = tmp_path / "no" / "such" / "data"
    results = tmp_path / "results"
    if command[0] == "leaderboard":
        results.mkdir()
    out = invoke(*command, "--results", str(results), "--data-dir", str(missing))
    one_line_error(out, f"Error: --data-dir {missing} does not exist", "point it at the folder that holds")
    assert not (tmp_path / "no").exists()
    assert not any(results.iterdir()) if results.exists() else True


def test_a_dataset_never_creates_a_missing_data_folder(tmp_path):
    from odnbench.errors import DataNotFoundError
    from odnbench.registry import get_registry

    missing = tmp_path / "nope"
    with pytest.raises(DataNotFoundError, match="the data folder .* does not exist; create it"):
        get_registry().dataset("mnist").load(missing, download=True, seed=0)
    assert not missing.exists()


def test_a_failed_download_leaves_no_empty_folders_and_one_line(tmp_path, monkeypatch):
    """torchvision makes MNIST/raw before it downloads; a failed download removes them again, and
    its several-line error becomes one line."""
    import torchvision

    from odnbench.errors import DataNotFoundError
    from odnbench.registry import get_registry

    class Offline:
        def __init__(self, root, download=False, **kwargs):
            if download:
                (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)
                raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried a mirror, got:\n<offline>")
            raise RuntimeError("Dataset not found. You can use download=True to download it")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(DataNotFoundError) as err:
        get_registry().dataset("mnist").load(data, download=True, seed=0)
    assert "\n" not in str(err.value) and "Tried a mirror, got: <offline>" in str(err.value)
    assert "use the offline dataset mnist5k" in str(err.value)
    assert list(data.iterdir()) == []


def test_a_failed_dependency_is_named_with_what_to_change(tmp_path):
    """odn needs full; full fails for want of data: odn's error quotes full's, instead of asking to
    rerun the same command."""
    data = tmp_path / "data"
    data.mkdir()
    results = tmp_path / "results"
    out = invoke("compare", "-m", "odn", "--dataset", "mnist", "--data-dir", str(data), "--no-download",
                 "--preset", "smoke", "--results", str(results), "-q")
    assert out.exit_code == 1
    stored = {r["config"]["method"]: r for _, r in ResultStore(results).raw()}
    assert stored["full"]["error"].startswith("DataNotFoundError: mnist: files not found under")
    odn_error = stored["odn"]["error"]
    assert "odn needs a finished 'full' result for mnist/resnet18/seed 0/preset smoke" in odn_error
    assert "which failed: DataNotFoundError: mnist: files not found under" in odn_error
    assert "Fix that, then rerun" in odn_error and "odnbench compare --method full" not in odn_error


# ----------------------------------------------------------------------------- backbones


def test_an_unknown_backbone_is_refused_without_importing_torch_or_timm(tmp_path):
    code = ("import sys\nfrom odnbench.cli import main\ntry:\n    main(['profile', '--backbone', 'resnet999'])\n"
            "except SystemExit as exc:\n    print('exit', exc.code)\n"
            "print('torch' in sys.modules, 'timm' in sys.modules)\n")
    env = {**os.environ, "ODNBENCH_LOAD_PLUGINS": "odnbench"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                         timeout=120)
    assert out.stdout.split() == ["exit", "2", "False", "False"], out.stdout + out.stderr
    assert "unknown backbone 'resnet999'. Did you mean: resnet50" in out.stderr


def test_timm_resnet_names_come_from_timm_without_importing_it():
    import timm

    from odnbench_plugins.backbones import timm_resnet_names

    assert timm_resnet_names() == frozenset(timm.list_models(module="resnet"))
    from odnbench.registry import get_registry

    assert get_registry().backbone("resnet26d").name == "resnet26d"


# ----------------------------------------------------------------------------- latency


def test_busy_latency_rule():
    from odnbench.result import latency_busy

    quiet = {"p50": 1.0, "p90": 1.05, "spread": 0.1, "cpu_share": 0.95, "threads": 1}
    assert latency_busy(quiet) is False
    assert latency_busy({**quiet, "p90": 2.0}) is True  # slow windows: p90 / p50 = 2
    assert latency_busy({**quiet, "spread": 1.5}) is True  # windows far apart
    assert latency_busy({**quiet, "cpu_share": 0.3}) is True  # uniformly slow: the process got 30 % of a core
    assert latency_busy({**quiet, "cpu_share": 0.95, "threads": 2}) is False  # small layers: one thread busy
    assert latency_busy({"p50": 1.0, "p90": 1.2}) is False  # a 0.1 record: judged on p90 / p50 alone
    assert latency_busy({"p50": 1.0}) is None


def test_latency_records_its_spread_and_is_measured_again_when_busy(reg, monkeypatch):
    from odnbench.recipes import make_recipe

    net = reg.backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=(8, 8, 8, 8)).truncated(1)
    lat = metrics.latency_ms(net, (1, 28, 28), warmup=1, windows=4, iters=2, threads=1)
    assert len(lat["windows_ms"]) == 4 and lat["p50"] == pytest.approx(statistics.median(lat["windows_ms"]),
                                                                       abs=1e-3)
    assert lat["p90_over_p50"] >= 1 and lat["spread"] >= 0 and lat["cpu_share"] > 0
    assert isinstance(lat["busy"], bool)

    calls = []

    def fake(model, shape, **kwargs):
        calls.append(kwargs["threads"])
        busy = len(calls) == 1
        return {"p50": 1.0, "p90": 3.0 if busy else 1.1, "p90_over_p50": 3.0 if busy else 1.1, "spread": 0.1,
                "busy": busy, "threads": kwargs["threads"]}

    monkeypatch.setattr(metrics, "latency_ms", fake)
    recipe = make_recipe("smoke", {"threads": "1"})
    got = metrics.measured_latency(net, (1, 28, 28), recipe)
    assert calls == [1, 1] and got["attempts"] == 2 and got["busy"] is False and got["p90"] == 1.1
    calls.clear()
    monkeypatch.setattr(metrics, "latency_ms", lambda model, shape, **kw: calls.append(1) or {
        "p50": 1.0, "p90": 1.1, "p90_over_p50": 1.1, "spread": 0.1, "busy": False, "threads": 1})
    assert metrics.measured_latency(net, (1, 28, 28), recipe)["attempts"] == 1 and calls == [1]


def test_profile_measures_latency_as_the_harness_does(monkeypatch):
    seen = []
    real = metrics.measured_latency
    monkeypatch.setattr(metrics, "measured_latency", lambda model, shape, recipe: seen.append(recipe.threads)
                        or real(model, shape, recipe))
    out = invoke("profile", "-b", "resnet18", "-k", "1", "--width", "8,8,8,8", "--json")
    assert out.exit_code == 0, out.output
    assert seen == [1]  # the harness's default policy: recipe.threads=1
    lat = json.loads(out.stdout)["latency_ms"]
    assert {"windows_ms", "p90_over_p50", "spread", "busy", "attempts"} <= set(lat)
    assert invoke("profile", "-b", "resnet18", "-k", "1", "--width", "8,8,8,8", "--threads", "0").exit_code == 0
    assert seen == [1, 0]


# ----------------------------------------------------------------------------- the terminal summary


@pytest.fixture(scope="module")
def smoke_grid(tmp_path_factory):
    """A real smoke grid with dependencies and two seeds: full, odn, truncate (ODN's depth)."""
    results = tmp_path_factory.mktemp("grid") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODNBENCH_LOAD_PLUGINS", "odnbench")
        mp.setenv("COLUMNS", "240")  # a wide terminal: the summary still keeps to 100 columns
        from odnbench import registry

        mp.setattr(registry, "_cached", None)
        out = invoke("compare", "-m", "odn", "-m", "truncate", "-m", "full", "-s", "0", "-s", "1", "--preset",
                     "smoke", "--results", str(results), "--set", "recipe.threads=1", "--set",
                     "odn.save_depth_models=false", "-q")
    assert out.exit_code == 0, out.output
    return results, out.stdout


@pytest.mark.slow
def test_the_summary_after_compare_fits_100_columns(smoke_grid):
    results, stdout = smoke_grid
    lines = stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, "\n".join(line for line in lines if len(line) > 100)
    assert "|" not in stdout  # not the markdown board
    header = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#  Method"))
    assert all(word in lines[header - 1] + lines[header] for word in
               ("Method", "Depth", "Top-1 %", "±95% CI", "Δ full", "paired", "MB", "MACs", "Train", "compute",
                "Vs full", "target", "Con-", "verged"))
    body = "\n".join(lines[header:])
    for method in ("full", "odn", "truncate"):
        assert f"  {method}" in body
    assert f"  {results / 'leaderboard.md'}" in lines  # the full board's path, on a line of its own
    assert (results / "leaderboard.md").read_text().startswith("<!-- Generated by odnbench")


@pytest.mark.slow
def test_the_summary_keeps_long_labels_inside_100_columns(smoke_grid):
    from odnbench.report import boards as lb
    from odnbench.report.terminal import summary

    boards = lb.build_boards(lb.load_results(smoke_grid[0]))
    for row in boards[0].rows:
        row.stats.method += " (match=odn:size, criterion=taylor, scope=global, recipe.width=16,32,64,128)"
        row.stats.networks_differ = True  # ranges on two lines
        row.stats.cost_train_macs = 123.4e15  # widest compute
        row.stats.verdict, row.stats.meets_target_verdict = "not distinguishable from full", "undecided"
        row.stats.converged = {"yes": 1, "no": 1, "unknown": 0, "n": 2}
    text = summary(boards, Path("/r") / "leaderboard.md")
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "recipe.width=16,32,64,128" in text.replace("\n", "").replace(" ", "")
    # nothing cut off at the right edge: the last column keeps its header and every value
    assert "verged" in text and text.count("123 P  ≈ full") == len(boards[0].rows)
    assert sum(line.endswith("1/2") for line in text.splitlines()) == len(boards[0].rows)



def test_params_recipe_lists_every_recipe_field_with_each_presets_value_and_what_is_allowed():
    from odnbench.recipes import PRESETS, recipe_params

    out = invoke("params", "recipe")
    assert out.exit_code == 0, out.output
    lines = {line.split()[0]: line for line in out.output.splitlines()[1:]}
    assert set(lines) == {f"recipe.{name}" for name in recipe_params()}
    header = out.output.splitlines()[0].split()
    assert all(p in header for p in PRESETS)
    assert "16,32,64,128" in lines["recipe.width"].split()  # quick's value
    assert "plateau|cosine|none" in lines["recipe.schedule"]
    assert recipe_params()["epochs"].range_text() in lines["recipe.epochs"]
    assert "early stop" in lines["recipe.patience"]  # its help
    bad = invoke("params", "recipe", "--preset", "nope")
    assert bad.exit_code != 0 and "nope" in bad.output and "quick" in bad.output


@pytest.mark.slow
def test_the_tiny_preset_learns_well_above_chance_in_seconds(tmp_path):
    """Plugin tests that depend on accuracy use `tiny`; smoke stays near chance."""
    from odnbench.testing import run_method_check

    check = run_method_check("full", tmp_path, preset="tiny")
    assert check.result.config["recipe"]["preset"] == "tiny"
    assert check.result.metrics["top1"] > 50.0  # 10 classes: chance is 10 %

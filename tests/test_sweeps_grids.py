"""Sweeps (--set METHOD.PARAM=V1,V2) and grid files (compare --grid): the cells they plan, their
checks at plan time, and that a grid file plans exactly the cells of the equivalent command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from odnbench import plan
from odnbench.errors import OdnbenchError
from odnbench.gridfile import key_lines, load_grid, merge_cli

REPO = Path(__file__).resolve().parents[1]


def cells(reg, methods, sets=(), seeds=(0,), preset="smoke", **kw):
    return plan.plan_grid(reg, list(methods), ["mnist5k"], ["resnet18"], list(seeds), preset, list(sets), **kw).cells


def test_a_sweep_makes_one_cell_per_value_with_distinct_keys(reg):
    grid = cells(reg, ["prune"], ["prune.ratio=0.3,0.5,0.7,0.9"], seeds=(0, 1))
    prunes = [c for c in grid if c.config["method"] == "prune"]
    assert sorted((c.config["seed"], c.config["params"]["ratio"]) for c in prunes) == [
        (s, r) for s in (0, 1) for r in (0.3, 0.5, 0.7, 0.9)]
    assert len({c.key for c in prunes}) == 8
    # the full-depth model they all start from is planned once per seed, not once per value
    assert sum(c.config["method"] == "full" for c in grid) == 2
    single = cells(reg, ["prune"], ["prune.ratio=0.5"])[-1]
    assert single.key in {c.key for c in prunes}  # a swept value is the same cell as that value alone


def test_two_sweeps_make_their_cartesian_product_and_compose_with_recipe_sweeps(reg):
    grid = cells(reg, ["slim"], ["slim.width=0.25,0.5", "recipe.epochs=1;2"])
    got = sorted((c.config["params"]["width"], c.config["recipe"]["epochs"]) for c in grid)
    assert got == [(0.25, 1), (0.25, 2), (0.5, 1), (0.5, 2)]
    grid = cells(reg, ["prune"], ["prune.ratio=0.3,0.6", "prune.criterion=l1,l2"])
    assert len([c for c in grid if c.config["method"] == "prune"]) == 4


def test_every_value_is_checked_at_plan_time_naming_the_bad_one(reg):
    with pytest.raises(OdnbenchError) as err:
        cells(reg, ["prune"], ["prune.ratio=0.3,1.5,0.7"])
    assert "1.5" in str(err.value) and "prune.ratio" in str(err.value) and "0.3,1.5,0.7" in str(err.value)
    with pytest.raises(OdnbenchError, match="abc"):
        cells(reg, ["prune"], ["prune.ratio=0.3,abc"])
    with pytest.raises(OdnbenchError, match="recipe.epochs='x'"):
        cells(reg, ["full"], ["recipe.epochs=2;x"])


def test_comma_valued_text_keeps_its_commas_and_sweeps_with_semicolons(reg):
    one = cells(reg, ["full"], ["recipe.width=16,32,64,128"])
    assert [c.config["recipe"]["width"] for c in one] == ["16,32,64,128"]
    two = cells(reg, ["full"], ["recipe.width=16,32,64,128;8,16,16,32"])
    assert sorted(c.config["recipe"]["width"] for c in two) == ["16,32,64,128", "8,16,16,32"]
    # a str parameter marked sweep (match) splits on commas: one prune cell per match
    grid = cells(reg, ["prune"], ["prune.match=odn:size,odn:macs"])
    assert sorted(c.config["params"]["match"] for c in grid if c.config["method"] == "prune") == [
        "odn:macs", "odn:size"]


def test_params_marks_the_knobs_worth_sweeping(reg):
    from click.testing import CliRunner

    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["params", "prune"]).output
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "[sweep]" in lines["prune.ratio"] and "[sweep]" not in lines["prune.criterion"]
    out = CliRunner().invoke(cli, ["params", "oracle"]).output
    assert "[sweep]" in next(line for line in out.splitlines() if line.startswith("oracle.max_depth"))
    out = CliRunner().invoke(cli, ["params", "recipe"]).output
    assert "recipe.width" in out
    assert "[sweep]" in next(line for line in out.splitlines() if line.startswith("recipe.epochs"))


GRID = """\
# a small board
preset = "smoke"
datasets = ["mnist5k"]
seeds = [0, 1]

[recipe]
epochs = 1

[set.odn]
relative_tolerance = 0.5

[[method]]
name = "full"

[[method]]
name = "odn"

[[method]]
name = "prune"
params = { match = "odn:size" }

[[method]]
name = "prune"
[method.params]
ratio = [0.3, 0.6]

[[method]]
name = "scratch"
"""


def write(tmp_path, text, name="g.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_grid_file_plans_the_same_cells_as_the_equivalent_command_line(reg, tmp_path):
    grid = load_grid(write(tmp_path, GRID), reg)
    merged = merge_cli(grid, methods=(), datasets=(), backbones=(), seeds=(), preset="quick", sets=(),
                       data_dir=None, download=True, jobs=1, given=set())
    from_file = plan.plan_grid(reg, merged.methods, merged.datasets, merged.backbones, merged.seeds, merged.preset,
                               merged.sets, entries=merged.entries, provenance=grid.provenance).cells
    common = ["recipe.epochs=1", "odn.relative_tolerance=0.5"]
    cli_a = cells(reg, ["full", "odn", "prune", "scratch"], common + ["prune.match=odn:size"], seeds=(0, 1))
    cli_b = cells(reg, ["prune"], ["recipe.epochs=1", "prune.ratio=0.3,0.6"], seeds=(0, 1))
    assert {c.key for c in from_file} == {c.key for c in cli_a} | {c.key for c in cli_b}
    assert len(from_file) == len({c.key for c in from_file}) == 12  # per seed: full, odn, 3 prune, scratch
    assert all(c.provenance == {"grid": "g.toml", "grid_sha256": grid.sha256} for c in from_file)
    # the cell key does not depend on the grid file
    assert {c.key for c in from_file} == {c.key for c in plan.plan_grid(
        reg, merged.methods, merged.datasets, merged.backbones, merged.seeds, merged.preset, merged.sets,
        entries=merged.entries).cells}


def test_the_command_line_wins_over_the_grid_file(reg, tmp_path):
    grid = load_grid(write(tmp_path, GRID), reg)
    merged = merge_cli(grid, methods=("truncate",), datasets=("mnist",), backbones=(), seeds=(3,), preset="quick",
                       sets=("recipe.epochs=2",), data_dir=None, download=True, jobs=4,
                       given={"datasets", "seeds", "jobs"})
    assert merged.datasets == ["mnist"] and merged.seeds == [3] and merged.jobs == 4
    assert merged.preset == "smoke"  # not given on the command line: the file's
    assert merged.methods == ["truncate"] and [e.method for e in merged.entries][:2] == ["full", "odn"]
    got = plan.plan_grid(reg, merged.methods, ["mnist5k"], ["resnet18"], [0], merged.preset, merged.sets,
                         entries=merged.entries).cells
    assert {c.config["recipe"]["epochs"] for c in got} == {2}  # --set overrides the file's [recipe]


@pytest.mark.parametrize("text, line, key, words", [
    ("preset = \"smoke\"\ncolour = 3\n", 2, "colour", ["unknown key", "datasets"]),
    ("[[method]]\nname = \"prune\"\n\n[method.params]\nratio = 1.5\n", 5, "method[0].params.ratio", ["1.5"]),
    ("[[method]]\nname = \"full\"\n[[method]]\nname = \"prune\"\nparams = { ratoi = 0.5 }\n", 5,
     "method[1].params.ratoi", ["ratoi", "ratio"]),
    ("[[method]]\nname = \"prnue\"\n", 2, "method[0].name", ["prnue", "prune"]),
    ("seeds = [0, 1]\n[recipe]\nepochz = 3\n", 3, "recipe.epochz", ["epochz", "epochs"]),
    ("[set.odn]\ntolerance = -1\n", 2, "set.odn.tolerance", ["-1"]),
    ("datasets = [\"mnist5k\", \"cifar99\"]\n", 1, "datasets", ["cifar99"]),
    ("[[method]]\nname = \"prune\"\nweight = 3\n", 3, "method[0].weight", ["params"]),
    ("[[method]]\nname = \"slim\"\nparams = { width = [] }\n", 3, "method[0].params.width", ["empty"]),
])
def test_a_bad_grid_file_is_one_line_naming_file_line_and_key(reg, tmp_path, text, line, key, words):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(OdnbenchError) as err:
        load_grid(path, reg)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: {key}:"), message
    for word in words:
        assert word in message


def test_invalid_toml_names_the_file_and_position(reg, tmp_path):
    path = write(tmp_path, "preset = \n", "broken.toml")
    with pytest.raises(OdnbenchError, match=r"broken\.toml: not valid TOML.*line 1"):
        load_grid(path, reg)


def test_key_lines_finds_keys_in_tables_arrays_and_inline_tables():
    lines = key_lines(GRID)
    assert lines[("preset",)] == 2 and lines[("recipe", "epochs")] == 7
    assert lines[("set", "odn", "relative_tolerance")] == 10
    assert lines[("method", 2, "params", "match")] == 20
    assert lines[("method", 3, "params", "ratio")] == 25


def test_compare_grid_on_the_command_line(tmp_path):
    """The whole path through the CLI, stopped before training by a bad value in the file."""
    from click.testing import CliRunner

    from odnbench.cli import cli

    path = write(tmp_path, "[[method]]\nname = \"prune\"\nparams = { ratio = [0.5, 2] }\n", "b.toml")
    result = CliRunner().invoke(cli, ["compare", "--grid", str(path), "--results", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f"{path}:3: method[0].params.ratio:" in result.output and "2" in result.output
    assert not (tmp_path / "r").exists()
    result = CliRunner().invoke(cli, ["compare", "--results", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--grid" in result.output


@pytest.mark.parametrize("name", ["mnist5k-quick.toml", "mnist-quick.toml"])
def test_the_committed_grid_files_plan_prune_and_slim_curves_odn_oracle_and_the_controls(reg, name):
    grid = load_grid(REPO / "leaderboards" / "grids" / name, reg)
    merged = merge_cli(grid, methods=(), datasets=(), backbones=(), seeds=(), preset="quick", sets=(),
                       data_dir=None, download=True, jobs=2, given=set())
    planned = plan.plan_grid(reg, merged.methods, merged.datasets, merged.backbones, merged.seeds, merged.preset,
                             merged.sets, entries=merged.entries).cells
    seeds = {"mnist5k-quick.toml": [0, 1, 2, 3, 4], "mnist-quick.toml": list(range(10))}[name]
    assert merged.seeds == seeds and merged.preset == "quick" and merged.jobs == 2
    methods = {c.config["method"] for c in planned}
    assert {"full", "odn", "oracle", "prune", "slim", "scratch", "truncate", "kd", "blockdrop"} <= methods
    seed0 = [c for c in planned if c.config["seed"] == 0]
    ratios = {c.config["params"]["ratio"] for c in seed0 if c.config["method"] == "prune"
              and c.config["params"].get("match") is None}
    widths = {c.config["params"]["width"] for c in seed0 if c.config["method"] == "slim"
              and c.config["params"].get("match") is None}
    assert len(ratios) >= 4 and len(widths) >= 4
    matched = {c.config["params"].get("match") for c in seed0 if c.config["method"] == "prune"}
    assert {"odn:size", "odn:macs"} <= matched

"""Trust, round three (issue 32, and two verify items of issue 33): each case of the issue as one
test named after it, against a private copy of one real finished cell (``full``, smoke preset; the
fixtures of test_hostile). Every test asserts the key facts of the one line a user sees (exit
code, what was wrong, what is allowed) and that nothing was written outside the folders the
command was given (``_outside``) and no finished file was lost or changed (``world.intact()``).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import test_hostile
from _plugin_helpers import install_plugin
from test_hostile import World, line_of
from test_hostile2 import _outside, _restamp
from test_hostile2 import _time_limit as _time_limit  # autouse: a hang (a FIFO, /dev/zero) fails the test

from odnbench.errors import OdnbenchDeprecationWarning
from odnbench.store import MODEL_FILE, RESULT_FILE, ResultStore, cell_dirname, cell_key, result_digest, write_json

finished, world = test_hostile.finished, test_hostile.world  # the fixtures: one real finished `full` cell
REPO = Path(__file__).resolve().parents[1]



def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def _plant_prune(w: World, **params) -> Path:
    """A planted `prune` record (the full cell's files, a prune config with ``params``), every hash
    recomputed: what an attacker who can write the results folder can make."""
    d = json.loads((w.cell / RESULT_FILE).read_text())
    d["config"] = {**d["config"], "method": "prune", "params": params}
    d["key"] = cell_key(d["config"])
    folder = w.results / cell_dirname(d["config"])
    shutil.copytree(w.cell, folder)
    _restamp(folder, lambda r: r.update(config=d["config"], key=d["key"]))
    return folder


# --- one validation of a config ---------------------------------------------------------------------

def test_rerun_refuses_a_planted_config_out_of_range_before_training(world, monkeypatch):
    w = world
    planted = _plant_prune(w, steps=10**18)
    w.freeze()
    from odnbench import verify

    def never(*a, **k):
        raise AssertionError("a refused config was trained")

    monkeypatch.setattr(verify, "_run_again", never)
    before = _files(w.root)
    out = w.verify("--rerun", planted.name)
    assert out.exit_code == 1
    line = line_of(out.stdout, planted.name)
    assert line.startswith(f"PROBLEM  {planted.name}: not rerun: its recorded config: prune.steps=1000000000000000000 "
                           "is out of range; allowed: 1 <= prune.steps <= 1000; not run")
    assert "Traceback" not in out.stdout + out.stderr
    assert _outside(w, before) == []
    w.intact()


def test_run_cell_refuses_a_config_compare_would_refuse(world):
    """The executors run every cell through run_cell: a config sent there (a record's, a worker
    message's) is checked too, and the refusal is stored as the cell's failure, nothing trained."""
    w = world
    from odnbench import harness
    from odnbench.plan import Cell
    from odnbench.registry import get_registry

    config = json.loads((w.cell / RESULT_FILE).read_text())["config"]
    config = {**config, "method": "prune", "params": {"steps": 10**18}}
    result = harness.run_cell(get_registry(), Cell(config), w.root / "other", data_dir=w.root, download=False)
    assert result.status == "failed" and result.cost["epochs"] == 0
    assert result.error == ("OdnbenchError: the cell's config: prune.steps=1000000000000000000 is out of range; "
                            "allowed: 1 <= prune.steps <= 1000; not run (compare would refuse it too)")


def test_a_recorded_data_dir_outside_the_results_is_never_written(world, monkeypatch):
    w = world
    elsewhere = w.root / "elsewhere"
    elsewhere.mkdir()
    _restamp(w.cell, lambda d: d["data"].update(data_dir=str(elsewhere)))
    w.freeze()
    from odnbench import harness, runtime

    loads, runs = [], []
    real_get, real_run = runtime.DATA_CACHE.get, harness.run_cell
    monkeypatch.setattr(runtime.DATA_CACHE, "get", lambda reg, name, data_dir, download, *a:
                        loads.append((Path(data_dir), download)) or real_get(reg, name, data_dir, download, *a))
    monkeypatch.setattr(harness, "run_cell", lambda *a, **k: runs.append((k["data_dir"], k["download"]))
                        or real_run(*a, **k))
    before = _files(w.root)
    out = w.cli("leaderboard", "verify", "--results", str(w.results), "--download", "--rerun")
    assert out.exit_code == 0, out.stdout
    assert loads and all(download is False for folder, download in loads if folder == elsewhere)
    assert runs == [(elsewhere, False)]  # read from, never downloaded into
    assert list(elsewhere.iterdir()) == [] and _outside(w, before) == []
    # issue 33: no data-folder note where the dataset needs no folder (mnist5k), even when it is gone
    elsewhere.rmdir()
    out = w.cli("leaderboard", "verify", "--results", str(w.results), "--no-download")
    assert out.exit_code == 0 and "data folder" not in out.stdout
    w.intact()


# --- verify --rerun adds to every other check ----------------------------------------------------------

@pytest.mark.slow
def test_rerun_adds_to_every_check_a_swapped_model_fails(world, smoke_full_results):
    w = world
    out = w.verify("--rerun", w.cell.name)
    assert out.exit_code == 0, out.stdout
    assert line_of(out.stdout, w.cell.name).endswith("; passed: schema, digest, model files, re-measured, rerun")
    assert "passed: schema 1/1, digest 1/1, model files 1/1, re-measured 1/1, rerun 1/1" in out.stdout
    [other] = [p for p in smoke_full_results.iterdir() if p.name.startswith("full-") and "-s1-" in p.name]
    shutil.copy(other / MODEL_FILE, w.cell / MODEL_FILE)  # another real model under this record
    out = w.verify("--rerun", w.cell.name)
    assert out.exit_code == 1
    line = line_of(out.stdout, w.cell.name)
    assert line == (f"PROBLEM  {w.cell.name}: {MODEL_FILE} changed since its result was written (sha256 "
                    f"{line.split('(sha256 ')[1].split(',')[0]}, recorded {line.split('recorded ')[1].split(')')[0]}); "
                    "it is not the model that was measured (passed: schema, digest, rerun)")
    assert "model files 0/1, re-measured 0/1, rerun 1/1" in out.stdout


def test_verify_without_model_files_says_so_once_and_checks_the_rest(tmp_path):
    """issue 33: the committed leaderboards/results hold records without their models (git ignores them;
    a clone has only the result.json files, which is what this copies, whatever a checkout trained locally)."""
    from click.testing import CliRunner

    from odnbench.cli import cli

    for record in (REPO / "leaderboards" / "results").glob(f"*/{RESULT_FILE}"):
        (tmp_path / record.parent.name).mkdir()
        shutil.copyfile(record, tmp_path / record.parent.name / RESULT_FILE)
    res = CliRunner().invoke(cli, ["leaderboard", "verify", "--results", str(tmp_path), "--no-download"])
    assert res.exit_code == 0, res.output[-2000:]
    assert MODEL_FILE not in res.output and res.output.count("no model files in") == 1
    n = len([p for p in tmp_path.iterdir() if (p / RESULT_FILE).is_file()])
    assert n > 100  # the committed boards' records
    assert f"{n} ok (0 re-evaluated, {n} schema only), 0 with problems; passed: schema {n}/{n}, digest {n}/{n}, " \
           f"model files 0/{n}, re-measured 0/{n}" in res.output


# --- bounds ---------------------------------------------------------------------------------------------

def test_grid_size_is_capped_with_a_flag_to_raise_it(world):
    w = world
    sweeps = [a for i, name in enumerate(("epochs", "patience", "batch_size", "latency_iters", "eval_batch_size",
                                          "latency_windows", "plateau_patience", "latency_warmup", "train_limit",
                                          "val_limit"))
              for a in ("--set", f"recipe.{name}={','.join(str(v) for v in range(1, 11))}")]
    before = _files(w.root)
    out = w.compare("--method", "full", *sweeps, results=w.root / "new")
    assert out.exit_code == 2
    assert out.one_error().startswith("Error: this grid asks for 10,000,000,000 cells, more than the 1,000 allowed "
                                      "(sweeps: recipe.epochs (10 values)")
    assert out.one_error().endswith("; sweep fewer values, or raise the cap with --max-cells N")
    out = w.compare("--method", "full", "--seed", "1", "--seed", "2", "--max-cells", "1", results=w.root / "new")
    assert out.exit_code == 2 and "asks for 2 cells, more than the 1 allowed" in out.one_error()
    assert not (w.root / "new").exists() and _outside(w, before) == []


@pytest.mark.parametrize("what", ["/dev/zero", "fifo", "3 GB", "nested 100,000 deep"])
def test_grid_files_are_bounded(world, what):
    w = world
    path = w.root / "grid.toml"
    if what == "/dev/zero":
        path = Path("/dev/zero")
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "3 GB":
        with open(path, "wb") as f:
            f.truncate(3 * 1024**3)  # sparse: nothing is allocated
    else:
        path.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    before = _files(w.root)
    out = w.compare("--grid", str(path), results=w.root / "new")
    assert out.exit_code == 2
    expected = {"/dev/zero": "Error: --grid /dev/zero is a device, not a regular file; name a file",
                "fifo": f"Error: --grid {path} is a FIFO, not a regular file; name a file",
                "3 GB": f"Error: --grid {path} is 3,221,225,472 bytes, more than the 1,048,576 allowed",
                "nested 100,000 deep": f"Error: {path}: it nests deeper than 16 levels (a grid file nests 3)"}
    assert out.one_error() == expected[what]
    assert not (w.root / "new").exists() and _outside(w, before) == []


STRAY_PLUGIN = '''
from odnbench import Method, MethodOutput, hookimpl


class Stray(Method):
    name = "stray"
    description = "leaves a 5 GB (sparse) file in its cell folder"

    def run(self, ctx):
        with open(ctx.workdir / "huge.safetensors", "wb") as f:
            f.truncate(5 * 1024 ** 3)
        return MethodOutput(ctx.build_backbone().truncated(1))


class BigInfo(Method):
    name = "biginfo"
    description = "method_info over 8 MiB"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone().truncated(1), info={"blob": "x" * (9 * 1024 * 1024)})


class DeepInfo(Method):
    name = "deepinfo"
    description = "method_info nested 70 deep"

    def run(self, ctx):
        info = {}
        for _ in range(70):
            info = {"a": info}
        return MethodOutput(ctx.build_backbone().truncated(1), info=info)


@hookimpl
def register_methods(register):
    register(Stray())
    register(BigInfo())
    register(DeepInfo())
'''


def test_a_stray_5gb_file_is_never_read_whole(world):
    w = world
    install_plugin(w.monkeypatch, w.root, "stray", STRAY_PLUGIN)
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    before = _files(w.root)
    with pytest.warns(OdnbenchDeprecationWarning, match="wrote huge.safetensors into ctx.workdir itself"):
        out = w.compare("--method", "stray")
    assert out.exit_code == 0, out.stderr
    stored = w.stored("stray")
    assert stored["status"] == "ok" and "huge.safetensors" not in json.dumps(stored["artifacts"])
    warning = line_of(out.stderr, "huge.safetensors")
    assert "left huge.safetensors in its cell folder; not recorded: huge.safetensors is 5,368,709,120 bytes, more " \
           "than the 4,294,967,296 allowed; not read" in warning
    assert _outside(w, before) == [] and (soft, hard) == resource.getrlimit(resource.RLIMIT_AS)
    w.intact()


@pytest.mark.parametrize("method, reason", [
    ("biginfo", "the record would be "),
    ("deepinfo", "method_info nests deeper than the 64 levels a record may have"),
])
def test_records_odnbench_would_refuse_to_read_are_never_written(world, method, reason):
    w = world
    install_plugin(w.monkeypatch, w.root, "stray", STRAY_PLUGIN)
    out = w.compare("--method", method)
    assert out.exit_code == 1
    stored = w.stored(method)
    assert stored["status"] == "failed" and stored["error"].startswith(f"the result could not be stored ({reason}")
    if method == "biginfo":
        assert "a reader accepts (method_info is 9,437," in stored["error"]
    out = w.verify("--schema-only")  # what was written reads back
    assert out.exit_code == 0 and "failed cell" in line_of(out.stdout, f"{method}-")
    w.intact()


# --- signing ----------------------------------------------------------------------------------------------

def test_a_signing_key_that_is_not_utf8_fails_before_anything_trains(world, monkeypatch):
    w = world
    monkeypatch.setenv("ODNBENCH_SIGNING_KEY", b"\xff\xfekey".decode("utf-8", "surrogateescape"))
    before = _files(w.root)
    for command in (("compare", "--method", "full", "--seed", "3"), ("run", "--method", "full", "--seed", "3")):
        out = w.cli(command[0], "--preset", "smoke", "--results", str(w.root / "new"), *command[1:])
        assert out.exit_code == 2
        assert out.one_error().startswith("Error: ODNBENCH_SIGNING_KEY is not valid UTF-8 text; set it to a UTF-8 "
                                          "string")
    assert not (w.root / "new").exists() and _outside(w, before) == []


def test_a_malformed_signature_is_a_problem_line(world, monkeypatch):
    w = world
    _restamp(w.cell, lambda d: d.update(signature={"alg": "hmac-sha256", "value": "ü" * 64}))
    d = json.loads((w.cell / RESULT_FILE).read_text())
    d["signature"] = {"alg": "hmac-sha256", "value": "ü" * 64}
    d["digest"] = result_digest(d)
    write_json(w.cell / RESULT_FILE, d)
    w.freeze()
    monkeypatch.setenv("ODNBENCH_SIGNING_KEY", "publisher-secret")
    out = w.verify("--schema-only")
    assert out.exit_code == 1
    assert line_of(out.stdout, w.cell.name).startswith(
        f"PROBLEM  {w.cell.name}: bad signature (malformed: not an hmac-sha256 hex value)")
    board = w.cli("leaderboard", "--results", str(w.results), "--format", "json")
    assert board.exit_code == 0 and json.loads(board.stdout) == []
    w.intact()


@pytest.mark.parametrize("what", ["top-1 1e308", "NaN token", "bad signature"])
def test_boards_leave_out_records_that_fail_a_cheap_check(world, monkeypatch, what):
    w = world
    if what == "top-1 1e308":
        _restamp(w.cell, lambda d: d["metrics"].update(top1=1e308))
        why = "metrics.top1=1e+308"
    elif what == "NaN token":
        d = json.loads((w.cell / RESULT_FILE).read_text())
        d["metrics"]["top1"] = float("nan")
        d["digest"] = result_digest(d)
        (w.cell / RESULT_FILE).write_text(json.dumps(d))  # NaN: not JSON, but Python writes it
        why = "metrics.top1 is nan"
    else:
        monkeypatch.setenv("ODNBENCH_SIGNING_KEY", "publisher-secret")
        why = "unsigned while ODNBENCH_SIGNING_KEY is set"
    w.freeze()
    before = _files(w.root)
    board = w.cli("leaderboard", "--results", str(w.results), "--format", "json")
    assert board.exit_code == 0 and json.loads(board.stdout) == []
    assert why in line_of(board.stderr, f"note: not counted: {w.cell.name}: ")
    out_dir = w.root / "pages"
    published = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert published.exit_code == 0 and published.stdout.startswith("0 boards")
    assert all(p.is_relative_to(out_dir) for p in _outside(w, before))
    w.intact()


# --- plugins ----------------------------------------------------------------------------------------------

BROKEN_REGISTRATIONS = '''
from odnbench import Method, MethodOutput, Param, hookimpl


class BadRole(Method):
    name = "badrole"
    description = "a role no board knows"
    role = "winner"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone())


class BadParams(Method):
    name = "badparams"
    description = "params that are not Params"
    params = ("lr", 3)

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone())


class BadPreset(Method):
    name = "badpreset"
    description = "preset defaults outside its own range"
    params = (Param("k", int, 1, ge=1),)

    def preset_defaults(self, preset, dataset):
        return {"k": -5}

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone())


class Good(Method):
    name = "good"
    description = "fine"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone())


@hookimpl
def register_methods(register):
    register("a string")
    register(BadRole())
    register(BadParams())
    register(BadPreset())
    register(Good())
'''


def test_a_broken_plugin_disables_only_itself(world, monkeypatch):
    w = world
    install_plugin(w.monkeypatch, w.root, "broken", BROKEN_REGISTRATIONS)
    helped = w.cli("--help")
    assert helped.exit_code == 0 and "Usage:" in helped.stdout
    from odnbench import registry

    monkeypatch.setattr(registry, "_cached", None)  # each command is its own process: it loads (and warns) once
    out = w.cli("list", "methods")
    assert out.exit_code == 0 and "Traceback" not in out.stderr
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert "good" in names and "full" in names and "badrole" not in names and "badparams" not in names
    warnings = [line for line in out.stderr.splitlines() if line.startswith("odnbench: warning: plugin 'broken'")]
    assert len(warnings) == 3 and all(line.endswith("(refused; ODNBENCH_STRICT_PLUGINS=1 makes this fatal)")
                                      for line in warnings)
    assert any("registered 'a string' as a method; it must be an instance of odnbench.Method" in x for x in warnings)
    assert any("method 'badrole' has role 'winner'; allowed: None" in x for x in warnings)
    assert any("method 'badparams' declares params ('lr', 3); it must be a tuple of odnbench.Param" in x
               for x in warnings)
    # a command that names a refused method: one line, not a traceback
    out = w.compare("--method", "badparams")
    assert out.exit_code == 2 and "unknown method 'badparams'" in out.one_error()
    # strict mode keeps it fatal
    monkeypatch.setenv("ODNBENCH_STRICT_PLUGINS", "1")
    monkeypatch.setattr(registry, "_cached", None)
    out = w.cli("list", "methods")
    assert out.exit_code == 2 and "plugin 'broken' registered 'a string' as a method" in out.one_error()
    w.intact()


def test_a_plugins_bad_preset_defaults_name_the_plugin(world):
    w = world
    install_plugin(w.monkeypatch, w.root, "broken", BROKEN_REGISTRATIONS)
    out = w.cli("params", "badpreset")
    assert out.exit_code == 2
    assert out.one_error() == ("Error: plugin 'broken': preset_defaults of 'badpreset' gives a value outside its "
                               "declared parameter: badpreset.k=-5 is out of range; allowed: badpreset.k >= 1 (preset "
                               "quick, dataset mnist5k)")
    from odnbench import plan
    from odnbench.registry import get_registry

    grid = plan.plan_grid(get_registry(), ["badpreset", "full"], ["mnist5k"], ["resnet18"], [0], "smoke")
    errors = {c.config["method"]: c.error for c in grid.cells}
    assert errors["full"] is None and errors["badpreset"].startswith("plugin 'broken': preset_defaults of 'badpreset'")


# --- messages --------------------------------------------------------------------------------------------

def test_a_full_disk_while_saving_the_model_is_not_blamed_on_the_plugin(world, monkeypatch):
    w = world
    target = {}

    def full(self, model, folder, example=None):
        target["path"] = Path(folder) / MODEL_FILE
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target["path"]))

    monkeypatch.setattr(ResultStore, "save_model", full)
    out = w.compare("--method", "full", "--seed", "1")
    assert out.exit_code == 1
    error = w.results.joinpath(target["path"].parent.name, RESULT_FILE)
    stored = json.loads(error.read_text())
    assert stored["error"] == (f"No space left on device while writing {target['path']}: the disk (or a file-size "
                               "limit) is full; free space, then rerun (the cell runs again)")
    assert "plugin" not in stored["error"] and "traceback" not in stored
    w.intact()


def _odnbench(*args: str, env: dict | None = None, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit():
        if limit_bytes is not None:
            import resource

            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    full_env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins")]),
                "ODNBENCH_LOAD_PLUGINS": "odnbench", **(env or {})}
    return subprocess.run([sys.executable, "-c", "from odnbench.cli import main; main()", *args], env=full_env,
                          capture_output=True, text=True, preexec_fn=limit, timeout=240)


def test_publish_under_a_file_size_limit_gives_the_real_reason(world):
    w = world
    out_dir = w.root / "pages"
    first = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert first.exit_code == 0, first.stderr
    pages = {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    done = _odnbench("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir),
                     limit_bytes=4096)
    assert done.returncode == 1
    [line] = [x for x in done.stderr.splitlines() if x.startswith("Error:")]
    assert "Error: Error" not in line and ": File too large (copying " in line
    assert pages == {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}  # the old set is whole
    assert not list(w.root.glob(".pages.publish-*"))


def test_interrupted_publishes_leave_no_staging_folders_for_ever(world):
    w = world
    out_dir = w.root / "pages"
    dead = w.root / ".pages.publish-999999999-abcd"  # no such process
    legacy = w.root / ".pages.publish-old1"  # before the pid was in the name: stale after an hour
    live = w.root / f".pages.publish-{os.getpid()}-live"  # a publish still running: kept
    for folder in (dead, legacy, live):
        folder.mkdir()
        (folder / "README.md").write_text("half a set")
    os.utime(legacy, (0, 0))
    out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert out.exit_code == 0, out.stderr
    assert not dead.exists() and not legacy.exists() and live.is_dir()
    assert f"note: removed {dead.name}, left beside --out by an interrupted publish" in out.stderr


def test_odn_lr_out_of_range_is_refused_at_plan_time(world):
    w = world
    before = _files(w.root)
    out = w.compare("--method", "odn", "--set", "odn.lr=1e300", results=w.root / "new")
    assert out.exit_code == 2
    assert out.one_error() == "Error: --set odn.lr=1e+300 is out of range; allowed: 0 < odn.lr <= 10 (or none)"
    assert not (w.root / "new").exists() and _outside(w, before) == []


def test_odn_curve_on_a_record_schema_only_accepts(world):
    w = world
    d = json.loads((w.cell / RESULT_FILE).read_text())
    d["config"] = {**d["config"], "method": "odn", "params": {}}
    d["key"] = cell_key(d["config"])
    d["method_info"] = {"depth_curve": [{"depth": "deep"}], "threshold": "high"}
    folder = w.results / cell_dirname(d["config"])
    shutil.copytree(w.cell, folder)
    _restamp(folder, lambda r: r.update(config=d["config"], key=d["key"], method_info=d["method_info"]))
    assert w.verify("--schema-only").exit_code == 0
    from odnbench import cli as cli_module

    cli_module._add_plugin_commands()
    out = w.cli("odn-curve", str(folder))
    assert out.exit_code == 2
    assert out.one_error().startswith(f"Error: {folder}: its method_info does not hold an ODN depth curve odn-curve "
                                      "can read (")


def test_a_bad_width_in_a_grid_file_names_the_file_and_line(world):
    w = world
    grid = w.root / "grid.toml"
    grid.write_text('preset = "smoke"\n\n[recipe]\nwidth = "8,16,16"\n\n[[method]]\nname = "full"\n')
    out = w.compare("--grid", str(grid), results=w.root / "new")
    assert out.exit_code == 2
    assert out.one_error() == (f"Error: {grid}:4: recipe.width: backbone 'resnet18' cannot be built at width 8,16,16: "
                               "resnet18 takes 4 stage widths (e.g. 16,32,64,128) or full, got 3")
    assert "--set" not in out.one_error() and not (w.root / "new").exists()


def test_a_workers_keyboard_interrupt_goes_to_the_cell_log(world, capfd):
    w = world
    from odnbench.executors import LOG_FILE, run_logged
    from odnbench.plan import Cell
    from odnbench.registry import get_registry

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    config = json.loads((w.cell / RESULT_FILE).read_text())["config"]
    outcome = run_logged(interrupted, get_registry(), Cell(config), w.root / "other", data_dir=w.root,
                         download=False, device="cpu", threads=1, executor={"name": "process"})
    kind, message, text = outcome
    assert kind == "error" and message.startswith("the cell raised KeyboardInterrupt in a worker process")
    log = (w.root / "other" / cell_dirname(config) / LOG_FILE).read_text()
    assert "Traceback" in log and "KeyboardInterrupt" in log
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err + captured.out

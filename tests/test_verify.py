"""`odnbench leaderboard verify`: schema and key checks, and re-evaluation of stored models.

Two real smoke cells (full, seeds 0 and 1) run once for the module; each test tampers with its
own copy of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from odnbench.store import (
    MODEL_FILE,
    RESULT_FILE,
    ResultStore,
    cell_dirname,
    cell_key,
    load_model,
    result_digest,
    save_model,
    write_json,
)
from odnbench.verify import check_schema, verify


@pytest.fixture
def fresh(smoke_full_results) -> Path:
    """Two finished smoke cells (conftest's shared session grid; read-only here)."""
    return smoke_full_results


@pytest.fixture
def results(fresh, tmp_path) -> Path:
    """A private copy of the fresh results to tamper with."""
    return Path(shutil.copytree(fresh, tmp_path / "results"))


def _cells(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (p / RESULT_FILE).is_file())


def _restamp(cell: Path, stored: dict | None = None) -> None:
    """What a thorough tamperer does after changing a cell: record the new files' checksums and
    recompute the digest, so that only re-measuring can tell."""
    stored = stored or json.loads((cell / RESULT_FILE).read_text())
    stored["files"] = ResultStore(cell.parent).checksums(cell)
    stored["digest"] = result_digest(stored)
    write_json(cell / RESULT_FILE, stored)


def _cli(results: Path, *extra):
    from odnbench.cli import cli

    # No --data-dir: each result names the folder it was run with.
    return CliRunner().invoke(cli, ["leaderboard", "verify", "--results", str(results), "--no-download", *extra])


@pytest.mark.slow
def test_fresh_results_pass_with_reevaluation(fresh):
    res = _cli(fresh)
    assert res.exit_code == 0, res.output
    assert "2 ok (2 re-evaluated, 0 schema only), 0 with problems" in res.output
    for cell in _cells(fresh):
        assert f"ok       {cell.name}: schema ok; re-evaluated on cpu" in res.output


@pytest.mark.slow
def test_verify_loads_the_data_folder_recorded_in_each_result(fresh, tmp_path, monkeypatch):
    from odnbench import runtime
    from odnbench import verify as verify_module
    from odnbench.result import Result

    stored = Result.from_dict(json.loads((_cells(fresh)[0] / RESULT_FILE).read_text()))
    assert stored.data["data_dir"] == str((fresh / "data").resolve())
    seen = []
    real_get = runtime.DATA_CACHE.get
    monkeypatch.setattr(runtime.DATA_CACHE, "get", lambda reg, name, data_dir, *a: seen.append(data_dir)
                        or real_get(reg, name, data_dir, *a))
    assert _cli(fresh).exit_code == 0
    assert set(map(str, seen)) == {str((fresh / "data").resolve())}
    other = tmp_path / "elsewhere"
    other.mkdir()
    seen.clear()
    assert _cli(fresh, "--data-dir", str(other)).exit_code == 0  # --data-dir overrides the recorded folder
    assert set(map(str, seen)) == {str(other)}
    # A recorded folder that is not on this machine: the default folder, said in the report.
    stored.data["data_dir"] = str(tmp_path / "gone")
    assert verify_module.data_dir_for(stored, None) == (
        runtime.default_data_dir(), f"the recorded data folder {tmp_path / 'gone'} is not here; used "
                                    f"{runtime.default_data_dir()}")


def test_verify_refuses_a_data_dir_that_does_not_exist(fresh, tmp_path):
    res = _cli(fresh, "--data-dir", str(tmp_path / "nope" / "data"))
    assert res.exit_code == 2 and not (tmp_path / "nope").exists()
    assert res.output.startswith(f"Error: --data-dir {tmp_path / 'nope' / 'data'} does not exist")


@pytest.mark.slow
def test_tampered_top1_is_reported(results):
    cell = _cells(results)[0]
    stored = json.loads((cell / RESULT_FILE).read_text())
    stored["metrics"]["top1"] = round(stored["metrics"]["top1"] + 0.5, 4)  # still a valid percentage
    write_json(cell / RESULT_FILE, stored)
    res = _cli(results)
    assert res.exit_code == 1
    line = next(x for x in res.output.splitlines() if cell.name in x)
    assert line.startswith("PROBLEM") and "metrics.top1 stored" in line and "re-measured" in line
    assert "result.json was edited after it was written" in line  # the digest tells, and re-measuring says what
    assert "1 with problems" in res.output
    _restamp(cell, stored)  # a digest recomputed by the tamperer: re-measuring still tells
    line = next(x for x in _cli(results).output.splitlines() if cell.name in x)
    assert line.startswith("PROBLEM") and "metrics.top1 stored" in line and "edited" not in line


@pytest.mark.slow
def test_overwritten_weights_are_caught(results):
    a, b = _cells(results)
    top_a = json.loads((a / RESULT_FILE).read_text())["metrics"]["top1"]
    top_b = json.loads((b / RESULT_FILE).read_text())["metrics"]["top1"]
    assert abs(top_a - top_b) > 0.01  # the two seeds' models really differ on the test split
    shutil.copyfile(b / MODEL_FILE, a / MODEL_FILE)  # same architecture, other weights
    report = verify(results, data_dir=results / "data", download=False)
    bad = {c.folder: c for c in report.problems}
    assert list(bad) == [a.name]
    assert bad[a.name].problems == [bad[a.name].problems[0]]
    assert bad[a.name].problems[0].startswith(f"{MODEL_FILE} changed since its result was written (sha256")
    _restamp(a)  # checksums and digest recomputed: the weights still score differently
    bad = {c.folder: c for c in verify(results, data_dir=results / "data", download=False).problems}
    assert list(bad) == [a.name]
    assert any(p.startswith("metrics.top1 stored") for p in bad[a.name].problems)


@pytest.mark.slow
def test_replaced_architecture_is_caught(results):
    cell = _cells(results)[0]
    model = load_model(cell / MODEL_FILE)
    save_model(model.truncated(2), cell / MODEL_FILE)
    _restamp(cell)
    report = verify(results, data_dir=results / "data", download=False)
    problems = " ".join(report.problems[0].problems)
    assert report.problems[0].folder == cell.name
    assert "metrics.params stored" in problems and "metrics.size_mb stored" in problems
    assert "metrics.macs stored" in problems


@pytest.mark.slow
def test_garbage_model_file_is_a_finding_not_a_crash(results):
    cell = _cells(results)[0]
    (cell / MODEL_FILE).write_bytes(b"not a model")
    res = _cli(results)
    assert res.exit_code == 1 and f"PROBLEM  {cell.name}: {MODEL_FILE} changed since its result was written" in res.output
    _restamp(cell)
    res = _cli(results)
    assert res.exit_code == 1
    assert f"PROBLEM  {cell.name}: could not re-evaluate: {MODEL_FILE} is not a stored model" in res.output


def test_schema_and_key_problems(results):
    a, b = _cells(results)
    ra = json.loads((a / RESULT_FILE).read_text())
    ra["config"]["seed"] = 7  # the folder's key no longer matches the config
    write_json(a / RESULT_FILE, ra)
    rb = json.loads((b / RESULT_FILE).read_text())
    del rb["metrics"]["macs"]
    rb["cost"]["epochs"] = "one"
    write_json(b / RESULT_FILE, rb)
    broken = results / "full-x-y-s0-000000000000"
    broken.mkdir()
    (broken / RESULT_FILE).write_text("{not json")
    res = _cli(results)
    assert res.exit_code == 1
    out = res.output
    assert f"PROBLEM  {a.name}: folder name does not end with the config's key" in out
    line_b = next(x for x in out.splitlines() if b.name in x)
    assert "metrics.macs is missing" in line_b and "cost.epochs is str" in line_b
    assert f"PROBLEM  {broken.name}: result.json is not readable JSON" in out
    assert "3 with problems" in out


def test_records_without_models_fail_unless_schema_only(results):
    first, second = _cells(results)[:2]
    (first / MODEL_FILE).unlink()  # one model gone while the other is there: that record fails
    res = _cli(results)
    assert res.exit_code == 1, res.output
    assert res.output.count(f"{MODEL_FILE} is missing: an ok result must keep its model files") == 1
    assert f"PROBLEM  {first.name}: {MODEL_FILE} is missing" in res.output
    (second / MODEL_FILE).unlink()
    failed = json.loads((_cells(results)[0] / RESULT_FILE).read_text())
    failed["config"]["method"] = "prune"
    failed.update(status="failed", error="method 'prune' raised RuntimeError: boom", metrics=None, files=None,
                  model_file=None)
    failed["key"] = cell_key(failed["config"])
    failed["digest"] = result_digest(failed)
    write_json(results / cell_dirname(failed["config"]) / RESULT_FILE, failed)
    # No model file anywhere (records published without models, issue 33): said once, the rest checked.
    res = _cli(results)
    assert res.exit_code == 0, res.output
    assert MODEL_FILE not in res.output
    assert res.output.count("no model files in ") == 1 and "no model was re-measured" in res.output
    assert res.output.count("schema only (not re-measured: see the note on model files)") == 2
    assert "failed cell (recorded as failed" in res.output
    assert "3 ok (0 re-evaluated, 3 schema only), 0 with problems; passed: schema 3/3, digest 3/3, model files 0/3, " \
           "re-measured 0/3" in res.output
    res = _cli(results, "--schema-only")  # records published without their models
    assert res.exit_code == 0, res.output
    assert res.output.count("schema only (--schema-only)") == 2
    assert "3 ok (0 re-evaluated, 3 schema only)" in res.output


def test_check_schema_requires_every_field(fresh):
    good = json.loads((_cells(fresh)[0] / RESULT_FILE).read_text())
    name = _cells(fresh)[0].name
    assert check_schema(good, name) == []
    for path in ("status", "config.preset", "metrics.size_mib", "metrics.latency_ms.p90", "metrics.throughput",
                 "cost.sample_steps", "cost.train_seconds", "cost.device", "method_info", "env"):
        bad = json.loads(json.dumps(good))
        d = bad
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]
        problems = check_schema(bad, name)
        assert problems and path in problems[0], (path, problems)
    assert "must be a percentage" in " ".join(check_schema({**good, "metrics": {**good["metrics"], "top1": 140}},
                                                           name))

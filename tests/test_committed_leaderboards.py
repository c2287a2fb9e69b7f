"""The committed leaderboards are derived from the committed result records alone: publishing
them again reproduces every page, table and the index byte for byte, and every record passes
`leaderboard verify` (schema only: the model weights are not committed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BOARDS = REPO / "leaderboards"
RESULTS = BOARDS / "results"
TEXT_SUFFIXES = {".md", ".json", ".csv"}


def _odnbench(args, cwd):
    return subprocess.run([sys.executable, "-c", "from odnbench.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, env=os.environ.copy(), timeout=600)


@pytest.fixture
def committed():
    if not any(RESULTS.glob("*/result.json")):
        pytest.skip("no committed results in leaderboards/results")
    return RESULTS


@pytest.mark.slow
def test_republishing_reproduces_the_committed_pages(committed, tmp_path):
    copy = tmp_path / "leaderboards" / "results"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("*.pt", "leaderboard.md"))
    done = _odnbench(["leaderboard", "publish", "--results", "leaderboards/results", "--out", "leaderboards"],
                     cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    produced = {p.relative_to(tmp_path / "leaderboards") for p in (tmp_path / "leaderboards").rglob("*")
                if p.is_file() and "results" not in p.relative_to(tmp_path / "leaderboards").parts}
    committed_files = {p.relative_to(BOARDS) for p in BOARDS.rglob("*")
                       if p.is_file() and p.parent != BOARDS or p.name == "README.md"}
    committed_files = {p for p in committed_files
                       if "results" not in p.parts and p.suffix in TEXT_SUFFIXES | {".png"}}
    assert produced == committed_files
    for rel in sorted(produced):
        if rel.suffix in TEXT_SUFFIXES:  # PNG bytes depend on the matplotlib/freetype build
            assert (tmp_path / "leaderboards" / rel).read_bytes() == (BOARDS / rel).read_bytes(), rel


def test_committed_records_pass_verify(committed, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(committed, copy, ignore=shutil.ignore_patterns("*.pt"))
    done = _odnbench(["leaderboard", "verify", "--results", str(copy), "--schema-only"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PROBLEM" not in done.stdout


def test_every_committed_record_came_from_a_committed_grid_file_as_it_is_now(committed):
    """The pages name the grid file that produced them (with its sha256): the records must say the
    same file, and the committed file must still be that file byte for byte."""
    import hashlib
    import json

    grids = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (BOARDS / "grids").glob("*.toml")}
    used = set()
    for path in committed.glob("*/result.json"):
        provenance = json.loads(path.read_text()).get("provenance") or {}
        assert provenance.get("grid") in grids, f"{path.parent.name}: no committed grid file produced it"
        assert provenance["grid_sha256"] == grids[provenance["grid"]], f"{provenance['grid']} changed since it ran"
        used.add(provenance["grid"])
    assert used == set(grids)  # and every committed grid file has its board

"""The worked third-party example examples/odnbench-oneshot-odn: its own distribution, not
registered by odnbench's pyproject, ranked on one leaderboard with odn, prune and full.
(Its own tests: ``pytest examples/odnbench-oneshot-odn``.)"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "odnbench-oneshot-odn"


def test_example_is_its_own_distribution():
    core = tomllib.loads((REPO / "pyproject.toml").read_text())
    example = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())
    assert "oneshot-odn" not in core["project"]["entry-points"]["odnbench"]
    assert "odnbench_oneshot_odn" not in str(core)
    assert example["project"]["name"] == "odnbench-oneshot-odn"
    assert example["project"]["entry-points"]["odnbench"] == {"oneshot-odn": "odnbench_oneshot_odn"}


@pytest.mark.slow
def test_example_ranks_next_to_odn_prune_and_full(monkeypatch, tmp_path):
    from odnbench import harness, plan
    from odnbench.progress import Progress
    from odnbench.report import build_boards, load_results
    from odnbench.testing import registry_with

    monkeypatch.syspath_prepend(str(EXAMPLE))
    plugin = importlib.import_module("odnbench_oneshot_odn")
    reg = registry_with(plugin)
    methods = ["oneshot-odn", "odn", "prune", "full"]
    grid = plan.plan_grid(reg, methods, ["mnist5k"], ["resnet18"], [0], "smoke")
    report = harness.run_grid(reg, grid, tmp_path, data_dir=tmp_path, download=False,
                              progress=Progress(quiet=True))
    assert not report.failed, [r.error for r in report.failed]
    [board] = build_boards(load_results(tmp_path))
    rows = {row.method: row.stats for row in board.rows}
    assert set(rows) == set(methods)
    assert sorted(f.rank for f in rows.values()) == [1, 2, 3, 4]
    one = next(r for r in report.results if r.method == "oneshot-odn")
    assert one.plugin == "odnbench_oneshot_odn"
    assert rows["oneshot-odn"].params == one.metrics["params"]
    assert rows["oneshot-odn"].depth == [one.facts.depth]

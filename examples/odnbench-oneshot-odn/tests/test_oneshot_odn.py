"""One-shot ODN through odnbench's real harness (smoke preset: seconds on a CPU).

Run with ``pytest examples/odnbench-oneshot-odn`` (installed or not: the package root is on
pytest's pythonpath, and ``plugins=[...]`` registers it when it is not installed).
"""

import odnbench_oneshot_odn
import pytest
from odnbench_oneshot_odn.train import choose_depth

from odnbench import OdnbenchError

pytest_plugins = ["odnbench.testing"]
PLUGIN = [odnbench_oneshot_odn]


def test_choose_depth_takes_the_shallowest_head_that_meets_the_threshold():
    assert choose_depth([50.0, 80.0, 90.0, 91.0], 85.0) == (3, True)
    assert choose_depth([50.0, 85.0, 90.0, 91.0], 85.0) == (2, True)  # "meets" includes equality
    # Nothing meets it: the most accurate head, the shallowest among equals.
    assert choose_depth([50.0, 80.0, 80.0, 60.0], 85.0) == (2, False)


def test_relative_target_uses_the_full_result(check_method):
    check = check_method("oneshot-odn", plugins=PLUGIN)
    info = check.info
    full = next(r for r in check.results if r.method == "full")
    assert info["target_mode"] == "relative"
    assert info["full_val_top1"] == full.metrics["val_top1"]
    assert info["threshold"] == check.facts.threshold == round(full.metrics["val_top1"] - 1.75, 6)
    assert len(info["exit_val"]) == info["blocks"] == 8
    k = check.facts.depth
    assert check.model.depth == k
    # The exported network is head k of the jointly trained model: same validation accuracy.
    assert check.metrics["val_top1"] == pytest.approx(info["exit_val"][k - 1], abs=1e-6)
    if check.facts.reached_target:
        assert all(v < info["threshold"] for v in info["exit_val"][: k - 1])
        assert info["exit_val"][k - 1] >= info["threshold"]
    # Its cost to obtain includes the full-depth training the relative target needed.
    parts = check.result.cost["parts"]
    assert parts["full (dependency)"]["epochs"] == full.cost["epochs"]
    assert check.result.cost["epochs"] == full.cost["epochs"] + parts["joint training"]["epochs"]


def test_fixed_target_needs_no_full_run(check_method):
    # threshold = 0.5 - 0.5 = 0: every head meets it, so depth 1 is the shallowest that does.
    check = check_method("oneshot-odn", sets=["oneshot-odn.target=0.5", "oneshot-odn.tolerance=0.5"],
                         plugins=PLUGIN)
    assert [r.method for r in check.results] == ["oneshot-odn"]
    assert check.info["target_mode"] == "fixed" and check.info["threshold"] == 0.0
    assert check.facts.depth == 1 and check.facts.reached_target is True
    assert check.model.depth == 1


def test_bad_values_fail_before_training(check_method):
    with pytest.raises(OdnbenchError, match=r"oneshot-odn.epochs=0 is out of range; allowed: oneshot-odn.epochs >= 1"):
        check_method("oneshot-odn", sets=["oneshot-odn.epochs=0"], plugins=PLUGIN)

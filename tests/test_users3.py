"""Round three for users and plugin authors (issue #33): an ETA that never says 0 while work
remains, own and with-dependencies times, swept values in every line, `compare --dry-run`, the
public tolerance, a plan-time backbone check, sub-run seeding, FitResult.train_macs, the CLI for
tests (`python -m odnbench`, `odnbench.testing.run_cli`) and the 0.1 shim's whole view."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import odnbench
from odnbench import Method, MethodOutput, Param, Requirement, hookimpl, plan
from odnbench.errors import OdnbenchDeprecationWarning, OdnbenchError, PluginError
from odnbench.executors import RunSpec
from odnbench.progress import Progress
from odnbench.result import Result
from odnbench.scheduler import Eta, Scheduler, stored_times
from odnbench.store import ResultStore

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["odnbench.testing"]  # check_method (imported here by pytest, so imported lazily below)


def run_cli(args):
    from odnbench.testing import run_cli

    return run_cli(args)


def registry_with(*plugins):
    from odnbench.testing import registry_with

    return registry_with(*plugins)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ----------------------------------------------------------------------------------- the ETA


def test_a_running_cell_past_the_mean_still_counts_an_epoch_never_zero():
    clock = Clock()
    eta = Eta(clock)
    eta.start("full")
    clock.now += 100
    eta.finish("full")
    eta.start("odn")
    clock.now += 400  # far past the mean cell (100 s), with no budget reported
    eta.epoch("odn", 0, 0, 12.0)
    assert eta.seconds_left(pending=0) == pytest.approx(12.0)
    assert "ETA 0.0 min" not in eta.text(1, 2, 0)


def test_a_methods_remaining_budget_times_its_measured_epochs():
    """ODN reports (epochs so far, so far + the most it may still train): its remaining depths at
    their cap plus its fine-tune cap; the ETA is that many epochs at the measured pace."""
    clock = Clock()
    eta = Eta(clock)
    eta.start("odn")
    clock.now += 30
    eta.epoch("odn", 3, 3 + 25, 10.0)
    eta.epoch("odn", 4, 4 + 24, 20.0)  # mean 15 s an epoch, 24 epochs of budget left
    assert eta.seconds_left(pending=0) == pytest.approx(24 * 15.0)
    assert eta.text(0, 1, 0) == "0/1 finished, ETA 6.0 min, running cells to their epoch caps"  # said as a bound


def test_odn_reports_its_remaining_search_and_fine_tune_budget():
    from odnbench_plugins.odn.search import OdnSchedule, epochs_left

    p = {"max_epochs_per_depth": 10, "finetune_max_epochs": 6}
    sched = OdnSchedule(first_depth=1, last_depth=8, threshold=99.0, base_lr=0.1, patience=4,
                        max_epochs_per_depth=10, finetune_max_epochs=6, finetune_schedule="cosine")
    # Before depth 1's first epoch: 9 more at depth 1, 7 deeper depths x 10, then 6 fine-tune epochs.
    assert epochs_left(sched, p) == 9 + 70 + 6
    sched.observe(50.0)
    assert epochs_left(sched, p) == 8 + 70 + 6
    while sched.phase == "search":
        sched.observe(50.0)  # never reaches 99: every depth runs to patience, the last one then fine-tunes
    assert sched.phase == "fine-tune" and epochs_left(sched, p) == 5
    seen = []
    while not sched.done:
        seen.append(epochs_left(sched, p))
        sched.observe(50.0)
    assert seen == [5, 4, 3, 2]  # patience (4) ended the fine-tune before its cap (6): an upper bound


def test_pending_cells_count_as_their_stored_configurations(reg, tmp_path):
    clock = Clock()
    eta = Eta(clock)
    eta.start("a")
    clock.now += 10
    eta.finish("a")
    # One pending cell with a stored record of its configuration (300 s), one without (the mean, 10 s).
    assert eta.seconds_left([300.0, None]) == pytest.approx(310.0)


# ------------------------------------------------------------------ progress lines on a fake executor


class SerialFake:
    """Runs each submitted cell at once through the given run_cell, 10 s on the clock each."""

    def __init__(self, clock):
        self.clock, self.queue = clock, []

    def info(self):
        return {"name": "fake", "cells_at_once": 1}

    def start(self, run):
        self.run = run
        return ""

    def free(self):
        return 1 - len(self.queue)

    def submit(self, cell):
        self.queue.append(cell)

    def wait(self, timeout):
        cell = self.queue.pop(0)
        self.clock.now += 10
        r = self.run
        return [(cell, r.run_cell(r.registry, cell, r.results_dir, progress=r.progress))]

    def close(self):
        pass


def costed_run_cell(registry, cell, results_dir, **kwargs):
    """Stores an ok result whose cost says 5 s of its own training plus 7 s of each dependency's."""
    deps = {k: {"method": "x", "epochs": 1, "sample_steps": 1, "train_seconds": 7.0, "train_macs": 1}
            for k in cell.requires.values()}
    cost = {"train_seconds": 5.0 + 7.0 * len(deps), "own": {"train_seconds": 5.0}, "dependencies": deps}
    result = Result(status="ok", key=cell.key, config=cell.config, cost=cost, wall_seconds=10.0,
                    metrics={"top1": 50.0, "params": 10, "size_mb": 0.1})
    ResultStore(results_dir).write(result)
    return result


def run_fake(reg, grid, results: Path, clock=None) -> list[str]:
    clock = clock or Clock()
    stream = io.StringIO()
    run = RunSpec(registry=reg, results_dir=results, data_dir=results, download=False, device=torch.device("cpu"),
                  progress=Progress(stream=stream), grid_cells=grid.by_key(), run_cell=costed_run_cell,
                  record_failure=None)
    Scheduler(grid, SerialFake(clock), run, clock=clock).run()
    return stream.getvalue().splitlines()


def test_progress_and_resume_lines_say_own_time_and_the_swept_values(reg, tmp_path):
    grid = plan.plan_grid(reg, ["prune"], ["mnist5k"], ["resnet18"], [0], "smoke", ["prune.ratio=0.3,0.5"])
    lines = run_fake(reg, grid, tmp_path / "results")
    done = [line for line in lines if " done " in line]
    assert any("done full " in line and "5s own training;" in line for line in done)
    pruned = [line for line in done if "prune" in line]
    # Both values of the sweep are named, the default 0.5 too, and each time is said as own / with dependencies.
    assert any("prune (ratio=0.3) |" in line for line in pruned) and any("prune (ratio=0.5) |" in line for line in pruned)
    assert all("5s own training, 12s with dependencies" in line for line in pruned)
    again = run_fake(reg, grid, tmp_path / "results")  # resume: every cell is stored
    assert any("prune (ratio=0.3) |" in line and "done already (resume), skipped" in line for line in again)


def test_a_grid_run_uses_stored_configurations_for_its_eta(reg, tmp_path):
    results = tmp_path / "results"
    run_fake(reg, plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke"), results)
    assert list(stored_times(ResultStore(results)).values()) == [[10.0]]
    grid = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [1, 2, 3], "smoke")
    lines = run_fake(reg, grid, results)
    # After the first new cell: two left, each expected to take what seed 0's stored cell took (10 s).
    started = [line for line in lines if line.startswith("[2/3] full")]
    assert started and started[0].endswith(f"1/3 finished, ETA {20 / 60:.1f} min")


# ------------------------------------------------------------------------------------ --dry-run


@pytest.mark.slow
def test_dry_run_lists_the_committed_grid_as_stored_and_trains_nothing(tmp_path):
    results = REPO / "leaderboards" / "results"
    before = sorted((p.name, p.stat().st_mtime_ns) for p in results.rglob("*"))
    out = run_cli(["compare", "--dry-run", "--grid", REPO / "leaderboards/grids/mnist5k-quick.toml",
                   "--results", results])
    assert out.exit_code == 0, out.output
    cells = [line for line in out.stdout.splitlines() if line.startswith("[")]
    assert len(cells) == 145 and all(": stored (" in line for line in cells)
    assert any(line.startswith("[4/145] oracle (train_all=False, schedule=odn,") and "| mnist5k |" in line
               and "needs [1]" in line for line in cells)
    assert out.stdout.splitlines()[-1] == "145 stored, 0 to run"
    assert sorted((p.name, p.stat().st_mtime_ns) for p in results.rglob("*")) == before  # nothing written


def test_dry_run_estimates_from_stored_cells_of_the_same_configuration(reg, tmp_path):
    results = tmp_path / "results"
    run_fake(reg, plan.plan_grid(reg, ["truncate"], ["mnist5k"], ["resnet18"], [0], "smoke"), results)
    stored_before = sorted(p.name for p in results.iterdir())
    out = run_cli(["compare", "--dry-run", "--method", "truncate", "--seed", "0", "--seed", "1", "--preset", "smoke",
                   "--results", results])
    assert out.exit_code == 0, out.output
    lines = out.stdout.splitlines()
    seed1 = [line for line in lines if "| seed 1 |" in line]
    assert len(seed1) == 3 and all("to run; ~0.2 min (mean of 1 stored cell of this configuration)" in line
                                   for line in seed1)
    assert any(line.startswith("[") and "truncate | mnist5k | resnet18 | seed 1" in line and "needs [" in line
               for line in seed1)
    assert lines[-1] == "3 stored, 3 to run; ~0.5 min of cells from stored cells of the same configuration"
    assert sorted(p.name for p in results.iterdir()) == stored_before
    fresh = run_cli(["compare", "--dry-run", "--method", "odn", "--preset", "smoke", "--results", tmp_path / "none"])
    assert "no stored cell of this configuration" in fresh.stdout and not (tmp_path / "none").exists()


# ------------------------------------------------------------------------------- the tolerance


class FollowsBoard(Method):
    name = "follows"
    description = "test method: its tolerance follows the board's per preset"
    follows_board_tolerance = "slack"
    params = (Param("slack", float, 9.0, ge=0),)

    def run(self, ctx):
        raise AssertionError("never run")


class BadFollow(FollowsBoard):
    name = "badfollow"
    follows_board_tolerance = "nope"


class DepthBound(Method):
    name = "depthbound"
    description = "test method: a depth bound checked against the backbone at plan time"
    params = (Param("depth", int, 2, ge=1),)
    seen: list = []

    def check_backbone(self, params, backbone):
        DepthBound.seen.append(backbone)
        if params["depth"] > backbone.depth:
            raise OdnbenchError(f"depthbound.depth={params['depth']}: this backbone has {backbone.depth} blocks")

    def run(self, ctx):
        raise AssertionError("never run")


class Methods:
    @hookimpl
    def register_methods(self, register):
        register(FollowsBoard())
        register(BadFollow())
        register(DepthBound())


def test_the_tolerance_is_public_and_a_method_can_follow_the_boards(monkeypatch):
    from odnbench.report.boards import DEFAULT_TOLERANCE

    assert odnbench.DEFAULT_TOLERANCE == DEFAULT_TOLERANCE == 1.75
    assert [odnbench.target_tolerance(p) for p in ("quick", "tiny", "smoke", "paper")] == [0.75, 3.0, 1.75, 1.75]
    reg = registry_with(Methods())
    for preset, want in (("quick", 0.75), ("tiny", 3.0), ("smoke", 1.75)):
        assert plan.resolve_params(reg, "follows", preset, "mnist5k", {})["slack"] == want
        # the built-ins follow it too: ODN and the oracle stop on the same threshold
        assert plan.resolve_params(reg, "odn", preset, "mnist5k", {})["relative_tolerance"] == want
        assert plan.resolve_params(reg, "oracle", preset, "mnist5k", {})["relative_tolerance"] == want
    assert plan.resolve_params(reg, "follows", "quick", "mnist5k", {"slack": "2"})["slack"] == 2.0  # --set wins
    with pytest.raises(PluginError, match="follows_board_tolerance='nope' must name one of its float parameters"):
        plan.resolve_params(reg, "badfollow", "quick", "mnist5k", {})


# --------------------------------------------------------------------- the plan-time backbone check


def test_a_depth_bound_beyond_the_backbone_fails_at_plan_time(monkeypatch, tmp_path):
    reg = registry_with(Methods())
    DepthBound.seen.clear()
    plan.plan_grid(reg, ["depthbound"], ["mnist5k"], ["resnet18"], [0], "smoke")
    assert DepthBound.seen[-1] == odnbench.BackboneShape("resnet18", 8, (2, 2, 2, 2), (8, 16, 16, 32))
    with pytest.raises(OdnbenchError, match="depthbound on backbone 'resnet18': depthbound.depth=9: this backbone "
                                            "has 8 blocks"):
        plan.plan_grid(reg, ["depthbound"], ["mnist5k"], ["resnet18"], [0], "smoke", ["depthbound.depth=9"])
    # ODN's bound: one line, exit 2, before its full-depth dependency trains (nothing is written)
    out = run_cli(["compare", "--method", "odn", "--set", "odn.max_depth=12", "--preset", "smoke",
                   "--results", tmp_path / "r"])
    assert out.exit_code == 2
    assert out.stderr.strip() == ("Error: odn on backbone 'resnet18': odn.max_depth=12: backbone 'resnet18' has 8 "
                                  "blocks (stages [2, 2, 2, 2]); allowed: 1..8")
    assert not (tmp_path / "r").exists()


# ------------------------------------------------------------------------------ sub-run seeding


def _context(seed: int = 0):
    from odnbench.contract import MethodContext

    reg = registry_with()
    build = lambda: reg.backbone("resnet18").build(in_chans=1, num_classes=10, width=(8, 8, 8, 8))  # noqa: E731
    return MethodContext(method="m", params={}, splits=None, build_backbone=build, recipe=None, seed=seed,
                         device=torch.device("cpu"), progress=Progress(quiet=True),
                         trainer=SimpleNamespace(generator=torch.Generator().manual_seed(seed)), cost=None,
                         workdir=Path("."))


def _weights(net) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def test_each_sub_run_has_its_own_seed_whatever_ran_before():
    ctx = _context()
    assert ctx.sub_seed("teacher") == _context().sub_seed("teacher") != ctx.sub_seed("student")
    assert ctx.sub_seed("teacher") != _context(seed=1).sub_seed("teacher")
    with ctx.seeded("student"):
        alone = _weights(ctx.build_backbone())
    with ctx.seeded("teacher"):
        ctx.build_backbone()
        torch.rand(1000)  # the teacher draws more numbers: the student's weights must not move
        teacher_batches = ctx.trainer.generator
    with ctx.seeded("student"):
        after = _weights(ctx.build_backbone())
        student_batches = torch.randint(0, 10**9, (4,), generator=ctx.trainer.generator)
    assert torch.equal(alone, after)
    assert teacher_batches is not ctx.trainer.generator  # the trainer's own generator is back
    first = torch.randint(0, 10**9, (4,), generator=ctx.generator("student/batches"))
    assert torch.equal(student_batches, first)


# ---------------------------------------------------------- FitResult.train_macs and the 0.1 shim


class FitMacs(Method):
    name = "fitmacs"
    description = "test method: reports its fit's training compute"

    def run(self, ctx):
        model = ctx.build_backbone()
        fit = ctx.trainer.fit(model, label="fit")
        return MethodOutput(model, {"fit_macs": fit.train_macs})


class ReadsOdnDepth01(Method):
    """Written against odnbench 0.1: its dependency's result was a dict, the depth in method_info,
    the stage grouping in the network's meta."""

    name = "reads01"
    description = "test method: a 0.1 plugin reading an ODN dependency"

    def requires(self, params):
        return [Requirement("odn")]

    def run(self, ctx):
        depth = ctx.dependencies["odn"].result["method_info"]["depth"]
        net = ctx.build_backbone()
        return MethodOutput(net.truncated(depth), {"odn_depth": depth, "stage_blocks": net.meta["stage_blocks"]})


class More:
    @hookimpl
    def register_methods(self, register):
        register(FitMacs())
        register(ReadsOdnDepth01())


@pytest.mark.slow
def test_fit_result_carries_the_parts_training_compute(check_method):
    check = check_method("fitmacs", plugins=[More()])
    own = check.result.cost["own"]["train_macs"]
    assert own > 0 and check.info["fit_macs"] == own  # its only part: the fit


@pytest.mark.slow
def test_a_01_plugin_reads_an_odn_dependencys_depth_from_method_info_with_a_warning(check_method):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check = check_method("reads01", plugins=[More()])
    told = [str(w.message) for w in caught if issubclass(w.category, OdnbenchDeprecationWarning)]
    assert any("result['method_info']" in m for m in told), told
    assert any('meta["stage_blocks"]' in m for m in told), told
    assert check.info["stage_blocks"] == [2, 2, 2, 2]
    assert isinstance(check.info["odn_depth"], int) and check.result.facts.depth == check.info["odn_depth"]


@pytest.mark.slow
def test_odn_stores_the_tolerance_its_threshold_used(check_method):
    check = check_method("odn")
    facts = check.result.facts
    assert facts.tolerance == 1.75  # smoke follows the board's default
    assert facts.threshold == pytest.approx(check.info["target"] - 1.75)


def test_stage_blocks_reads_the_stages_of_a_stored_model_too(tmp_path):
    from odnbench.store import load_model, save_model

    net = registry_with().backbone("resnet34").build(in_chans=1, num_classes=10, width=(8, 8, 8, 8))
    save_model(net, tmp_path / "m.safetensors")
    loaded = load_model(tmp_path / "m.safetensors")
    for model in (net, loaded):
        with pytest.warns(OdnbenchDeprecationWarning, match="use net.stages instead"):
            assert model.meta["stage_blocks"] == [3, 4, 6, 3] == model.stages
        assert "stage_blocks" not in dict(model.meta)  # never stored: read from the stages


# ------------------------------------------------------------------------------ the CLI for tests


def test_run_cli_runs_the_command_with_click_runner_and_python_m_odnbench_works():
    out = run_cli(["list", "methods"])
    assert out.exit_code == 0 and "odn" in out.stdout
    bad = run_cli(["compare", "--method", "nope"])
    assert bad.exit_code == 2 and bad.stderr.startswith("Error: unknown method 'nope'")
    done = subprocess.run([sys.executable, "-m", "odnbench", "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"odnbench, version {odnbench.__version__}"

"""Speed options (recipe.precision / tf32 / memory_format / compile) and the speed benchmarks.

Speed targets themselves live in benchmarks/ (never wall-clock asserts here); these tests check
that the options are validated, recorded and keyed, that the defaults leave CPU training exactly
a plain PyTorch loop, that the speed suite (``pytest benchmarks``) runs every benchmark once with
benchmarks disabled and its ratio check catches a fall, that ``odnbench.testing.check_latency``
works, and that the GPU report script runs at tiny scale on a CPU.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from odnbench import plan
from odnbench.errors import OdnbenchError
from odnbench.execution import Execution
from odnbench.recipes import make_recipe

REPO = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bad, message", [
    ("recipe.precision=fp16", "recipe.precision='fp16' is not allowed; choose one of: fp32, bf16"),
    ("recipe.compile=maybe", "recipe.compile='maybe' is not a valid bool (true or false)"),
    ("recipe.tf32=2", "recipe.tf32='2' is not a valid bool (true or false)"),
    ("recipe.memory_format=nhwc",
     "recipe.memory_format='nhwc' is not allowed; choose one of: auto, channels_last, contiguous"),
])
def test_bad_speed_options_are_one_line_errors(reg, bad, message):
    with pytest.raises(OdnbenchError) as err:
        plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke", [bad])
    assert message in str(err.value) and "\n" not in str(err.value)
    from odnbench.cli import cli

    out = CliRunner().invoke(cli, ["compare", "-m", "full", "-p", "smoke", "--set", bad, "-r", "unused"])
    assert out.exit_code == 2 and message in out.output and "Traceback" not in out.output


def test_speed_options_are_recipe_fields_in_the_cell_key(reg):
    default = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke").cells[0]
    assert {k: default.config["recipe"][k] for k in ("precision", "tf32", "memory_format", "compile")} == \
        {"precision": "fp32", "tf32": True, "memory_format": "auto", "compile": False}
    keys = {default.key}
    for option in ("recipe.precision=bf16", "recipe.compile=true", "recipe.tf32=false",
                   "recipe.memory_format=channels_last"):
        keys.add(plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke", [option]).cells[0].key)
    assert len(keys) == 5


def test_execution_resolves_per_device():
    cpu = Execution.for_recipe(make_recipe("paper"), torch.device("cpu"))
    assert (cpu.precision, cpu.tf32, cpu.channels_last, cpu.compile, cpu.notes) == ("fp32", False, False, False, [])
    x = torch.randn(2, 3, 4, 4)
    assert cpu.input(x) is x  # the defaults touch nothing on a CPU
    forced = Execution.for_recipe(make_recipe("smoke", {"memory_format": "channels_last", "compile": "true",
                                                        "precision": "bf16"}), torch.device("cpu"))
    assert forced.channels_last and forced.input(x).is_contiguous(memory_format=torch.channels_last)
    assert not forced.compile and "recipe.compile=true skipped on CPU" in forced.notes[0]
    with forced.autocast():
        assert torch.nn.Linear(4, 2)(torch.randn(1, 4)).dtype == torch.bfloat16
    assert forced.env() == {"precision": "bf16", "tf32": False, "memory_format": "channels_last",
                            "compile": False, "cudnn_benchmark": False, "execution_notes": forced.notes}


def test_default_trainer_is_exactly_a_bare_pytorch_loop():
    """With the default recipe on a CPU the harness's Trainer does the very arithmetic a hand-written
    loop does: same data order, same steps, bit-identical weights (so this speed work changed no
    CPU result)."""
    bench = _script("loops")  # the loops the speed suite compares (benchmarks/test_bench_training.py)
    device = torch.device("cpu")
    splits = bench.load_splits(192, 64, device)
    recipe = make_recipe("smoke", {"batch_size": "64", "schedule": "none", "eval_batch_size": "50"})
    torch.manual_seed(0)
    from odnbench.registry import get_registry

    initial = get_registry().backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=(8, 8, 8, 8))
    bare, harness = copy.deepcopy(initial), copy.deepcopy(initial)
    bench.bare_run(bare, splits, recipe, device, 1, seed=3)
    bench.harness_run(harness, splits, recipe, device, 1, seed=3)
    b, h = bare.state_dict(), harness.state_dict()
    assert not torch.equal(b["stem.0.weight"], initial.state_dict()["stem.0.weight"])  # it trained
    assert all(torch.equal(b[k], h[k]) for k in b)


@pytest.fixture(scope="module")
def fast_cell(tmp_path_factory):
    """One smoke `odn` cell (and the `full` cell it needs) with bf16, compile and channels-last, on CPU."""
    from odnbench.cli import cli

    results = tmp_path_factory.mktemp("fast") / "results"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ODNBENCH_LOAD_PLUGINS", os.environ.get("ODNBENCH_LOAD_PLUGINS", "odnbench"))
        from odnbench import registry

        mp.setattr(registry, "_cached", None)
        out = CliRunner().invoke(cli, [
            "compare", "-m", "odn", "-p", "smoke", "-r", str(results), "--device", "cpu", "-q",
            "--set", "recipe.precision=bf16", "--set", "recipe.compile=true",
            "--set", "recipe.memory_format=channels_last"])
    assert out.exit_code == 0, out.output
    return results, out


@pytest.mark.slow
def test_a_bf16_compile_cell_runs_on_cpu_and_says_how(fast_cell):
    results, out = fast_cell
    records = {json.loads(p.read_text())["config"]["method"]: json.loads(p.read_text())
               for p in results.glob("*/result.json")}
    assert set(records) == {"full", "odn"} and all(r["status"] == "ok" for r in records.values())
    for r in records.values():
        assert r["config"]["recipe"]["precision"] == "bf16" and r["config"]["recipe"]["compile"] is True
        env = r["env"]
        assert (env["precision"], env["tf32"], env["memory_format"], env["compile"]) == \
            ("bf16", False, "channels_last", False)
        assert "recipe.compile=true skipped on CPU" in env["execution_notes"][0]
        assert 0 <= r["metrics"]["top1"] <= 100
    assert "bf16 autocast, channels-last" in (results / "leaderboard.md").read_text()  # the board's caption says so


@pytest.mark.slow
def test_verify_reevaluates_a_bf16_cell(fast_cell):
    from odnbench.cli import cli

    results, _ = fast_cell
    # no --data-dir: each result names the folder it loaded its data from (a --data-dir must exist)
    res = CliRunner().invoke(cli, ["leaderboard", "verify", "--results", str(results), "--no-download",
                                   "--tolerance", "0.0001"])
    assert res.exit_code == 0, res.output
    assert "2 ok (2 re-evaluated" in res.output


class _Spy(torch.nn.Module):
    """Records how each forward pass ran: autocast on?, input channels-last?"""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.seen = []

    def forward(self, x):
        self.seen.append((torch.is_autocast_enabled("cpu"), x.is_contiguous(memory_format=torch.channels_last)))
        return self.conv(x).mean((2, 3))


def test_evaluation_and_timing_run_in_the_training_precision_and_format():
    from odnbench import metrics

    ex = Execution.for_recipe(make_recipe("smoke", {"precision": "bf16", "memory_format": "channels_last"}),
                              torch.device("cpu"))
    spy = ex.model(_Spy())
    x, y = torch.randn(10, 3, 4, 4), torch.randint(0, 2, (10,))
    assert 0 <= metrics.top1(spy, x, y, 4, execution=ex) <= 100
    metrics.latency_ms(spy, (3, 4, 4), warmup=1, windows=1, iters=1, execution=ex)
    metrics.throughput(spy, (3, 4, 4), batch_size=2, warmup=1, windows=1, iters=1, execution=ex)
    assert len(spy.seen) == 3 + 2 + 2 and set(spy.seen) == {(True, True)}
    spy.seen.clear()
    metrics.top1(spy, x, y, 4)  # without an execution: plain fp32, as given
    assert set(spy.seen) == {(False, False)}


@pytest.mark.slow
def test_gpu_speed_report_runs_tiny_on_cpu(tmp_path):
    report = _script("gpu_speed_report")
    out = tmp_path / "speed.md"
    assert report.main(["--device", "cpu", "--widths", "8,8,8,8", "--steps", "2", "--warmup", "1",
                        "--precisions", "fp32,bf16", "--compile", "off,on", "--memory-formats", "auto",
                        "--depths", "1", "--eval-images", "64", "--eval-batch", "64", "--out", str(out), "--json", str(tmp_path / "speed.json")]) == 0
    text = out.read_text()
    assert "| 8,8,8,8 |" in text and "bf16" in text
    rows = json.loads((tmp_path / "speed.json").read_text())["rows"]
    assert all(r["error"] is None for r in rows), rows
    eager = [r for r in rows if not r["compile_asked"]]
    assert eager and all(r["train_img_s"] > 0 for r in eager)
    compiled = [r for r in rows if r["compile_asked"]]
    assert compiled and all("skipped on CPU" in (r["note"] or "") for r in compiled)


@pytest.mark.slow
def test_compiled_training_step_on_full_batches_only():
    """The compile path (dynamo + AOTAutograd; 'aot_eager' generates no code, so it runs on a CPU):
    full batches go through the compiled step, the short last batch runs eagerly, and the result
    matches eager training; ODN's multi-exit loss and depth switch trace too."""
    bench = _script("loops")
    from odnbench.progress import Progress
    from odnbench.registry import get_registry
    from odnbench.trainer import CostMeter, Trainer
    from odnbench_plugins.odn.search import MultiExitNet, summed_exit_loss

    device = torch.device("cpu")
    splits = bench.load_splits(80, 32, device)  # 64 + a short batch of 16
    recipe = make_recipe("smoke", {"batch_size": "64", "memory_format": "channels_last"})
    torch.manual_seed(0)
    initial = get_registry().backbone("resnet18").build(in_chans=1, num_classes=10, stem="cifar", width=(8, 8, 8, 8))
    calls = []

    def counting_loss(model, x, y):
        calls.append(len(y))  # runs at trace time for the compiled step, every call when eager
        return torch.nn.functional.cross_entropy(model(x), y)

    def train(compile_: bool):
        model = copy.deepcopy(initial)
        ex = Execution.for_recipe(recipe, device)
        ex.compile, ex.compile_backend = compile_, "aot_eager"
        trainer = Trainer(splits, recipe, device, Progress(quiet=True), CostMeter(), 0, execution=ex)
        stats = trainer.train_epoch(model, trainer.make_optimizer(model.parameters()), loss_fn=counting_loss)
        return model, stats

    eager, eager_stats = train(False)
    assert calls == [64, 16]
    calls.clear()
    compiled, compiled_stats = train(True)
    assert 16 in calls and calls.count(64) <= 2  # traced once (not called per step), the tail ran eagerly
    assert compiled_stats.loss == pytest.approx(eager_stats.loss, rel=1e-4)
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-4), name

    net = MultiExitNet(copy.deepcopy(initial))
    ex = Execution.for_recipe(recipe, device)
    ex.compile, ex.compile_backend = True, "aot_eager"
    trainer = Trainer(splits, recipe, device, Progress(quiet=True), CostMeter(), 0, execution=ex)
    opt = trainer.make_optimizer(net.trainable_parameters())
    assert trainer.train_epoch(net, opt, loss_fn=summed_exit_loss).loss > 0
    for depth in (1, 2):
        net.active = depth
        assert trainer.train_epoch(net, opt).loss > 0


@pytest.mark.slow
def test_one_thread_per_cell_by_default_and_old_records_read_as_they_ran():
    from odnbench.recipes import Recipe

    assert make_recipe("quick").threads == make_recipe("paper").threads == 1
    stored = make_recipe("quick").as_dict()
    assert Recipe.from_dict(stored).threads == 1
    del stored["threads"]  # a 0.1 config: it ran with the process's thread count
    assert Recipe.from_dict(stored).threads == 0
    assert Recipe.from_dict({**stored, "threads": 0}).threads == 0


def test_the_thread_count_is_in_the_cell_key(reg):
    one = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke").cells[0]
    assert one.config["recipe"]["threads"] == 1
    default = plan.plan_grid(reg, ["full"], ["mnist5k"], ["resnet18"], [0], "smoke", ["recipe.threads=0"]).cells[0]
    assert one.key != default.key


# ----------------------------------------------------------------------------------- the speed suite


BENCH = REPO / "benchmarks"
HARNESS_BENCH = "benchmarks/test_bench_training.py::test_harness_epoch_against_a_bare_loop"


@pytest.mark.slow
def test_the_speed_suite_runs_every_benchmark_once_and_its_ratio_check_catches_a_fall(tmp_path):
    """``pytest benchmarks --benchmark-disable`` (the suite's smoke run, each test once at its small
    size) against a ratio baseline in which the harness/bare-loop ratio was 100 (a fall now) and an
    epoch's fraction of peak was almost 0 (a rise): every benchmark passes, the fall fails the run."""
    grids = len(list((REPO / "leaderboards" / "grids").glob("*.toml")))
    expected = 1 + 4 + 6 + 3 + grids  # harness vs bare, 4 epoch settings, 3 depths x 2 batches, records/publish/help
    baseline = tmp_path / "0001_base.json"
    baseline.write_text(json.dumps({"benchmarks": [
        {"fullname": HARNESS_BENCH, "extra_info": {"ratios": {"bare_over_harness": 100.0}}},
        {"fullname": "benchmarks/test_bench_training.py::test_quick_width_training_epoch[fp32]",
         "extra_info": {"ratios": {"fraction_of_peak": 1e-9}}},
    ]}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
                           "--benchmark-disable", "--ratio-baseline", str(baseline)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert re.search(rf"\b{expected} passed\b", out) and " failed" not in out and " error" not in out, out
    assert done.returncode == 1, out  # the planted fall, nothing else
    lines = out.splitlines()
    fall = next(line for line in lines if line.startswith("test_harness_epoch_against_a_bare_loop bare_over_harness"))
    assert "100.000 -> " in fall and fall.endswith("REGRESSED")
    rise = next(line for line in lines if line.startswith("test_quick_width_training_epoch[fp32] fraction_of_peak"))
    assert rise.endswith(" ok")
    assert "test_quick_width_training_epoch[bf16] fraction_of_peak" in out and "(not in the baseline)" in out
    assert "1 ratio(s) regressed" in out


def test_ratio_check_fails_a_fall_beyond_the_tolerance_only(tmp_path, capsys):
    ratios = _script("ratios")
    base = {"b.py::t": {"r": 1.0, "gone": 2.0}}
    lines, regressions = ratios.compare(base, {"b.py::t": {"r": 0.91, "new": 3.0}}, 0.10)
    assert regressions == [] and "t r: 1.000 -> 0.910 (-9.0%) ok" in lines
    assert "t new: 3.000 (not in the baseline)" in lines and "t gone: in the baseline, not measured now" in lines
    _, regressions = ratios.compare(base, {"b.py::t": {"r": 0.89}}, 0.10)
    assert regressions == ["t r: 1.000 -> 0.890 (-11.0%) REGRESSED"]
    assert ratios.compare(base, {"b.py::t": {"r": 1.5}}, 0.10)[1] == []  # a rise never fails
    # the standalone form on two saved runs (pytest-benchmark's JSON, as --benchmark-save writes it)
    for name, value in (("0001_base", 1.0), ("0002_now", 0.5)):
        saved = {"benchmarks": [{"fullname": "b.py::t", "extra_info": {"ratios": {"r": value}, "other": 1}},
                                {"fullname": "b.py::u", "extra_info": {}}]}
        (tmp_path / "Linux" / f"{name}.json").parent.mkdir(exist_ok=True)
        (tmp_path / "Linux" / f"{name}.json").write_text(json.dumps(saved))
    assert ratios.resolve("0002", tmp_path) == tmp_path / "Linux" / "0002_now.json"
    assert ratios.main([str(tmp_path / "Linux" / "0001_base.json"), str(tmp_path / "Linux" / "0002_now.json")]) == 1
    assert "t r: 1.000 -> 0.500 (-50.0%) REGRESSED" in capsys.readouterr().out
    with pytest.raises(ValueError, match="0003: no such file, and 0 saved runs match"):
        ratios.resolve("0003", tmp_path)


def test_a_ratio_baseline_that_is_not_there_stops_the_suite_before_it_runs(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    done = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "-q", "-p", "no:cacheprovider",
                           "--benchmark-only", "--ratio-baseline", "9999", "--benchmark-storage", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout + done.stderr  # pytest's usage error
    assert f"--ratio-baseline 9999: no such file, and 0 saved runs match {tmp_path}/*/9999*.json" in done.stderr
    assert "passed" not in done.stdout


class _Classifier(torch.nn.Module):
    def __init__(self, per_image: bool = True):
        super().__init__()
        self.conv, self.head, self.per_image = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 10), per_image

    def forward(self, x):
        logits = self.head(self.conv(x).mean((2, 3)))
        return logits if self.per_image else logits.mean(0)


def test_check_latency_times_a_model_with_the_benchmark_fixture(benchmark):
    from odnbench.testing import check_latency

    model = _Classifier()
    ms = check_latency(benchmark, model, (1, 12, 12), batch=4)
    assert ms > 0 and model.training  # timed in eval mode, given back as it was
    info = benchmark.extra_info
    assert (info["batch"], info["threads"], info["device"], info["ms_per_image"]) == (4, 1, "cpu", round(ms, 6))
    assert info["images_per_s"] == pytest.approx(1000 / ms, rel=1e-3)


@pytest.mark.filterwarnings("ignore:Benchmark fixture was not used")  # each error comes before any timing
@pytest.mark.parametrize("model, shape, batch, message", [
    (_Classifier(per_image=False), (1, 12, 12), 2,
     "the model returns (10,) for a batch of 2; it must return one row per image"),
    (_Classifier(), (1, 12, 12), 0, "batch=0 must be a positive int"),
    (_Classifier(), (2, 12, 12.0), 1, "input_shape (2, 12, 12.0) must be positive ints (C, H, W), without the batch"),
    (lambda x: x, (1, 12, 12), 1, "model is a function, not a torch.nn.Module"),
], ids=["one-output-per-batch", "batch-0", "float-in-shape", "not-a-module"])
def test_check_latency_says_what_is_wrong(benchmark, model, shape, batch, message):
    from odnbench.testing import ContractError, check_latency

    with pytest.raises(ContractError) as err:
        check_latency(benchmark, model, shape, batch=batch)
    assert f"check_latency: {message}" in str(err.value)

"""The larger batch `--remeasure-latency` adds to a board, on hand-made results with known numbers
(test_leaderboard times real stored models; this checks what the board makes of the measurements):
its columns, its speed-up against the baseline, the sentence saying how latency was measured, and a
board without it that stores and shows nothing of it."""

from __future__ import annotations

import copy
import csv
import io

from odnbench.report import boards as lb
from odnbench.report import columns as cols
from odnbench.report import markdown as md
from odnbench.report import records
from odnbench.report.remeasure import BATCHED_KEY
from odnbench.result import Result

LATENCY = {"p50": 1.0, "p90": 1.02, "windows_ms": [1.0, 1.01, 1.02], "batch_size": 1, "threads": 1, "device": "cpu",
           "windows": 3, "iters_per_window": 20}


def result(method, seed, *, dataset="d", per_image=None, busy=False):
    metrics = {"top1": 90.0 + seed, "val_top1": 90.0, "params": 1000, "size_mb": 1.0, "size_mib": 1.0,
               "macs": 1_000_000, "flops": 2_000_000, "latency_ms": copy.deepcopy(LATENCY)}
    if per_image is not None:  # as report.remeasure leaves it in memory
        metrics["latency_ms"]["remeasured"] = {"stored": copy.deepcopy(LATENCY), "cpu": "Test CPU", "warmup": 10}
        windows = [32 * per_image, 32 * per_image * (3.0 if busy else 1.01)]
        metrics[BATCHED_KEY] = {"p50": 32 * per_image, "p90": 32 * per_image * 1.01, "batch_size": 32,
                                "windows_ms": windows, "windows": 3, "iters_per_window": 20, "threads": 1,
                                "device": "cpu", "ms_per_image_p50": per_image, "ms_per_image_p90": per_image * 1.01,
                                "busy": busy, "remeasured": {"cpu": "Test CPU", "warmup": 10}}
    return Result.from_dict({
        "status": "ok", "key": f"{dataset}{method}{seed}", "schema": 3,
        "config": {"method": method, "dataset": dataset, "backbone": "b", "preset": "quick", "seed": seed, "params": {}},
        "metrics": metrics, "cost": {"epochs": 3, "sample_steps": 300, "train_seconds": 3.0, "device": "cpu"},
        "env": {"device": "cpu"}, "facts": {},
    })


def test_a_re_measured_board_shows_both_batches_and_says_how_it_measured():
    (board,) = lb.build_boards([result("full", s, per_image=0.4) for s in (0, 1)]
                               + [result("cut", s, per_image=0.1) for s in (0, 1)])
    rows = {r.method: r.stats for r in board.rows}
    assert rows["cut"].latency_batched_batch == 32 and rows["cut"].latency_batched_p50 == 0.1
    assert rows["cut"].measured_speedup_batched == 4.0 and rows["cut"].measured_speedup_batched_reliable
    assert md.cells(rows["cut"])["latency_batched"] == "0.1000 / 0.1010"
    assert md.cells(rows["cut"])["measured_speedup_batched"] == "4.00×"
    text = md.render_markdown([board], "res")
    assert "Latency at batch 32, ms per image p50 / p90 (mean over seeds ‡; 1 thread)" in text
    assert "Speed-up measured at batch 32 ‡" in text
    assert ("Latency re-measured serially (`--remeasure-latency`), one model at a time, after training: 4 of 4 stored "
            "models reloaded and timed again on Test CPU with 1 thread") in text
    assert "at batch 1 and batch 32; p50 and p90 of 3 timed windows × 20 calls each, after 10 warm-up calls" in text
    assert "Latency, throughput and training time were measured while" not in text
    doc = records.render_json([board])
    assert '"latency_measurement"' in doc and '"latency_batched_p50": 0.1' in doc


def test_a_re_measured_board_says_how_many_latencies_on_test_images_it_kept_as_measured():
    """An early-exit network's latency runs on test images (its cost depends on the image), which the report
    does not load: re-measuring keeps it, and the page says how many were kept and that the grid was running."""
    exits = [result("exits", s) for s in (0, 1, 2)]
    for r in exits:
        r.metrics["latency_ms"]["input"] = "images"
    (board,) = lb.build_boards([result("full", s, per_image=0.4) for s in (0, 1)] + exits)
    assert board.caption["latency_measurement"]["kept_on_images"] == 3
    text = md.render_markdown([board], "res")
    assert "2 of 5 stored models reloaded and timed again" in text
    assert "3 latencies timed on test images (early-exit networks, whose cost depends on the image" in text
    assert "kept as their cells measured them, while the grid ran" in text
    (one,) = lb.build_boards([result("full", s, per_image=0.4) for s in (0, 1)] + exits[:1])
    assert "1 latency timed on test images" in md.render_markdown([one], "res")
    (none,) = lb.build_boards([result("full", s, per_image=0.4) for s in (0, 1)])
    assert "kept_on_images" not in none.caption["latency_measurement"]
    assert "timed on test images" not in md.render_markdown([none], "res")


def test_a_busy_larger_batch_withholds_its_speed_up_only():
    (board,) = lb.build_boards([result("full", s, per_image=0.4) for s in (0, 1)]
                               + [result("cut", s, per_image=0.1, busy=s == 1) for s in (0, 1)])
    cut = next(r.stats for r in board.rows if r.method == "cut")
    assert cut.measured_speedup_reliable and not cut.measured_speedup_batched_reliable
    assert md.cells(cut)["measured_speedup_batched"] == "_unreliable_" and md.cells(cut)["measured_speedup"] == "1.00×"


def test_a_board_not_re_measured_stores_and_shows_nothing_of_the_larger_batch():
    (board,) = lb.build_boards([result("full", s) for s in (0, 1)] + [result("cut", s) for s in (0, 1)])
    assert not cols.has_optional(board)
    assert not set(cols.OPTIONAL_FIELDS) & set(cols.row_record(board, board.rows[0]))
    text = md.render_markdown([board], "res")
    assert "ms per image" not in text and "re-measured" not in text and "batch 32" not in text
    assert "latency_measurement" not in board.caption
    # CSV of a re-measured board beside a stored one: every field once, the stored board's left empty
    boards = lb.build_boards([result("full", s) for s in (0, 1)]
                             + [result("full", s, dataset="e", per_image=0.4) for s in (0, 1)])
    lines = list(csv.DictReader(io.StringIO(records.render_csv(boards))))
    assert [line["latency_batched_p50"] for line in lines] == ["", "0.4"]

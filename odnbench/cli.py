"""The ``odnbench`` command line. Heavy modules (torch, timm) are imported inside commands so
that ``--help``, ``list`` and ``plugins`` start fast."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from odnbench import __version__
from odnbench.errors import OdnbenchError
from odnbench.executors import EXECUTORS
from odnbench.runtime import default_data_dir

DEFAULT_RESULTS = "odnbench-results"


class OdnbenchGroup(click.Group):
    """Turns OdnbenchError into one line on stderr and exit code 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OdnbenchError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(2)
        except OSError as exc:  # disk full, a folder that cannot be written: one line naming the path
            click.echo(f"Error: {os_error_line(exc)}", err=True)
            sys.exit(1)

    def format_help(self, ctx, formatter):
        _echo_conflicts()  # a clashing plugin is named, but --help still works
        super().format_help(ctx, formatter)


def os_error_line(exc: OSError) -> str:
    """``PATH: cause`` for a filesystem error (finished results are written atomically, so none is lost)."""
    import shutil

    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        # copytree gathers its failures in a list ("Error: Error" otherwise): the first, and how many
        src, dst, why = (list(exc.args[0][0]) + ["?", "?", "?"])[:3]
        more = f" (and {len(exc.args[0]) - 1} more)" if len(exc.args[0]) > 1 else ""
        cause = str(why).split("] ", 1)[-1].split(": '", 1)[0]  # "[Errno 27] File too large: 'src' -> 'dst'"
        return (f"{dst}: {cause} (copying {src}){more}; nothing finished was lost (each file is written whole or not "
                "at all): free space, raise the file-size limit or fix permissions, then rerun")
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    cause = exc.strerror or (str(exc) if str(exc) else type(exc).__name__)
    return (f"{where}: {cause}" if where else cause) + (
        "; nothing finished was lost (each file is written whole or not at all): free space or fix permissions, "
        "then rerun" if exc.errno is not None else "")


def registry(sound: bool = True):
    """The loaded plugins. ``sound``: refuse (one line, exit 2) when plugin names clash, since a
    result must never be ranked under a name that another plugin took over; listing passes False."""
    from odnbench.registry import get_registry

    reg = get_registry()
    if sound:
        reg.require_sound()
    return reg


def signing_key():
    """ODNBENCH_SIGNING_KEY, checked (one line when it cannot be used) before anything trains."""
    from odnbench.store import signing_key as key

    return key()


def _echo_conflicts() -> None:
    try:
        reg = registry(sound=False)
    except OdnbenchError:
        return
    for conflict in reg.conflicts:
        click.echo(f"Error: {conflict}", err=True)


@click.group(cls=OdnbenchGroup)
@click.version_option(__version__, prog_name="odnbench")
def cli():
    """odnbench: rank ways of making image classifiers smaller (Optimally Deep Networks, structured
    pruning, full depth, your own plugin) under one harness that measures accuracy, size, MACs,
    latency and the cost of obtaining each model.

    \b
    Typical use:
      odnbench compare --method odn --method prune --set prune.match=odn:size  # offline data, CPU
      odnbench compare --dry-run --grid leaderboards/grids/mnist5k-quick.toml  # plan, stored cells
      odnbench compare --method odn --method prune --dataset mnist --data-dir DIR --preset paper
      odnbench leaderboard --results odnbench-results
    """


@cli.command("list")
@click.argument("kind", type=click.Choice(["methods", "datasets", "backbones", "presets"]))
def list_cmd(kind):
    """List registered methods, datasets or backbones (name and one-line description), or presets."""
    if kind == "presets":
        from odnbench.recipes import PRESETS

        for name, recipe in PRESETS.items():
            click.echo(f"{name:<16} width={recipe.width} train_limit={recipe.train_limit} epochs={recipe.epochs} "
                       f"schedule={recipe.schedule} patience={recipe.patience} init={recipe.init}")
        return
    _echo_conflicts()
    reg = registry(sound=False)
    singular = kind[:-1]
    for name in reg.names(singular):
        item = reg.items[singular][name]
        click.echo(f"{name:<16} {item.description}")


@cli.command()
@click.argument("method")
@click.option("--preset", "-p", default="quick", show_default=True)
@click.option("--dataset", "-d", default="mnist5k", show_default=True)
def params(method, preset, dataset):
    """A method's parameters (set them with --set METHOD.PARAM=VALUE), their values for a preset/dataset
    and what is allowed (choices, or the range checked before anything runs). [sweep] marks the
    trade-off knobs worth sweeping (--set METHOD.PARAM=V1,V2,V3: one cell per value); `params recipe`
    lists the recipe fields (--set recipe.FIELD=...) with each preset's value."""
    from odnbench.plan import resolve_params
    from odnbench.recipes import PRESETS, make_recipe, recipe_params

    if method == "recipe":
        make_recipe(preset)  # an unknown preset is an error here too
        presets = list(PRESETS)
        click.echo(f"recipe.{'FIELD':<19} {'TYPE':<5} " + " ".join(f"{p:<12}" for p in presets) + " ALLOWED  HELP")
        for name, p in recipe_params().items():
            allowed = "|".join(map(str, p.choices)) if p.choices else p.range_text()
            allowed += " or none" if p.nullable else ""
            allowed += " [sweep]" if p.sweep else ""
            values = " ".join(f"{getattr(PRESETS[q], name)!s:<12}" for q in presets)
            click.echo(f"recipe.{name:<19} {p.type.__name__:<5} {values} {allowed.strip() or '-'}  {p.help}".rstrip())
        return

    reg = registry()
    make_recipe(preset)  # an unknown preset is an error here too
    reg.dataset(dataset)
    values = resolve_params(reg, method, preset, dataset, {})
    declared = {p.name: p for p in reg.method(method).params}
    if not declared:
        click.echo(f"{method} has no parameters")
    for name, p in declared.items():
        allowed = f" [{'|'.join(map(str, p.choices))}]" if p.choices else ""
        allowed += f" [{p.range_text()}{' or none' if p.nullable else ''}]" if p.range_text() else ""
        allowed += " [sweep]" if p.sweep else ""
        click.echo(f"{method}.{name:<22} {p.type.__name__:<5} = {values[name]!s:<10}{allowed}  {p.help}")


@cli.command()
def plugins():
    """Print the loaded plugins as JSON: [{"name", "version", "hooks"}]."""
    _echo_conflicts()
    click.echo(json.dumps(registry(sound=False).plugin_list(), indent=2))


@cli.command("new-plugin")
@click.argument("name")
@click.option("--kind", type=click.Choice(["method", "dataset", "backbone"]), default="method", show_default=True,
              help="What the plugin registers.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              show_default=True, help="Where to create odnbench-NAME/.")
def new_plugin(name, kind, directory):
    """Write a ready-to-install plugin package odnbench-NAME/ (pyproject with the entry point, the
    plugin module, a README and a passing test that uses odnbench.testing)."""
    from odnbench.scaffold import check_name, create_plugin

    check_name(name, kind)
    reg = registry()
    taken = {n: reg.owner[(kind, n)] for n in reg.names(kind)}
    target = create_plugin(name, kind, directory, taken=taken)
    shown = str(target) if target.is_absolute() or str(target).startswith(".") else f"./{target}"
    click.echo(f"created {shown}/ ({kind} plugin {name!r}). Next:\n"
               f"  pip install -e {shown}\n  odnbench plugins\n  pytest {shown}")


@cli.command()
@click.option("--backbone", "-b", required=True, help="Backbone name, e.g. resnet18.")
@click.option("--depth", "-k", type=int, default=None, help="Cut after this many residual blocks (default: full).")
@click.option("--input-size", type=click.IntRange(1, 1024), default=28, show_default=True,
              help="Image height = width in pixels (1..1024).")
@click.option("--in-chans", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--num-classes", type=click.IntRange(1, 100_000), default=10, show_default=True)
@click.option("--stem", type=click.Choice(["cifar", "imagenet"]), default="cifar", show_default=True,
              help="cifar: 3x3 stride-1 stem, no max-pool (small images); imagenet: timm's own stem.")
@click.option("--width", default="full", show_default=True, help="Stage widths, e.g. 16,32,64,128, or 'full'.")
@click.option("--threads", type=click.IntRange(0, 1024), default=1, show_default=True,
              help="Torch threads for the latency measure, as the harness measures (recipe.threads, default 1); "
                   "0 = torch's default.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def profile(backbone, depth, input_size, in_chans, num_classes, stem, width, threads, as_json):
    """Parameters, size, MACs, FLOPs and batch-1 CPU latency of a backbone, full or cut to --depth."""
    from odnbench.plan import check_width
    from odnbench.recipes import make_recipe

    # The harness's thread policy; fewer calls than a cell's measurement, to answer in seconds.
    recipe = make_recipe("paper", {"width": width, "threads": str(threads), "latency_warmup": "3",
                                   "latency_iters": "5"})
    # an unknown name or width is refused here, before torch is imported
    check_width(registry(), backbone, recipe, f"--width {width}")  # one line naming what the backbone takes
    from odnbench import metrics

    net = registry().backbone(backbone).build(in_chans=in_chans, num_classes=num_classes, stem=stem,
                                              width=recipe.widths)
    if depth is not None:
        if not 1 <= depth <= net.depth:
            raise OdnbenchError(f"--depth {depth} is out of range: {backbone} has blocks 1..{net.depth}")
        net = net.truncated(depth)
    shape = (in_chans, input_size, input_size)
    flops = metrics.count_flops(net, shape)
    out = {
        "backbone": backbone, "depth": net.depth, "stem": stem, "width": width, "input_shape": list(shape),
        "num_classes": num_classes, "params": metrics.count_params(net),
        "size_mb": round(metrics.saved_size_mb(net), 6), "size_mib": round(metrics.tensor_size_mib(net), 6),
        "macs": flops // 2, "flops": flops, "flop_counter": metrics.FLOP_COUNTER,
        "latency_ms": metrics.measured_latency(net, shape, recipe),
    }
    if as_json:
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"{backbone} depth {out['depth']} ({stem} stem, width {width}) on {'x'.join(map(str, shape))}, "
               f"{num_classes} classes")
    click.echo(f"  params     {out['params']:,}")
    click.echo(f"  size       {out['size_mb']:.3f} MB (saved state_dict, /1e6)   {out['size_mib']:.3f} MiB (fp32)")
    click.echo(f"  MACs       {out['macs'] / 1e9:.4f} G   (FLOPs {out['flops'] / 1e9:.4f} G = 2 x MACs)")
    lat = out["latency_ms"]
    share = f", CPU share {lat['cpu_share']:.2f}" if lat.get("cpu_share") is not None else ""
    busy = (f"; the machine looked busy (p90/p50 {lat['p90_over_p50']:.2f}, window spread {lat['spread']:.2f}"
            f"{share}{', measured twice' if lat['attempts'] > 1 else ''}): read with care" if lat["busy"] else "")
    click.echo(f"  latency    p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms (batch 1, {lat['threads']} threads"
               f"{busy})")


def _finite(ctx, param, value, low: float, high: float):
    """A float option must be a finite number in [low, high]: nan or inf would silently disable what it
    bounds (``--tolerance nan`` passed every top-1)."""
    import math

    if value is not None and not (math.isfinite(value) and low <= value <= high):
        raise click.BadParameter(f"{value} is not allowed; allowed: a finite number, {low:g} <= {param.name} <= "
                                 f"{high:g}", ctx=ctx, param=param)
    return value


def _existing_dir(ctx, param, value):
    """A --data-dir the user names must exist: it is never created (a typo would otherwise become a
    new, empty dataset folder and a download)."""
    if value is not None and not Path(value).is_dir():
        what = "is not a folder" if Path(value).exists() else "does not exist"
        raise OdnbenchError(f"--data-dir {value} {what}; point it at the folder that holds the datasets "
                            f"(e.g. the one with MNIST/ in it), or leave it out for {default_data_dir()}")
    return value


DATA_DIR_HELP = "Where datasets live (must exist) [default: $ODNBENCH_DATA or ~/.cache/odnbench/data]."


def _grid_options(f):
    options = [
        click.option("--method", "-m", "methods", multiple=True, help="Method (repeatable)."),
        click.option("--dataset", "-d", "datasets", multiple=True, help="Dataset (repeatable) [default: mnist5k]."),
        click.option("--backbone", "-b", "backbones", multiple=True, help="Backbone (repeatable) [default: resnet18]."),
        click.option("--seed", "-s", "seeds", multiple=True, type=int, help="Seed (repeatable) [default: 0]."),
        click.option("--preset", "-p", default="quick", show_default=True,
                     help="Recipe: smoke (seconds, tests), tiny (seconds, learns), quick (CPU), paper (the authors' recipe, GPU)."),
        click.option("--set", "sets", multiple=True, metavar="OWNER.PARAM=VALUE",
                     help="A method parameter (odn.target=99) or recipe field (recipe.epochs=5); repeatable. "
                          "Several values sweep it, one cell each: prune.ratio=0.3,0.5,0.7 (';' separates values "
                          "of recipe.width and other comma-valued text: recipe.width=16,32,64,128;8,16,32,64)."),
        click.option("--results", "-r", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path),
                     help="Results folder (one sub-folder per cell)."),
        click.option("--data-dir", type=click.Path(path_type=Path), default=None, callback=_existing_dir,
                     help=DATA_DIR_HELP),
        click.option("--download/--no-download", default=True, show_default=True,
                     help="Download missing torchvision datasets."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda[:N]."),
        click.option("--quiet", "-q", is_flag=True, help="No per-epoch lines or progress bars."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command()
@_grid_options
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip cells already finished.")
@click.option("--fail-fast", is_flag=True, help="Start no cell after the first failed one.")
@click.option("--jobs", "-j", type=int, default=1, show_default=True,
              help="Cells run at once. Above 1: in that many worker processes (spread over the visible GPUs, "
                   "several may share one); with --executor ray: at most that many Ray tasks.")
@click.option("--executor", type=click.Choice(list(EXECUTORS)), default="local", show_default=True,
              help="local: this machine (--jobs processes); ray: a Ray task per cell (pip install 'odnbench[ray]').")
@click.option("--worker-threads", type=int, default=None,
              help="Torch threads per worker process, for cells with recipe.threads=0 (each cell runs with "
                   "recipe.threads, default 1) [default: cores / --jobs; with Ray, --ray-cpus].")
@click.option("--ray-address", default=None,
              help="Ray cluster to use [default: $RAY_ADDRESS, else a local Ray instance on this machine].")
@click.option("--ray-gpus", type=float, default=None, help="GPUs per cell on Ray (fractions share one, e.g. 0.25).")
@click.option("--ray-cpus", type=float, default=None, help="CPUs per cell on Ray [default: 1].")
@click.option("--dry-run", is_flag=True,
              help="Train nothing: list the grid's cells in run order, which are stored already in --results, what "
                   "each needs, and the time the rest should take, from stored cells of the same configuration.")
@click.option("--grid", "grid_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="A grid file (TOML, docs/grids.md) declaring methods with their parameters and sweeps, datasets, "
                   "backbones, seeds, preset, recipe. Options given here win: --dataset/--backbone/--seed replace "
                   "its lists, --preset/--data-dir/--jobs its values; --set adds to it; --method adds methods.")
@click.option("--max-cells", type=click.IntRange(1), default=None,
              help="The most cells the grid may ask for (a guard against sweeps that multiply out of hand) "
                   "[default: 1000].")
def compare(methods, datasets, backbones, seeds, preset, sets, results, data_dir, download, device, quiet,
            resume, fail_fast, jobs, executor, worker_threads, ray_address, ray_gpus, ray_cpus, dry_run, grid_file,
            max_cells):
    """Run the grid method x dataset x backbone x seed, write the leaderboard to
    RESULTS/leaderboard.md and print a summary of it that fits 100 columns.

    Cells another cell needs (the full-depth model prune starts from, the ODN depth that scratch
    and truncate take) are added and run first, once. Finished cells are skipped on rerun. With
    --jobs or --executor ray, cells run side by side, each once its dependencies are done, and
    each writes its log to log.txt in its folder. Two runs on one results folder never run the
    same cell twice: one waits for the other's cell and uses its result.
    """
    from odnbench import harness, plan, report
    from odnbench.executors import make_executor
    from odnbench.progress import Progress
    from odnbench.runtime import pick_device
    from odnbench.store import atomic_write_bytes, check_results_root

    signing_key()  # a key that cannot be used fails now, not after the cells trained
    reg = registry()
    entries, provenance = [], None
    if grid_file is not None:
        from odnbench.gridfile import load_grid, merge_cli

        source = click.get_current_context().get_parameter_source
        given = {name for name in ("datasets", "backbones", "seeds", "preset", "data_dir", "download", "jobs")
                 if source(name) is not None and source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
        loaded = load_grid(grid_file, reg)
        merged = merge_cli(loaded, methods=methods, datasets=datasets, backbones=backbones, seeds=seeds,
                           preset=preset, sets=sets, data_dir=data_dir, download=download, jobs=jobs, given=given)
        if merged.data_dir is not None and "data_dir" not in given:
            _existing_dir(None, None, merged.data_dir)
        entries, provenance = merged.entries, loaded.provenance
        methods, datasets, backbones, seeds = merged.methods, merged.datasets, merged.backbones, merged.seeds
        preset, sets, data_dir, download, jobs = merged.preset, merged.sets, merged.data_dir, merged.download, merged.jobs
    elif not methods:
        raise OdnbenchError("compare needs --method (repeatable) or --grid FILE")
    grid = plan.plan_grid(reg, list(methods), list(datasets) or [plan.DEFAULT_DATASET],
                          list(backbones) or [plan.DEFAULT_BACKBONE], list(seeds) or [0], preset, list(sets),
                          entries=entries, provenance=provenance, max_cells=max_cells or plan.MAX_CELLS)
    if dry_run:
        _dry_run(grid, results, resume, jobs)
        return
    runner = make_executor(executor, jobs, worker_threads, ray_address, ray_gpus, ray_cpus)
    check_results_root(results, [c.dirname for c in grid.cells])  # before any training: one line, exit 2
    device = pick_device(device)
    progress = Progress(quiet=quiet)
    extra = sum(c.added_as_dependency for c in grid.cells)
    progress.line(f"odnbench: {len(grid.cells)} cells ({extra} added as dependencies), results in {results}")
    done = harness.run_grid(reg, grid, results, data_dir=data_dir or default_data_dir(), download=download,
                            device=device, resume=resume, fail_fast=fail_fast, progress=progress,
                            executor=runner)
    from odnbench.report.terminal import summary

    board_path = Path(results) / "leaderboard.md"
    atomic_write_bytes(board_path, report.render(results, "md").encode())
    click.echo(summary(report.build_boards(report.load_results(results)), board_path))
    from odnbench.report.boards import skipped_results

    for folder, why in skipped_results(results):  # copies, planted folders, unreadable records
        click.echo(f"note: not counted: {folder.name}: {why}", err=True)
    click.echo(f"{len(done.results) - len(done.failed)} ok ({done.skipped} resumed), {len(done.failed)} failed")
    cells = grid.by_key()
    for r in done.failed:  # the swept values too: "prune (ratio=0.3) mnist5k seed 0"
        varied = cells[r.key].varied() if r.key in cells else {}
        method = r.config["method"] + (f" ({', '.join(f'{k}={v}' for k, v in varied.items())})" if varied else "")
        click.echo(f"  FAILED {method} {r.config['dataset']} seed {r.config['seed']}: {r.error}", err=True)
    if done.failed:
        sys.exit(1)


def _dry_run(grid, results: Path, resume: bool, jobs: int) -> None:
    """``compare --dry-run``: the plan, what is stored and an estimate of the rest; nothing trains,
    nothing is written."""
    from odnbench.scheduler import expected_seconds, readable, stored_times
    from odnbench.store import ResultStore

    store = ResultStore(results)
    times = stored_times(store)
    index = {c.key: i for i, c in enumerate(grid.cells, 1)}
    stored = to_run = 0
    estimate, unknown = 0.0, 0
    click.echo(f"odnbench compare --dry-run: {len(grid.cells)} cells in run order, results in {results}; "
               "nothing is trained")
    for i, cell in enumerate(grid.cells, 1):
        prior = readable(store.stored, cell.config)
        needs = ", ".join(f"[{index[k]}]" for k in cell.requires.values() if k in index)
        note = (" (needed by another cell)" if cell.added_as_dependency else "") + (f"; needs {needs}" if needs else "")
        if cell.error:
            state = f"fails at once: {cell.error}"
        elif prior is not None and prior.ok and resume:
            stored += 1
            state = f"stored ({prior.finished_at or 'time unknown'}), used as it is"
        else:
            to_run += 1
            seconds = expected_seconds(cell, times)
            again = "stored as failed, runs again" if prior is not None and resume else (
                "stored, runs again (--no-resume)" if prior is not None else "to run")
            if seconds is None:
                unknown += 1
                state = f"{again}; no stored cell of this configuration to estimate its time from"
            else:
                estimate += seconds
                same = len(times.get(_config_without_seed(cell), []))
                state = f"{again}; ~{seconds / 60:.1f} min (mean of {same} stored cell{'s' * (same != 1)} of this " \
                        "configuration)"
        click.echo(f"[{i}/{len(grid.cells)}] {cell.label()}{note}: {state}")
    line = f"{stored} stored, {to_run} to run"
    if to_run:
        line += (f"; ~{estimate / 60:.1f} min of cells from stored cells of the same configuration"
                 + (f" (with --jobs {jobs}: about {estimate / 60 / max(1, jobs):.1f} min of wall time)" if jobs > 1 else "")
                 + (f", {unknown} cell{'s' * (unknown != 1)} without an estimate" if unknown else ""))
    click.echo(line)


def _config_without_seed(cell) -> str:
    from odnbench.scheduler import config_without_seed

    return config_without_seed(cell.config)


@cli.command()
@_grid_options
@click.option("--force", is_flag=True, help="Run the cell again even when it is finished, replacing its result.")
def run(methods, datasets, backbones, seeds, preset, sets, results, data_dir, download, device, quiet, force):
    """Run exactly one cell (one method, dataset, backbone and seed) and store its result.

    Unlike compare, run does not add the cells it depends on: they must already be in --results.
    A finished cell is left as it is (--force runs it again).
    """
    from odnbench import harness, plan
    from odnbench.progress import Progress
    from odnbench.runtime import pick_device
    from odnbench.store import ResultStore

    if len(methods) != 1 or len(datasets) > 1 or len(backbones) > 1 or len(seeds) > 1:
        raise OdnbenchError("run takes one --method, and at most one --dataset, --backbone and --seed "
                            "(use compare for grids)")
    from odnbench.store import check_results_root

    signing_key()  # a key that cannot be used fails now, not after the cell trained
    reg = registry()
    grid = plan.plan_grid(reg, list(methods), list(datasets) or [plan.DEFAULT_DATASET],
                          list(backbones) or [plan.DEFAULT_BACKBONE], list(seeds) or [0], preset, list(sets),
                          add_dependencies=False)
    cell = grid.cells[-1]
    check_results_root(results, [cell.dirname])  # before any training: one line, exit 2
    where = Path(results) / cell.dirname
    prior = ResultStore(results).stored(cell.config)
    if prior is not None and prior.ok and not force:
        m = prior.metrics or {}
        click.echo(f"{cell.label()}: finished already ({prior.finished_at or 'time unknown'}), not run again: "
                   f"top-1 {m.get('top1', float('nan')):.2f}% -> {where} (--force runs it again and replaces it)")
        return
    # Held as compare holds it: a cell another run is working on is refused, one line naming who; a
    # lock left by a killed run is free and taken over.
    with ResultStore(results).lock(cell.key) as lock:
        if lock.taken_over:
            click.echo(f"{cell.label()}: took over the lock left by a run that ended "
                       f"(pid {lock.taken_over.get('pid', '?')})", err=True)
        prior = ResultStore(results).stored(cell.config) if not force else None
        if prior is not None and prior.ok:
            click.echo(f"{cell.label()}: finished meanwhile by another run, not run again -> {where}")
            return
        result = harness.run_cell(reg, cell, results, data_dir=data_dir or default_data_dir(), download=download,
                                  device=pick_device(device), progress=Progress(quiet=quiet))
    if not result.ok:
        click.echo(f"FAILED ({where}): {result.error}", err=True)
        sys.exit(1)
    m = result.metrics
    click.echo(f"{cell.label()}: top-1 {m['top1']:.2f}%, {m['params']:,} params, {m['size_mb']:.3f} MB, "
               f"{m['macs']:,} MACs -> {where}")


@cli.group(invoke_without_command=True)
@click.option("--results", "-r", default=DEFAULT_RESULTS, show_default=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["md", "json", "csv"]), default="md", show_default=True)
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None, help="Write to a file.")
@click.option("--remeasure-latency", is_flag=True,
              help="Reload every stored model and time its latency again, one at a time, at batch 1 and at "
                   "--latency-batch, for this board (result.json files are not changed; the measurements are stored "
                   "beside them in latency-remeasured.json, which later renders use).")
@click.option("--latency-batch", type=click.IntRange(min=2), default=None,
              help="With --remeasure-latency: the larger batch timed besides batch 1, shown in ms per image "
                   "[default: 64].")
@click.pass_context
def leaderboard(ctx, results, fmt, output, remeasure_latency, latency_batch):
    """Rebuild leaderboard tables from stored results alone."""
    if ctx.invoked_subcommand is not None:
        return
    from odnbench import report

    if not Path(results).is_dir():
        raise OdnbenchError(f"results folder {results} does not exist")
    from odnbench.report.boards import skipped_results
    from odnbench.store import atomic_write_bytes

    text = report.render(results, fmt, remeasure_latency=remeasure_latency,
                         latency_batch=_latency_batch(remeasure_latency, latency_batch),
                         say=lambda line: click.echo(line, err=True))
    for folder, why in skipped_results(results):
        click.echo(f"note: not counted: {folder.name}: {why}", err=True)
    if output:
        output = Path(output)
        if not output.parent.is_dir():
            raise OdnbenchError(f"-o {output}: the folder {output.parent} does not exist; create it or choose another path")
        if output.is_dir():
            raise OdnbenchError(f"-o {output} is a folder; name a file")
        atomic_write_bytes(output, text.encode())
        click.echo(f"wrote {output}")
    else:
        from odnbench.report.fmt import terminal_text

        click.echo(terminal_text(text) if fmt == "md" else text, nl=False)


def _latency_batch(remeasure_latency: bool, latency_batch: int | None) -> int | None:
    """--latency-batch only means something with --remeasure-latency (stored records hold batch 1 only)."""
    if latency_batch is not None and not remeasure_latency:
        raise OdnbenchError(f"--latency-batch {latency_batch} needs --remeasure-latency: stored results hold batch-1 "
                            "latency only; add --remeasure-latency or drop --latency-batch")
    return latency_batch


def _results_option(ctx, results):
    """A subcommand's --results, else the group's (``odnbench leaderboard --results X publish``)."""
    return results if results is not None else ctx.parent.params["results"]


@leaderboard.command("publish")
@click.option("--results", "-r", type=click.Path(path_type=Path), default=None,
              help=f"Results folder [default: the group's --results, {DEFAULT_RESULTS}].")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where the pages go: one folder per board and an index README.md [default: RESULTS/boards, "
                   "inside the results folder, never the repository's committed leaderboards/]. Built aside "
                   "and swapped in whole.")
@click.option("--tolerance", type=float, default=1.75, show_default=True, callback=lambda c, p, v: _finite(c, p, v, 0, 100),
              help="Points of top-1 below full depth that still count as iso-accuracy / meeting the target.")
@click.option("--remeasure-latency", is_flag=True,
              help="Reload every stored model and time its latency again, one at a time, at batch 1 and at "
                   "--latency-batch; the pages use both and say how they were measured (result.json files are "
                   "not changed; the measurements are stored beside them in latency-remeasured.json, so that a "
                   "later publish without this flag reproduces the pages).")
@click.option("--latency-batch", type=click.IntRange(min=2), default=None,
              help="With --remeasure-latency: the larger batch timed besides batch 1, shown in ms per image "
                   "[default: 64].")
@click.pass_context
def leaderboard_publish(ctx, results, out, tolerance, remeasure_latency, latency_batch):
    """Write, per dataset/backbone/preset/device, a markdown page, the table as JSON and CSV, and
    Pareto plots (top-1 against size and MACs) plus ODN's depth curve; and an index. Publishing
    the same results again gives byte-identical files."""
    from odnbench.report.publish import publish

    results = _results_option(ctx, results)
    out = out if out is not None else Path(results) / "boards"
    done = publish(results, out, tolerance=tolerance, remeasure_latency=remeasure_latency,
                   latency_batch=_latency_batch(remeasure_latency, latency_batch),
                   say=lambda line: click.echo(line, err=True))
    for note in done.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{len(done.boards)} boards, {len(done.written)} files written to {out}"
               + (f", {len(done.removed)} stale files removed" if done.removed else ""))


@leaderboard.command("verify")
@click.option("--results", "-r", type=click.Path(path_type=Path), default=None,
              help=f"Results folder [default: the group's --results, {DEFAULT_RESULTS}].")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None, callback=_existing_dir,
              help="Where datasets live (must exist) [default: the folder recorded in each result, else "
                   "$ODNBENCH_DATA or ~/.cache/odnbench/data].")
@click.option("--download/--no-download", default=True, show_default=True,
              help="Download missing torchvision datasets for re-evaluation.")
@click.option("--device", default="cpu", show_default=True, help="Re-evaluate on cpu, cuda[:N] or auto.")
@click.option("--tolerance", type=float, default=0.01, show_default=True, callback=lambda c, p, v: _finite(c, p, v, 0, 100),
              help="Allowed |stored - re-measured| top-1, in points (a finite number, 0..100).")
@click.option("--schema-only", is_flag=True, help="Check result.json files only; do not reload models.")
@click.option("--rerun", is_flag=True,
              help="After every other check, train each CELL (folder name or key; default: every finished cell) "
                   "again from its recorded config (checked as compare checks one), in a temporary folder, and "
                   "compare top-1 (within --tolerance) and params, MACs and size (exactly): what a forged record "
                   "cannot survive. Takes as long as the cells took.")
@click.argument("cells", nargs=-1)
@click.pass_context
def leaderboard_verify(ctx, results, data_dir, download, device, tolerance, schema_only, rerun, cells):
    """Check every stored result: schema, folder key and digest (edited since written?); the sha256
    of each model file (an ok result without its model fails); then reload each model (never
    unpickled) and re-measure top-1, params, size, MACs and FLOPs on the same data (fingerprint
    checked), re-time latency and throughput (the ratio to the stored value is a note unless absurd);
    list stale temporary files; name strays (copied, renamed or planted folders, links: never counted);
    with ODNBENCH_SIGNING_KEY set, check each record's HMAC signature; and say what cannot be checked
    (a forged record's config and cost). One line per cell; exits 1 when anything does not match.
    --schema-only checks result.json files alone (for records published without their models);
    --rerun [CELL...] trains cells again from their recorded config and compares (see docs/security.md)."""
    from odnbench.runtime import pick_device
    from odnbench.verify import rerun as rerun_cells
    from odnbench.verify import verify

    results = _results_option(ctx, results)
    if cells and not rerun:
        raise OdnbenchError(f"verify takes cell names only with --rerun (got {cells[0]!r})")
    if not schema_only:
        registry()  # re-evaluating loads datasets through the plugins: clashing names refuse here, one line
    if rerun:
        checked = rerun_cells(results, list(cells), data_dir=data_dir, download=download, device=pick_device(device),
                              tolerance=tolerance)
    else:
        checked = verify(results, data_dir=data_dir, download=download,
                         device=None if schema_only else pick_device(device), tolerance=tolerance,
                         schema_only=schema_only)
    from odnbench.report.fmt import terminal_text

    for check in checked.cells:
        click.echo(terminal_text(check.line()))
    for note in checked.notes:
        click.echo(f"note: {note}")
    click.echo(checked.summary())
    if checked.problems:
        sys.exit(1)


def _add_plugin_commands() -> None:
    try:
        reg = registry(sound=False)  # clashing names are reported by the command that meets them
    except OdnbenchError as exc:  # a broken plugin must not hide --help
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)
    try:
        reg.call_each("register_commands", lambda plugin: {"cli": cli})
    except OdnbenchError as exc:  # strict mode: a broken command is fatal
        click.echo(f"Error: {exc}", err=True)
        sys.exit(2)


def command() -> click.Group:
    """The ``odnbench`` command with every plugin's commands added: what :func:`main` runs, and what
    click's ``CliRunner().invoke`` takes (``odnbench.testing.run_cli`` does that)."""
    _add_plugin_commands()
    return cli


def main(argv=None):
    return command().main(args=argv, prog_name="odnbench")

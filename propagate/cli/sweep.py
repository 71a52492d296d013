"""`propagate depth-sweep`: the click skin over :func:`propagate.sweep.depth_sweep`."""
from __future__ import annotations

import time

import click

from propagate.cli.common import IntList, NameList, resolve_device, user_errors
from propagate.data import MnistError
from propagate.runfolder import RunFolderError, default_out, terminate_as_interrupt
from propagate.sweep import DEFAULT_INITS, INPUTS, SweepConfig, SweepError, depth_sweep


@click.command("depth-sweep")
@click.option("--max-depth", type=click.IntRange(min=1), default=50, show_default=True, help="Deepest net.")
@click.option("--min-depth", type=click.IntRange(min=1), default=1, show_default=True, help="Shallowest net.")
@click.option("--depths", type=IntList(1), default=None, help="Explicit depths, e.g. 1,2,5,10 or 1-50 (overrides min/max).")
@click.option("--inits", type=NameList(), default=",".join(DEFAULT_INITS), show_default=True,
              help="Comma-separated initializers; 'all' = every registered one (see `propagate inits`).")
@click.option("--widths", type=IntList(1), default="512", show_default=True, help="Hidden widths, comma-separated.")
@click.option("--seeds", type=click.IntRange(min=1), default=5, show_default=True, help="Independent nets per cell.")
@click.option("--batch", type=click.IntRange(min=2), default=512, show_default=True, help="Input batch size.")
@click.option("--input", "input_", type=click.Choice(INPUTS), default="mnist", show_default=True,
              help="mnist: normalised MNIST test images; gaussian: N(0,1) inputs with random labels.")
@click.option("--bias", default="zero", show_default=True, help="zero, torch_default, or a bias variance.")
@click.option("--activation", type=click.Choice(["relu", "leaky_relu", "tanh", "linear"]), default="relu", show_default=True)
@click.option("--dtype", type=click.Choice(["float32", "float64"]), default="float32", show_default=True)
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--weight-grads", type=click.Choice(["summary", "all"]), default="summary", show_default=True,
              help="Weight-gradient norms for: summary = layer 1 of every depth and every layer of the deepest net "
              "(what the tables and figures use); all = every (depth, layer) cell, which doubles the work.")
@click.option("--wgrad-precision", type=click.Choice(["float32", "bfloat16", "auto"]), default="float32",
              show_default=True, help="Weight-gradient norms only: bfloat16 is ~1.75x faster on CPUs with bf16 "
              "units but shifts log10 norms by up to ~2e-4; auto = bfloat16 where it is fast.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="Folder with MNIST IDX files.")
@click.option("--out", type=click.Path(), default=None, help="Run folder [runs/depth-sweep-<timestamp>].")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
@click.option("--resume", type=click.Path(), default=None,
              help="Continue the interrupted sweep in this folder from its finished cells (its own configuration).")
@click.option("--no-report", is_flag=True, help="Skip the PDF report.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@user_errors(SweepError, RunFolderError, MnistError)
def depth_sweep_cmd(max_depth, min_depth, depths, inits, widths, seeds, batch, input_, bias, activation, dtype, device,
                    weight_grads, wgrad_precision, data_dir, out, overwrite, resume, no_report, quiet):
    """MLPs of every depth under each initializer: variance, gradients, dead ReLUs, theory, report."""
    if resume:
        if out and out != resume:
            raise click.BadParameter("give either --resume DIR or --out, not both", param_hint="--resume")
        return _run(None, resume, False, not no_report, quiet, resume=True)
    if depths is None:
        if min_depth > max_depth:
            raise click.BadParameter(f"{min_depth} > --max-depth {max_depth}; lower --min-depth", param_hint="--min-depth")
        depths = list(range(min_depth, max_depth + 1))
    dev = resolve_device(device)
    config = SweepConfig(depths=depths, inits=inits, widths=widths, seeds=seeds, batch=batch, input=input_,
                         bias=bias, activation=activation, dtype=dtype, device=str(dev), data_dir=data_dir,
                         weight_grads=weight_grads, wgrad_precision=wgrad_precision)
    config.validate()
    return _run(config, out or default_out("depth-sweep"), overwrite, not no_report, quiet)


def _run(config, out, overwrite, report, quiet, resume=False):
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=None, unit="call", desc="depth sweep", dynamic_ncols=True)

    def progress(done, total, label):
        if bar is not None:
            bar.total = total
            bar.set_postfix_str(label, refresh=False)
            bar.update(1)
            if done == total:
                bar.close()  # tables, figures and the report follow

    t0 = time.perf_counter()
    try:
        with terminate_as_interrupt():
            manifest = depth_sweep(config, out, overwrite=overwrite, report=report, progress=progress, resume=resume)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo(f"interrupted: finished cells kept in {out} (marked incomplete); "
                   f"continue with: propagate depth-sweep --resume {out}", err=True)
        raise SystemExit(130)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"wrote {manifest['out']} in {time.perf_counter() - t0:.1f} s")
    for line in manifest.get("verdicts", []):
        click.echo(f"  {line}")

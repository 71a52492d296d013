"""``propagate report RUN_DIR [RUN_DIR …] --out FILE.pdf``: the click skin over :mod:`propagate.combined_report`."""
from __future__ import annotations

from pathlib import Path

import click

from propagate.cli.common import user_errors
from propagate.plots_train import MnistReportError
from propagate.runfolder import RunFolderError


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RUN_DIR...")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The PDF to write, e.g. reports/combined.pdf.")
@user_errors(RunFolderError, MnistReportError)
def report_cmd(run_dirs, out):
    """Rebuild a PDF report from saved run folders, without recomputing anything.

    One RUN_DIR gives the report that run wrote; several (e.g. a depth sweep and an MNIST run)
    give one document whose title page sets the signal at initialisation beside what it does to
    training, followed by each run's pages.
    """
    from propagate.combined_report import build

    try:
        path = build(list(run_dirs), out)
    except KeyError as err:  # a CSV lacking a column the report needs
        raise click.UsageError(f"cannot rebuild the report: the run folder lacks column {err}; it is damaged") from None
    click.echo(f"wrote {path}")

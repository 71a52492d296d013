"""``propagate analysis NAME``: run one of the paper reproductions in ``analyses/``."""
from __future__ import annotations

from pathlib import Path

import click

from propagate.analysis_support import DEFAULT_OUT, AnalysisError, available, execute


class _AnalysisName(click.ParamType):
    """The analyses present in analyses/ (checked when the command runs, listed in the error)."""

    name = "NAME"

    def convert(self, value, param, ctx):
        names = available()
        if value not in names:
            self.fail(f"unknown analysis {value!r}; available: {', '.join(names) or 'none (no analyses/ folder)'}",
                      param, ctx)
        return value


@click.command("analysis")
@click.argument("name", type=_AnalysisName(), metavar="NAME")
@click.option("--quick", is_flag=True, help="A smoke-test size that runs in seconds (not for conclusions).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help=f"Output folder: writes OUT/NAME.pdf and OUT/NAME/*.csv [{DEFAULT_OUT}].")
def analysis_cmd(name, quick, out):
    """Run a paper reproduction from analyses/ by NAME: """
    try:
        result = execute(name, quick=quick, out=out)
    except AnalysisError as err:
        raise click.UsageError(str(err)) from None
    click.echo(f"{name}: {result['verdict']}")
    click.echo(f"wrote {result['pdf']} and {result['dir']}/ in {result['seconds']:.1f} s")


analysis_cmd.help = ("Run a paper reproduction from analyses/ by NAME (" + ", ".join(available()) + ").\n\n"
                     "Writes OUT/NAME.pdf (title page with question, method and a verdict computed from the data; "
                     "figures; tables) and OUT/NAME/*.csv.")

"""The `propagate` command: a thin click skin over the Python API."""
import click

from propagate import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="propagate")
def main():
    """Signal propagation in deep ReLU networks: variance, gradients, dead units, theory."""


from propagate.cli.inits import inits_cmd  # noqa: E402
from propagate.cli.sweep import depth_sweep_cmd  # noqa: E402

main.add_command(inits_cmd)
main.add_command(depth_sweep_cmd)
from propagate.cli.mnist import mnist  # noqa: E402
main.add_command(mnist)
from propagate.cli.report import report_cmd  # noqa: E402
from propagate.cli.analysis import analysis_cmd  # noqa: E402
main.add_command(report_cmd)
main.add_command(analysis_cmd)

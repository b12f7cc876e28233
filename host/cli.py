"""The `lampwatch` command line: thin handlers that parse, build objects and call the library."""

import sys

import click

from . import __version__
from .cli_collect import collect
from .cli_report import report_command
from .errors import LampwatchError


@click.group()
@click.version_option(__version__, prog_name="lampwatch")
def cli():
    """lampwatch: real-time OEE from tower lamps and part counters."""


cli.add_command(collect)


@cli.group()
def oee():
    """Compute OEE."""


oee.add_command(report_command)


def main(argv=None):
    """Entry point: the one place that turns a LampwatchError into `lampwatch: <msg>`."""
    try:
        cli.main(args=argv, prog_name="lampwatch", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("lampwatch: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except LampwatchError as exc:
        click.echo(f"lampwatch: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)

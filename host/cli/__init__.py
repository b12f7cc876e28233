"""The `lampwatch` command line: thin handlers that parse, build objects and call the library."""

import json
import sys
from pathlib import Path

import click

from .. import __version__
from ..errors import LampwatchError
from ..report import logbook
from .collect import collect
from .commission import commission, nodes_command
from .demo import demo
from .flash import flash_command
from .oee import report_command


@click.group()
@click.version_option(__version__, prog_name="lampwatch")
def cli():
    """lampwatch: real-time OEE from tower lamps and part counters."""


cli.add_command(collect)
cli.add_command(commission)
cli.add_command(nodes_command)
cli.add_command(demo)
cli.add_command(flash_command)


@cli.group()
def oee():
    """Compute OEE."""


oee.add_command(report_command)


@oee.command("calc")
@click.argument("logbook_csv", metavar="LOGBOOK.csv", type=click.Path(path_type=Path))
@click.option("--locale", type=click.Choice(sorted(logbook.SEPARATORS)), default="en",
              show_default=True,
              help="How numbers are written: en = 5,325,000.5; id = 5.325.000,5.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, ratios as fractions.")
def calc(logbook_csv, locale, as_json):
    """OEE per period and in TOTAL from a logbook CSV.

    \b
    Header (row 1), one period (shift, day, ...) per row after it:
    period,available_min,pm_min,setup_min,breakdown_min,processed,good,ideal_cycle_s

    \b
    run time     = available - pm - setup - breakdown
    availability = run / (available - pm)
    performance  = processed x ideal_cycle_s / run
    quality      = good / processed
    OEE          = availability x performance x quality

    Planned maintenance (pm_min) is planned downtime: it is taken out of planned
    production time rather than counted as lost availability, as in the OEE engine.
    TOTAL comes from the summed columns, never from averaged percentages; ideal
    time is summed as processed x ideal_cycle_s, so periods may differ in cycle
    time (TOTAL quality is weighted the same way). A period with nothing processed
    has quality - (undefined) and OEE 0. The delimiter may be ',' or ';'.
    See docs/oee.md.
    """
    rows, total = logbook.summarize(logbook.read_logbook(logbook_csv, locale))
    if as_json:
        click.echo(json.dumps(logbook.report(rows, total), indent=2))
    else:
        click.echo(logbook.format_table(rows, total))


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

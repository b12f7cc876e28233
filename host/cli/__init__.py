"""The `lampwatch` command line: a table of commands whose modules load only when asked for."""

import importlib
import sys

import click

from .. import __version__
from ..errors import LampwatchError

# Command name -> (module in lampwatch.cli, attribute), as mpremote's _COMMANDS. Each module
# imports only click at import time and the library inside its command, so `lampwatch --help`
# (which reads every command's short help) loads no asyncio, SQLite, board, demo or mpremote;
# tests/test_cli_lazy.py holds that.
_COMMANDS = {
    "collect": ("collect", "collect"),
    "commission": ("commission", "commission"),
    "demo": ("demo", "demo"),
    "flash": ("flash", "flash_command"),
    "journal": ("journal", "journal"),
    "nodes": ("commission", "nodes_command"),
    "oee": ("oee", "oee"),
}


class _CommandTable(click.Group):
    """A click group whose commands come from _COMMANDS, each imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = _COMMANDS.get(cmd_name)
        if where is None:
            return None
        module, attr = where
        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


@click.group(cls=_CommandTable)
@click.version_option(__version__, prog_name="lampwatch")
def cli():
    """lampwatch: real-time OEE from tower lamps and part counters."""


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

"""`lampwatch demo`: run host/demo/run.py with signals wired, print the result."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from .collect import setup_logging


@click.command("demo")
@click.option("--speed", type=float, default=240.0, show_default=True,
              help="Simulated seconds per real second (240: an 8-hour shift in 2 minutes).")
@click.option("--shifts", type=click.IntRange(1, 3), default=1, show_default=True,
              help="Back-to-back shifts to simulate (A, B, C).")
@click.option("--shift-hours", type=float, default=8.0, show_default=True,
              help="Length of each shift; the scenarios scale with it.")
@click.option("--journal", type=click.Path(path_type=Path),
              default=Path("lampwatch-demo.sqlite"), show_default=True,
              help="SQLite journal; its config (.toml) and board PIN (.pin) go next to it. "
                   "A previous demo's journal there is replaced.")
@click.option("--board", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Andon board address ('off': none); a taken port falls back to a free one.")
@click.option("--operator-pin", metavar="PIN",
              help="The board's operator PIN (default: a random 6-digit one, printed).")
@click.option("--influx-url", metavar="URL",
              help="Also write to InfluxDB here (token from $LAMPWATCH_INFLUX_TOKEN).")
@click.option("--influx-org", default="lampwatch", show_default=True)
@click.option("--influx-bucket", default="lampwatch", show_default=True)
@click.option("--seed", type=int, default=1, show_default=True,
              help="Makes the minor stops and cycle times of the scenarios reproducible.")
@click.option("--tz", default="Asia/Jakarta", show_default=True,
              help="The plant's time zone (IANA name).")
def demo(speed, shifts, shift_hours, journal, board, operator_pin, influx_url, influx_org,
         influx_bucket, seed, tz):
    """A rice-milling line of six virtual nodes (husker, whitener, polisher, grader, packer,
    bagging scale in kg) running the real firmware against a collector, on an accelerated
    clock, with a live OEE table.

    The simulated shifts are the last ones that ended before now (starting on a quarter
    hour, local time in --tz), and the demo's calendar has them every day, so `lampwatch
    oee report --shift today` afterwards shows them; the exact report command is printed
    at the end. Ctrl-C stops cleanly and keeps the journal.
    """
    import logging
    import signal
    import sys
    import threading

    from ..demo.run import DemoOptions, final_report, run_demo

    setup_logging("warning")  # INFO lines would tear the live table
    # Replays are counted on the screen; a log line per burst would tear the table.
    logging.getLogger("lampwatch.collector").setLevel(logging.ERROR)
    live = sys.stdout.isatty()
    opts = DemoOptions(speed=speed, shifts=shifts, shift_hours=shift_hours, journal=journal,
                       board=None if board.lower() in ("off", "none", "") else board,
                       operator_pin=operator_pin, influx_url=influx_url,
                       influx_org=influx_org, influx_bucket=influx_bucket, seed=seed, tz=tz,
                       live=live)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _live_screen() if live else contextlib.nullcontext() as show:
            result = run_demo(opts, out=click.echo, stop=stop, show=show)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    how = "the shift ended" if result.finished else "stopped"
    click.echo(f"\n{how}: {result.sim_s / 3600:.2f} simulated hours in {result.wall_s:.1f} s")
    click.echo(f"{result.accepted:,} frames accepted, {result.resent:,} resent after a late "
               f"ACK (harmless), {result.rejected:,} rejected")
    planned_s = result.sim_s / speed
    if result.wall_s > planned_s * 1.05 + 1.0:
        click.echo(f"that is {result.sim_s / result.wall_s:.0f}x, behind the asked {speed:g}x "
                   f"({planned_s:.0f} s): this machine was too busy to keep up")
    click.echo()
    click.echo(final_report(result))
    click.echo(f"\nthe same report, any time later:\n  {result.report_command}")


@contextlib.contextmanager
def _live_screen(console=None):
    """A screen redrawn in place (rich Live) for run_demo's `show`; it stays when done."""
    from rich.console import Console
    from rich.live import Live

    from ..demo.table import screen

    with Live(console=console or Console(), auto_refresh=False, redirect_stderr=False,
              vertical_overflow="crop") as live:
        yield lambda banner, header, cells: live.update(screen(banner, header, cells),
                                                        refresh=True)

"""`lampwatch journal export | import | recompute | versions`: raw frames and derived history."""

from __future__ import annotations

from pathlib import Path

import click

CONFIG_HELP = "Collector config: the journal, the node keys, the calendar."


def _window(config_path, journal_path, from_, to):
    """(journal path, config or None, from_s, to_s) from the options."""
    from .. import oee
    from ..report import oee_report as report

    cfg = None
    if config_path is not None:
        from ..config import load_config

        cfg = load_config(config_path)
        journal_path = journal_path or cfg.journal_path
    if journal_path is None:
        raise click.UsageError("give --journal PATH or --config FILE")
    cal = cfg.calendar if cfg is not None else oee.Calendar("UTC")
    start = report.parse_when(from_, cal, "--from") if from_ else None
    end = report.parse_when(to, cal, "--to") if to else None
    return journal_path, cfg, start, end


@click.group()
def journal():
    """Raw frames out of and into a journal; derived history recomputed."""


@journal.command("export")
@click.argument("out", metavar="FILE|-", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=CONFIG_HELP)
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="The journal (default: the one --config names).")
@click.option("--from", "from_", metavar="WHEN", help="Frames received from: 2026-03-02[T06:00] "
              "(calendar time; UTC without --config).")
@click.option("--to", metavar="WHEN", help="Frames received before this.")
@click.option("--node", "node_id", type=int, help="Only this node's frames.")
def export_command(out, config_path, journal_path, from_, to, node_id):
    """Write the journal's raw frames as JSON Lines, in the order they were accepted:
    {"rx": unix seconds, "src": "address", "frame": "hex"} a line. Streams: memory
    does not grow with the journal."""
    import sys

    from ..errors import JournalReadError
    from ..history.transfer import export_frames

    path, _, start, end = _window(config_path, journal_path, from_, to)
    if not Path(path).is_file():
        raise JournalReadError(f"no journal at {path}")
    if str(out) == "-":
        n = export_frames(path, sys.stdout, from_s=start, to_s=end, node_id=node_id)
    else:
        with open(out, "w", encoding="ascii") as f:
            n = export_frames(path, f, from_s=start, to_s=end, node_id=node_id)
    click.echo(f"exported {n} frames", err=True)


@journal.command("import")
@click.argument("src", metavar="FILE|-", type=click.Path(path_type=Path, allow_dash=True))
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help=CONFIG_HELP)
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="Import into this journal (default: the one --config names).")
def import_command(src, config_path, journal_path):
    """Send raw frames (JSON Lines, as `journal export` writes) through the collector's
    path: verified with the config's keys, deduplicated, journaled and derived, each at
    its "rx" time. A frame stored already is a duplicate: importing twice changes no
    frame and no event. A bad line stops the import with its line number; the frames
    before it are stored, and importing the fixed file again adds the rest."""
    import sys

    from ..config import load_config
    from ..history.transfer import import_frames

    cfg = load_config(config_path)
    name = "stdin" if str(src) == "-" else str(src)
    if str(src) == "-":
        stats = import_frames(sys.stdin, name, cfg, journal_path)
    else:
        try:
            with open(src, encoding="utf-8", errors="strict") as f:
                stats = import_frames(_lines(f, name), name, cfg, journal_path)
        except OSError as exc:  # opening it (a journal's own failure is a SinkError)
            raise click.FileError(str(src), exc.strerror) from None
    click.echo(f"{stats.lines} frames read: {stats.accepted} stored, {stats.duplicates} "
               f"duplicates, {stats.rejected - stats.duplicates} refused (see the log)")


def _lines(f, name):
    """The file's lines; a byte that is not UTF-8 is an InputFileError naming its line."""
    from ..errors import InputFileError

    number = 0
    try:
        for number, line in enumerate(f, 1):
            yield line
    except UnicodeDecodeError:
        raise InputFileError(f"{name}:{number + 1}: not UTF-8 text") from None


@journal.command("recompute")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path),
              help=CONFIG_HELP + " With --apply, also the new settings.")
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="The journal (default: the one --config names).")
@click.option("--from", "from_", metavar="WHEN", help="Recompute events dated from this on "
              "(default: the journal's first frame).")
@click.option("--apply", is_flag=True, help="Record the config's settings as a new config "
              "version effective from WHEN, then recompute under it.")
@click.option("--influx", is_flag=True, help="Then send the recomputed events to the "
              "config's InfluxDB.")
def recompute_command(config_path, journal_path, from_, apply, influx):
    """Rebuild derived events (states, counts, OEE) from the raw frames, under the config
    version valid at each time. One transaction: all replaced, or nothing. Stop the
    collector first."""
    import time

    from ..history.recompute import recompute
    from ..journal.history import HistoryJournal

    path, cfg, start, _ = _window(config_path, journal_path, from_, None)
    if not Path(path).is_file():
        from ..errors import JournalReadError

        raise JournalReadError(f"no journal at {path}")
    if start is None:
        with HistoryJournal(path) as j:
            first = next(j.iter_frames(page=1), None)
        if first is None:
            raise click.UsageError(f"journal {path} holds no frames")
        start = first.rx_s
    stats = recompute(cfg, start, time.time(), new_config=cfg if apply else None,
                      journal_path=path)
    versions = ", ".join(map(str, stats.versions)) or "none"
    click.echo(f"recomputed from {cfg.calendar.iso(start)}: {stats.frames} frames, "
               f"{stats.events} events, config version(s) {versions}"
               + (f"; version {stats.recorded} recorded" if stats.recorded else ""))
    if stats.undecodable:
        click.echo(f"warning: {stats.undecodable} stored frames do not verify with this "
                   "config's keys and were left out", err=True)
    if stats.clock_steps:
        click.echo(f"warning: {stats.clock_steps} host clock step(s) in the range: node times "
                   "after them are anchored on receive time, not on the collector's monotonic "
                   "clock (docs/history.md, \"Limits\")", err=True)
    if influx:
        _send(cfg)


def _send(cfg) -> None:
    from ..errors import SinkError
    from ..influx.forwarder import forwarder_for

    fwd = forwarder_for(cfg)
    if fwd is None:
        raise click.UsageError("--influx: the config has no [influxdb] table")
    try:
        step = fwd.drain()
    finally:
        fwd.close_journal()
    if step.failed:
        raise SinkError(f"InfluxDB {cfg.influxdb.url}: {step.error} (the events stay in the "
                        "journal; the collector's forwarder sends them when it runs)")
    click.echo(f"sent to InfluxDB {cfg.influxdb.url}: {step.events} events, {step.points} "
               "points")


@journal.command("versions")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help=CONFIG_HELP)
@click.option("--journal", "journal_path", type=click.Path(path_type=Path),
              help="The journal (default: the one --config names).")
def versions_command(config_path, journal_path):
    """The config versions the journal was derived under, and what each changed."""
    from .. import oee
    from ..journal import open_readonly

    path, cfg, _, _ = _window(config_path, journal_path, None, None)
    cal = cfg.calendar if cfg is not None else oee.Calendar("UTC")
    with open_readonly(path) as j:
        rows = j.config_versions()
    for v in rows:
        click.echo(f"{v.version:>3}  from {cal.iso(v.effective_from_s)}  {v.hash}  {v.summary}")

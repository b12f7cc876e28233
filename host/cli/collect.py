"""`lampwatch collect`: run the collector, or `--check` a config and say what it would do."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..config import Config

DEFAULT_CONFIG = Path("/etc/lampwatch/collector.toml")


def setup_logging(level: str) -> None:
    """Log lines to stderr with a level prefix and no time (journald stamps them)."""
    import logging  # here, not at the top: `lampwatch --help` has no use for it

    # syslog priorities: journald reads a "<N>" line prefix as the entry's level.
    syslog = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
              logging.CRITICAL: 2}

    class _JournaldFormatter(logging.Formatter):
        def format(self, record):
            return f"<{syslog.get(record.levelno, 6)}>{super().format(record)}"

    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(levelname)s %(name)s: %(message)s"
    journald = bool(os.environ.get("JOURNAL_STREAM"))
    handler.setFormatter(_JournaldFormatter(fmt) if journald else logging.Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def describe(cfg: Config) -> list[str]:
    """What `collect` would do with this config, one line each; never shows a secret."""
    lines = [f"config: {cfg.path}"]
    if cfg.udp_listen:
        lines.append(f"listen: udp {cfg.udp_listen[0]}:{cfg.udp_listen[1]}")
    lines += [f"listen: serial {s.port} at {s.baud} baud" for s in cfg.serial]
    if not cfg.udp_listen and not cfg.serial and not cfg.uns_sources:
        lines.append("listen: nothing")
    lines.append(f"journal: {cfg.journal_path} (sync {cfg.journal_sync})")
    if cfg.influxdb is None:
        lines.append("influxdb: not configured (the journal is the only store)")
    else:
        t = cfg.influxdb
        lines.append(f"influxdb: {t.url} org {t.org!r} bucket {t.bucket!r} token "
                     f"{t.describe_token()}")
    from ..uns import settings as uns_settings  # here: `--help` needs none of it

    lines += uns_settings.describe(cfg)  # [uns], [[uns_source]] (issue 16)
    if cfg.board_listen is not None:
        host, port = cfg.board_listen
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}/"
        who = (f"stop reasons need the operator PIN {cfg.board_pin.describe()}"
               if cfg.board_pin is not None else "read-only (no operator PIN)")
        lines.append(f"board: {url}; {who}")
    else:
        lines.append("board: off (no [board] table, no --board)")
    lines.append(f"nodes: {len(cfg.nodes)}")
    for n in sorted(cfg.nodes.values(), key=lambda n: n.node_id):
        ideal = f"{n.ideal_cycle_s:g} s/{n.unit}" if n.ideal_cycle_s else "unknown (no OEE)"
        lamps = ", ".join(f"{k}={v}" for k, v in n.lamp_map.items()) if n.lamp_map else "default"
        lines.append(f"  node {n.node_id}: {n.plant} / {n.line} / {n.machine}; ideal cycle "
                     f"{ideal}; heartbeat {n.heartbeat_s:g} s; lamps {lamps}")
    cal = cfg.calendar
    lines.append(f"calendar: {cal.tz}, {len(cal.shifts)} shift(s), "
                 f"{len(cal.planned_stops)} planned stop(s)")
    days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    for s in cal.shifts:
        breaks = ", ".join(f"{b.start:%H:%M}-{b.end:%H:%M}" for b in s.breaks) or "none"
        lines.append(f"  shift {s.name}: {s.start:%H:%M}-{s.end:%H:%M} on "
                     f"{' '.join(days[d] for d in s.weekdays)}; breaks {breaks}")
    if not cal.shifts:
        lines.append("  no shifts: no per-shift OEE events")
    return lines


async def _serve(cfg: Config) -> None:
    import asyncio
    import signal

    from ..runtime import CollectorRuntime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await CollectorRuntime(cfg).run(stop)


@click.command("collect")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              default=DEFAULT_CONFIG, show_default=True, help="Collector config (TOML).")
@click.option("--check", is_flag=True,
              help="Say whether the config can start (first line: 'ready' or 'not ready: N "
              "problems'), list every problem, then what would run; exit 0 only when ready.")
@click.option("--board", "board", metavar="HOST:PORT",
              help="Serve the Andon board here (overrides [board] listen).")
def collect(config_path: Path, check: bool, board: str | None):
    """Receive node frames (UDP, serial), journal them, ACK, derive states, counts and OEE.

    Runs until SIGTERM or SIGINT, then commits what is pending and exits. The InfluxDB
    token and the board's operator PIN come from the environment or a file named in the
    config, never from here.
    """
    import asyncio
    import dataclasses

    from ..config import board_address, load_config

    problems: list[str] = []
    cfg = load_config(config_path, problems=problems if check else None)
    if board is not None:
        cfg = dataclasses.replace(cfg, board_listen=board_address(board))
    if check:
        from ..readiness import check as readiness

        r = readiness(cfg, problems)
        click.echo(r.verdict())
        for line in [f"problem: {p}" for p in r.problems] + [f"warning: {w}" for w in r.warnings]:
            click.echo(line)
        click.echo()
        for line in describe(cfg):
            click.echo(line)
        if not r.ready:
            sys.exit(1)
        return
    from ..uns import settings as uns_settings

    setup_logging(cfg.log_level)
    if cfg.influxdb is not None:
        cfg.influxdb.token()
    if cfg.board_listen is not None and cfg.board_pin is not None:
        cfg.board_pin.value()
    uns_settings.check(cfg)
    try:
        asyncio.run(_serve(cfg))
    except OSError as exc:  # e.g. the UDP port is taken, the journal dir not writable
        raise ConfigError(f"cannot start the collector: {exc}") from None

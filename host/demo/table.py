"""The demo's screen: banner, where the simulation is, and the live OEE table, in 80x24.

`rows` and `format_header` are pure (the deriver's snapshots and the simulated time in,
strings out) and tested with exact strings; `screen` lays them out as a rich renderable
with fixed column widths, so a redraw never moves a column, and everything fits 80 columns
and 24 lines. The plant row sums times and counts with host/oee.py's roll-up and
recomputes the ratios, never averaging percentages.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.box import Box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from .. import oee
from ..derive import MachineSnapshot

__all__ = ["COLUMNS", "WIDTH", "Header", "banner", "format_header", "hms", "pct", "rows", "screen",
           "to_text"]

WIDTH, HEIGHT = 80, 24
# (heading, width, justify): 79 columns with the one-space gaps, whatever the values.
COLUMNS = (("machine", 10, "left"), ("state", 14, "left"), ("for", 8, "right"),
           ("A%", 4, "right"), ("P%", 4, "right"), ("Q%", 4, "right"), ("OEE%", 4, "right"),
           ("good", 7, "right"), ("NG", 5, "right"), ("unit", 5, "left"),
           ("cov%", 4, "right"))
# No frame, a rule under the heading and above the plant row; ASCII for any terminal.
_RULES = Box("    \n    \n -- \n    \n -- \n    \n    \n    \n", ascii=True)
_BEHIND_S = 2.0  # real seconds late before the screen says the demo runs behind

# What the screen says (kept here, together, to be translated in one place).
T_SHIFT = "shift {name} {start}-{end}, {done} done"
T_BETWEEN = "between shifts"
T_SPEED = "speed {speed}x (now {now}x)"
T_SPEED_START = "speed {speed}x"
T_FRAMES = "frames {n}"
T_FRAMES_EXTRA = "frames {n} ({extra})"
T_RESENT = "{n} resent"
T_REJECTED = "{n} rejected"
T_BEHIND = "behind by {late}: this machine runs the demo slower than {speed}x"
T_INTRO = "lampwatch demo: {line}, {n} virtual nodes on the real firmware"
T_COLLECTOR = "collector: udp {address}"
T_BOARD = "board: {url}  (operator PIN {pin})"
T_NO_BOARD = "board: not in this build (would listen on {listen})"
T_JOURNAL = "journal: {path}"
T_CONFIG = "config: {path}"
T_INFLUX = "InfluxDB: {target}"
T_STOP = "Ctrl-C stops; the journal stays for `lampwatch oee report`."
T_PLANT = "plant"
T_RUNNING = "{run}/{total} RUN"


@dataclass(frozen=True)
class Header:
    """What the lines above the table say: where the simulation is and how fast it runs."""

    tz: str
    shift: str | None
    shift_start_s: float | None
    shift_end_s: float | None
    speed: float
    actual_speed: float | None
    frames: int
    resent: int = 0  # duplicates: a node resent a frame whose ACK came late
    rejected: int = 0  # anything else refused (replay, bad tag, unknown node, ...)
    behind_s: float = 0.0  # real seconds the simulation is late on its `speed` schedule


def banner(line: str, nodes: int, udp: str, board_note: str | None, board_url: str | None,
           board_listen: str | None, pin: str, journal: object, config: object,
           influx: str | None) -> list[str]:
    """The lines above everything: what runs where, and how to stop it."""
    lines = [T_INTRO.format(line=line, n=nodes), T_COLLECTOR.format(address=udp)]
    if board_note:
        lines.append(board_note)
    if board_url:
        lines.append(T_BOARD.format(url=board_url, pin=pin))
    elif board_listen is not None:
        lines.append(T_NO_BOARD.format(listen=board_listen))
    lines += [T_JOURNAL.format(path=journal), T_CONFIG.format(path=config)]
    if influx:
        lines.append(T_INFLUX.format(target=influx))
    return [*lines, T_STOP]


def hms(seconds: float | None) -> str:
    """1:02:03, or 2:03 under an hour, or 12h34m from 10 hours on; '-' when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    if h >= 10:
        return f"{h}h{m:02d}m"
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def pct(ratio: float | None) -> str:
    """A ratio as a percentage in 4 columns: 96.9, 100; '-' when unknown."""
    if ratio is None:
        return "-"
    v = round(ratio * 100, 1)
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def _count(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _state(s: MachineSnapshot) -> str:
    if s.state is None:
        return "-"
    return f"{s.state} {s.reason}" if s.reason else s.state


def _row(s: MachineSnapshot, now_s: float, unit: str) -> tuple[str, ...]:
    d = s.oee_data()
    since = None if s.since_s is None else now_s - s.since_s
    return (s.machine, _state(s), hms(since), pct(d.get("availability")),
            pct(d.get("performance")), pct(d.get("quality")), pct(d.get("oee")),
            _count(s.good), _count(s.ng), unit, pct(d.get("coverage")))


def rows(snaps: Mapping[str, MachineSnapshot], now_s: float,
         units: Mapping[str, str] | None = None,
         order: Sequence[str] | None = None) -> list[tuple[str, ...]]:
    """The table's cells: one row per machine (in `order`), then the plant roll-up.

    The plant row shows how many machines run, and ratios and coverage from the summed
    times; its good / NG are '-' because machines count different units.
    """
    units = units or {}
    names = [m for m in (order or sorted(snaps)) if m in snaps]
    out = [_row(snaps[m], now_s, units.get(m, "")) for m in names]
    results = [snaps[m].result for m in names if snaps[m].result is not None]
    running = T_RUNNING.format(run=sum(1 for m in names if snaps[m].state == "RUN"),
                               total=len(names))
    if results:
        plant = oee.rollup(results, "plant")
        known = all(snaps[m].ideal_known for m in names if snaps[m].result is not None)
        r = plant.ratios
        out.append((T_PLANT, running, "", pct(r.availability),
                    pct(r.performance if known else None), pct(r.quality),
                    pct(r.oee if known else None), "-", "-", "", pct(plant.coverage)))
    else:
        out.append((T_PLANT, running, "", "-", "-", "-", "-", "-", "-", "", "-"))
    return out


def format_header(h: Header, now_s: float) -> list[str]:
    """The lines above the table, each under 80 columns:

    '2026-03-02 10:14:24 Asia/Jakarta  shift A 06:00-14:00, 53% done'
    'speed 240x (now 238x)  frames 1,234 (5 resent)'
    and, when the simulation is late on its schedule, a line that says so.
    """
    zone = ZoneInfo(h.tz)
    clock = datetime.fromtimestamp(now_s, zone).strftime("%Y-%m-%d %H:%M:%S")
    where = T_BETWEEN
    if h.shift is not None and h.shift_start_s is not None and h.shift_end_s is not None:
        done = (now_s - h.shift_start_s) / (h.shift_end_s - h.shift_start_s)
        where = T_SHIFT.format(
            name=h.shift, start=datetime.fromtimestamp(h.shift_start_s, zone).strftime("%H:%M"),
            end=datetime.fromtimestamp(h.shift_end_s, zone).strftime("%H:%M"),
            done=oee.percent(min(max(done, 0.0), 1.0), 0))
    speed = (T_SPEED.format(speed=f"{h.speed:g}", now=f"{h.actual_speed:.0f}")
             if h.actual_speed else T_SPEED_START.format(speed=f"{h.speed:g}"))
    extra = [t.format(n=f"{n:,}") for n, t in ((h.resent, T_RESENT), (h.rejected, T_REJECTED))
             if n]
    frames = (T_FRAMES_EXTRA.format(n=f"{h.frames:,}", extra=", ".join(extra)) if extra
              else T_FRAMES.format(n=f"{h.frames:,}"))
    lines = [f"{clock} {h.tz}  {where}", f"{speed}  {frames}"]
    if h.behind_s >= _BEHIND_S:
        lines.append(T_BEHIND.format(late=hms(h.behind_s), speed=f"{h.speed:g}"))
    return lines


def _table(cells: Sequence[Sequence[str]]) -> Table:
    table = Table(box=_RULES, show_edge=False, pad_edge=False, padding=(0, 0),
                  collapse_padding=True)
    for heading, width, justify in COLUMNS:
        table.add_column(heading, width=width, justify=justify, no_wrap=True,
                         overflow="ellipsis")
    for i, row in enumerate(cells):
        table.add_row(*row, end_section=i == len(cells) - 2)
    return table


def screen(banner: Sequence[str], header: Sequence[str],
           cells: Sequence[Sequence[str]]) -> RenderableType:
    """Banner, a blank line, the header lines and the table; a line too long for the
    terminal ends in an ellipsis rather than wrapping (a wrapped line would scroll)."""
    lines = [Text(x, no_wrap=True, overflow="ellipsis") for x in [*banner, "", *header]]
    return Group(*lines, _table(cells))


def to_text(renderable: RenderableType, width: int = WIDTH) -> str:
    """The renderable as plain text (no colour, no control codes), for a pipe or a log."""
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True,
                      force_terminal=False, legacy_windows=False)
    console.print(renderable)
    return console.export_text().rstrip("\n")

"""The demo's live table: per machine state, time in state, A / P / Q / OEE, counts, coverage; pure.

A function of the deriver's snapshots and the (simulated) time only, so it is tested with
exact strings; the plant row sums times and counts with host/oee.py's roll-up and recomputes
the ratios, never averaging percentages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from .. import oee
from ..derive import MachineSnapshot
from ..oee import percent

__all__ = ["Header", "format_header", "format_table", "hms"]

HEAD = ("machine", "state", "in state", "A", "P", "Q", "OEE", "good", "NG", "unit",
        "coverage")


@dataclass(frozen=True)
class Header:
    """What the line above the table says: where the simulation is and how fast it runs."""

    tz: str
    shift: str | None
    shift_start_s: float | None
    shift_end_s: float | None
    speed: float
    actual_speed: float | None
    frames: int
    resent: int = 0  # duplicates: a node resent a frame whose ACK came late
    rejected: int = 0  # anything else refused (bad tag, unknown node, ...)


def hms(seconds: float | None) -> str:
    """1:02:03 or 2:03 (minutes:seconds under an hour); '-' when unknown."""
    if seconds is None:
        return "-"
    s = max(0, int(seconds))
    h, m, sec = s // 3600, s // 60 % 60, s % 60
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _count(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _state(s: MachineSnapshot) -> str:
    if s.state is None:
        return "-"
    return f"{s.state} {s.reason}" if s.reason else s.state


def _row(s: MachineSnapshot, now_s: float, unit: str) -> tuple[str, ...]:
    d = s.oee_data()
    since = None if s.since_s is None else now_s - s.since_s
    return (s.machine, _state(s), hms(since), percent(d.get("availability")),
            percent(d.get("performance")), percent(d.get("quality")), percent(d.get("oee")),
            _count(s.good), _count(s.ng), unit, percent(d.get("coverage")))


def format_table(snaps: Mapping[str, MachineSnapshot], now_s: float,
                 units: Mapping[str, str] | None = None,
                 order: Sequence[str] | None = None) -> list[str]:
    """The table's lines: a header, one row per machine, and the plant roll-up.

    The plant row shows how many machines run, and ratios and coverage from the summed
    times; its good / NG are '-' because machines count different units.
    """
    units = units or {}
    names = [m for m in (order or sorted(snaps)) if m in snaps]
    rows = [_row(snaps[m], now_s, units.get(m, "")) for m in names]
    results = [snaps[m].result for m in names if snaps[m].result is not None]
    running = sum(1 for m in names if snaps[m].state == "RUN")
    if results:
        plant = oee.rollup(results, "plant")
        known = all(snaps[m].ideal_known for m in names if snaps[m].result is not None)
        r = plant.ratios
        rows.append(("plant", f"{running}/{len(names)} RUN", "", percent(r.availability),
                     percent(r.performance if known else None), percent(r.quality),
                     percent(r.oee if known else None), "-", "-", "", percent(plant.coverage)))
    else:
        rows.append(("plant", f"{running}/{len(names)} RUN", "", "-", "-", "-", "-", "-", "-",
                     "", "-"))
    widths = [max(len(c) for c in col) for col in zip(HEAD, *rows)]

    def fmt(cells: Sequence[str]) -> str:
        left = (0, 1, 9)  # machine, state, unit read left to right
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    rule = "-" * len(fmt(HEAD))
    return [fmt(HEAD), rule, *(fmt(r) for r in rows[:-1]), rule, fmt(rows[-1])]


def format_header(h: Header, now_s: float) -> str:
    """'sim 2026-03-02 10:15:00 Asia/Jakarta | shift A 06:00-14:00 53% | 240x (238x) | ...'."""
    zone = ZoneInfo(h.tz)
    clock = datetime.fromtimestamp(now_s, zone).strftime("%Y-%m-%d %H:%M:%S")
    parts = [f"simulated {clock} {h.tz}"]
    if h.shift is not None and h.shift_start_s is not None and h.shift_end_s is not None:
        a = datetime.fromtimestamp(h.shift_start_s, zone).strftime("%H:%M")
        b = datetime.fromtimestamp(h.shift_end_s, zone).strftime("%H:%M")
        done = (now_s - h.shift_start_s) / (h.shift_end_s - h.shift_start_s)
        parts.append(f"shift {h.shift} {a}-{b} {percent(min(max(done, 0.0), 1.0), 0)} done")
    else:
        parts.append("between shifts")
    actual = f" (now {h.actual_speed:.0f}x)" if h.actual_speed else ""
    parts.append(f"speed {h.speed:g}x{actual}")
    extra = [f"{n:,} {what}" for n, what in ((h.resent, "resent"), (h.rejected, "rejected")) if n]
    parts.append(f"frames {h.frames:,}" + (f" ({', '.join(extra)})" if extra else ""))
    return " | ".join(parts)

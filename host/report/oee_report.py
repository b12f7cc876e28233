"""OEE report from the journal: per machine and plant roll-up, six big losses, coverage.

Reads the derived `state`, `count` and `reason` events (never the frames' contents) and
computes with host/oee.py through host/timeline.py, exactly as the live deriver does. The
journal is opened read-only: a report never creates or changes one.

A machine's last state lasts until its node was last heard (the newest frame's receive time)
plus its silence timeout, then the time is UNKNOWN, so a collector that stopped never leaves
a machine silently running in a report.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from .. import journal, oee
from ..errors import JournalReadError, LampwatchError
from ..events import Event
from ..timeline import LOSS_KEYS, MachineTimeline, oee_data

# Without a config the whole window is planned production time (a 24 h shift every day).
ALL_DAY = oee.Calendar("UTC", (oee.Shift("day", "00:00", "00:00"),))
_DEFAULT_HEARTBEAT_S = 10.0
_SILENT_PERIODS = 3
# A stop is classified on its whole length, so read this much around the window.
_MARGIN_S = 86400.0


class ReportError(LampwatchError):
    """The report cannot be made (no journal, bad window, unknown machine)."""


@dataclass(frozen=True)
class MachineSettings:
    ideal_cycle_s: float | None = None
    heartbeat_s: float = _DEFAULT_HEARTBEAT_S


@dataclass(frozen=True)
class Row:
    machine: str
    result: oee.OEEResult
    ideal_known: bool

    def data(self) -> dict:
        return {"machine": self.machine, **oee_data(self.result, self.ideal_known)}


@dataclass(frozen=True)
class Report:
    start: float
    end: float
    calendar: oee.Calendar
    rows: list[Row]
    plant: Row


# --- reading the journal ----------------------------------------------------------------

def read_journal(path: str | Path, start_s: float,
                 end_s: float) -> tuple[list[Event], dict[int, float]]:
    """State / count / reason / hello events around [start_s, end_s) and each node's last rx.

    Raises ReportError if the file is missing or is not a lampwatch journal.
    """
    try:
        with journal.open_readonly(path) as j:
            rows = j.oee_events(start_s - _MARGIN_S, end_s + _MARGIN_S)
            heard = j.last_rx()
    except JournalReadError as exc:
        raise ReportError(str(exc)) from None
    events = []
    for row in rows:
        try:
            events.append(Event.from_row(row.ts_s, row.kind, row.node_id, row.machine,
                                         row.data))
        except (TypeError, ValueError):
            continue  # a malformed row is skipped, as the forwarder does
    return events, heard


# --- computing ---------------------------------------------------------------------------

def build_report(events: Iterable[Event], last_rx: Mapping[int, float], start_s: float,
                 end_s: float, *, calendar: oee.Calendar | None = None,
                 settings: Mapping[str, MachineSettings] | None = None,
                 machine: str | None = None, now_s: float | None = None,
                 short_stop_s: float = oee.DEFAULT_SHORT_STOP_S) -> Report:
    """OEE per machine and the plant roll-up over [start_s, min(end_s, now_s)).

    Args:
        events: the journal's events (read_journal). last_rx: node id -> last receive time.
        calendar: shifts and planned stops (None: the whole window is planned).
        settings: machine -> ideal cycle and heartbeat (machines without one: P unknown).
        machine: only this machine (ReportError if unknown).
    """
    calendar = calendar or ALL_DAY
    settings = dict(settings or {})
    timelines: dict[str, MachineTimeline] = {m: MachineTimeline(m) for m in settings}
    nodes: dict[str, set[int]] = {}
    heartbeat_s: dict[int, float] = {}
    last_ts: dict[str, float] = {}
    for ev in events:
        if not ev.machine:
            continue
        if ev.node_id is not None:
            nodes.setdefault(ev.machine, set()).add(ev.node_id)
        last_ts[ev.machine] = max(last_ts.get(ev.machine, ev.ts_s), ev.ts_s)
        if ev.kind == "hello" and ev.data.get("heartbeat_ms"):
            heartbeat_s[ev.node_id] = ev.data["heartbeat_ms"] / 1000.0
        timelines.setdefault(ev.machine, MachineTimeline(ev.machine)).add(ev)
    if machine is not None:
        if machine not in timelines:
            known = ", ".join(sorted(timelines)) or "none in this journal"
            raise ReportError(f"unknown machine {machine!r} (known: {known})")
        timelines = {machine: timelines[machine]}
    end = end_s if now_s is None else max(start_s, min(end_s, now_s))
    rows = []
    # the line's order, as the registry lists its machines; others after, by name
    line_order = {m: i for i, m in enumerate(settings)}
    for name in sorted(timelines, key=lambda m: (line_order.get(m, len(line_order)), m)):
        ms = settings.get(name, MachineSettings())
        ids = nodes.get(name, set())
        heard = max([last_rx[i] for i in ids if i in last_rx] + [last_ts.get(name, -1e18)])
        grace = _SILENT_PERIODS * max([heartbeat_s.get(i, ms.heartbeat_s) for i in ids],
                                      default=ms.heartbeat_s)
        try:
            result = timelines[name].evaluate(ms.ideal_cycle_s, calendar, start_s, end,
                                              until_s=min(end, heard + grace),
                                              short_stop_s=short_stop_s)
        except oee.OEEInputError as exc:
            raise ReportError(f"machine {name}: {exc}") from None
        rows.append(Row(name, result, bool(ms.ideal_cycle_s)))
    plant = Row("all", oee.rollup([r.result for r in rows], "all"),
                bool(rows) and all(r.ideal_known for r in rows))
    return Report(start_s, end, calendar, rows, plant)


# --- windows -----------------------------------------------------------------------------

def parse_when(text: str, calendar: oee.Calendar, what: str) -> float:
    """An ISO date or date-time (local to the calendar unless it has an offset) -> epoch s."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(f"{what} {text!r} is not a date or time like 2026-03-02 or "
                          "2026-03-02T06:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=calendar.zone)
    return dt.timestamp()


def parse_day(text: str, today: date) -> date:
    if text == "today":
        return today
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ReportError(f"day {text!r} is not a date like 2026-03-02 (or 'today')") from None


def shift_window(which: str, calendar: oee.Calendar, now_s: float) -> tuple[float, float]:
    """'today': all shifts starting today; 'current': the running (else last) shift; or a
    shift name: today's instance of it."""
    today = datetime.fromtimestamp(now_s, calendar.zone).date()
    day0, day1 = calendar.day(today)
    todays = [i for i in calendar.shifts_between(day0 - 86400, day1 + 86400) if i.day == today]
    if which == "current":
        cur = calendar.shift_at(now_s) or max(
            (i for i in calendar.shifts_between(now_s - 7 * 86400, now_s) if i.end <= now_s),
            key=lambda i: i.end, default=None)
        if cur is None:
            raise ReportError("no shift is running or has run in the last week")
        return cur.start, cur.end
    chosen = todays if which == "today" else [i for i in todays if i.name == which]
    if not chosen:
        names = ", ".join(sorted({s.name for s in calendar.shifts})) or "none configured"
        raise ReportError(f"no shift {which!r} today (shifts: {names}; or 'today', 'current')")
    return min(i.start for i in chosen), max(i.end for i in chosen)


# --- output ------------------------------------------------------------------------------

_CSV_COLUMNS = ("machine", "from", "to", "availability", "performance", "quality", "oee",
                "good", "ng", "planned_s", "run_s", "unknown_s", "coverage",
                "planned_coverage") + LOSS_KEYS


def _flat(row: Row, report: Report) -> dict[str, Any]:
    d = row.data()
    d.update(d.pop("losses"))
    d["from"], d["to"] = report.calendar.iso(report.start), report.calendar.iso(report.end)
    return d


def format_json(report: Report) -> str:
    return json.dumps({
        "from": report.calendar.iso(report.start), "to": report.calendar.iso(report.end),
        "machines": [r.data() for r in report.rows], "plant": report.plant.data()}, indent=2)


def format_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, _CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for row in [*report.rows, report.plant]:
        w.writerow({k: "" if v is None else v for k, v in _flat(row, report).items()})
    return buf.getvalue()


# What the table says (kept together, to be translated in one place).
T_TITLE = "OEE {start} .. {end}"
T_HEAD = ("machine", "A", "P", "Q", "OEE", "good", "NG", "coverage")
T_HEAD_WIDE = ("machine", "A", "P", "Q", "OEE", "good", "NG", "planned h", "run h",
               "unknown h", "coverage")
T_LOSSES = "six big losses (minutes)"
T_LOSS_HEAD = ("machine", "breakdown", "setup", "minor stops", "speed loss", "defects",
               "startup")
T_LOSS_HEAD_WIDE = ("machine", "breakdown", "setup", "minor stops", "reduced speed",
                    "process defects", "startup rejects")
_MACHINE_W = 14  # in 80 columns a longer name ends in an ellipsis (--wide: whole)


def _min(v: float | None) -> str:
    return "-" if v is None else f"{v / 60:,.1f}"


def _count(v: float) -> str:
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.1f}"


def _hours(v: float | None) -> str:
    return "-" if v is None else f"{v / 3600:,.2f}"


def format_table(report: Report, wide: bool = False) -> str:
    """The report as text: machines in line order, then the plant; within 80 columns
    unless `wide` (every column, whole machine names)."""
    lines, losses = [], []
    for row in [*report.rows, report.plant]:
        r = row.data()
        name = row.machine if wide or len(row.machine) <= _MACHINE_W else (
            row.machine[:_MACHINE_W - 1] + "…")
        ratios = tuple(map(oee.percent, (r["availability"], r["performance"], r["quality"],
                                         r["oee"])))
        hours = ((_hours(r["planned_s"]), _hours(r.get("run_s")), _hours(r.get("unknown_s")))
                 if wide else ())
        lines.append((name, *ratios, _count(r["good"]), _count(r["ng"]), *hours,
                      oee.percent(r["coverage"])))
        losses.append((name, *(_min(r["losses"][k]) for k in LOSS_KEYS)))
    out = [T_TITLE.format(start=report.calendar.iso(report.start),
                          end=report.calendar.iso(report.end)), ""]
    out += _grid(T_HEAD_WIDE if wide else T_HEAD, lines)
    out += ["", T_LOSSES] + _grid(T_LOSS_HEAD_WIDE if wide else T_LOSS_HEAD, losses)
    return "\n".join(out)


def _grid(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]

    def fmt(cells):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(head), *(fmt(r) for r in rows)]


FORMATS = {"table": format_table, "csv": format_csv, "json": format_json}

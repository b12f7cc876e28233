"""OEE report from the journal: per machine and plant roll-up, six big losses, coverage.

Reads the derived `state`, `count` and `reason` events (never the frames' contents) and
computes with host/oee.py through host/timeline.py, exactly as the live deriver does. The
journal is opened read-only: a report never creates or changes one.

A machine's last state lasts until its node was last heard (the newest frame's receive time,
from the journal's `heard` table) plus its silence timeout, then the time is UNKNOWN, so a
collector that stopped never leaves a machine silently running in a report. (The collector
itself dates that UNKNOWN from when the newest data was made, which is earlier by the
network delay: milliseconds.)

The plant row: availability, coverage and the availability losses over every machine;
performance, quality, OEE and the losses that need an ideal cycle time over the machines
that have one (the others are named in a note, never weighted with an invented cycle time).
Output is summed only within one unit. Every sum in it is the sum of the machines' rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from .. import config_versions, journal, oee
from ..errors import JournalReadError, LampwatchError
from ..events import Event
from ..i18n import Catalogue, catalogue
from ..timeline import MachineTimeline, oee_data
from .oee_tables import format_csv, format_json, format_table

# Without a config the whole window is planned production time (a 24 h shift every day).
ALL_DAY = oee.Calendar("UTC", (oee.Shift("day", "00:00", "00:00"),))
_DEFAULT_HEARTBEAT_S = 10.0
_SILENT_PERIODS = 3
# A stop is classified on its whole length, so read this much around the window.
MARGIN_S = 86400.0
_WEEK_S = 7 * 86400.0
_P_SLACK = 1e-9
# Losses that need an ideal cycle time (over the machines that have one in the plant row).
_IDEAL_LOSSES = ("reduced_speed_s", "process_defect_s", "startup_reject_s")


class ReportError(LampwatchError):
    """The report cannot be made (no journal, bad window, unknown machine)."""


@dataclass(frozen=True)
class MachineSettings:
    """From the collector config's node entry; `unit` None: not known (not summed)."""

    ideal_cycle_s: float | None = None
    heartbeat_s: float = _DEFAULT_HEARTBEAT_S
    unit: str | None = None


@dataclass(frozen=True)
class Row:
    machine: str
    result: oee.OEEResult
    ideal_known: bool
    unit: str | None = None
    # the state intervals the result was computed from, unclipped (the shift sheet's timeline)
    intervals: tuple[oee.StateInterval, ...] = ()

    def data(self) -> dict:
        return {"machine": self.machine, **oee_data(self.result, self.ideal_known)}


@dataclass(frozen=True)
class Plant:
    """The plant row (module docstring): `data()` as a machine row's."""

    rows: list[Row]
    machine: str = "all"

    @property
    def left_out(self) -> list[str]:
        """Machines without an ideal cycle time: not in P, Q, OEE and the losses they need."""
        return [r.machine for r in self.rows if not r.ideal_known]

    @property
    def units(self) -> dict[str, tuple[float, float]]:
        """Unit -> (good, ng) counted; a machine of unknown unit is a unit of its own."""
        out: dict[str, tuple[float, float]] = {}
        for r in self.rows:
            unit = r.unit or f"({r.machine})"
            good, ng = out.get(unit, (0.0, 0.0))
            out[unit] = (good + r.result.good, ng + r.result.ng)
        return out

    def data(self) -> dict:
        every = oee.rollup([r.result for r in self.rows], "all")
        data = {"machine": self.machine, **oee_data(every, False), "quality": None}
        ideal = [r.result for r in self.rows if r.ideal_known]
        if ideal:
            known = oee_data(oee.rollup(ideal, "all"), True)
            for key in ("performance", "quality", "oee", "teep"):
                data[key] = known[key]
            for key in _IDEAL_LOSSES:
                data["losses"][key] = known["losses"][key]
        elif len(self.units) == 1:  # no ideal time to weigh by, but one unit: good / total
            data["quality"] = oee.ratios(0, 0, every.good + every.ng, every.good).quality
        if len(self.units) > 1:  # never add sacks to kilograms
            for key in ("good", "ng", "startup_ng", "unknown_good", "unknown_ng",
                        "excluded_good", "excluded_ng"):
                data[key] = None
        data["left_out"] = self.left_out
        data["output"] = {u: {"good": g, "ng": n} for u, (g, n) in self.units.items()}
        return data


@dataclass(frozen=True)
class VersionSpan:
    """A part of the window under one config version (issue 14): machine settings from the
    version the journal recorded, not from today's config file. Version 0: before the
    first recorded version (the settings of the config given to the report)."""

    start: float
    end: float
    version: int
    hash: str
    settings: Mapping[str, MachineSettings]


@dataclass(frozen=True)
class Report:
    start: float
    end: float
    calendar: oee.Calendar
    rows: list[Row]
    plant: Plant
    warnings: list[str] = field(default_factory=list)
    versions: list[VersionSpan] = field(default_factory=list)  # the config versions used
    # each warning as a catalogue key and raw fields (notice_text), for the tables' --lang
    notices: list[tuple[str, dict]] = field(default_factory=list)


# --- reading the journal ----------------------------------------------------------------

def read_journal(path: str | Path, start_s: float,
                 end_s: float) -> tuple[list[Event], dict[int, float]]:
    """State / count / reason / hello events around [start_s, end_s) and each node's last rx.

    Raises ReportError if the file is missing or is not a lampwatch journal.
    """
    try:
        with journal.open_readonly(path) as j:
            rows = j.oee_events(start_s - MARGIN_S, end_s + MARGIN_S)
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


def read_versions(path: str | Path, start_s: float, end_s: float) -> list[VersionSpan]:
    """The config versions in force over [start_s, end_s), each with its machine settings;
    [] for a journal that records none (then the config given is used throughout).

    Raises ReportError if the journal cannot be read or a version cannot be parsed.
    """
    try:
        with journal.open_readonly(path) as j:
            versions = j.config_versions()
    except JournalReadError as exc:
        raise ReportError(str(exc)) from None
    out = []
    for a, b, v in config_versions.segments(versions, start_s, end_s) if versions else ():
        if v is None:  # before the first version: the config given (version 0)
            out.append(VersionSpan(a, b, 0, "", {}))
            continue
        try:
            nodes = config_versions.DerivedSettings.from_doc(json.loads(v.settings)).nodes
        except (KeyError, TypeError, ValueError) as exc:
            raise ReportError(f"config version {v.version} in the journal cannot be read: "
                              f"{exc}") from None
        out.append(VersionSpan(a, b, v.version, v.hash, {
            n.machine: MachineSettings(n.ideal_cycle_s, n.heartbeat_s, n.unit)
            for n in nodes.values()}))
    return out


# --- computing ---------------------------------------------------------------------------

def from_config(cfg) -> tuple[oee.Calendar, dict[str, MachineSettings], dict]:
    """A collector Config's calendar (every hour planned when it has no shifts), machine
    settings in line order, and how stops and rejects are judged (build_report's keywords)."""
    calendar = cfg.calendar
    if not calendar.shifts:
        calendar = oee.Calendar(calendar.tz, ALL_DAY.shifts, calendar.planned_stops)
    settings = {n.machine: MachineSettings(n.ideal_cycle_s, n.heartbeat_s, n.unit)
                for n in cfg.nodes.values()}
    judged = {"short_stop_s": cfg.short_stop_s, "startup_window_s": cfg.startup_window_s,
              "planned_maintenance": cfg.planned_maintenance}
    return calendar, settings, judged


def build_report(events: Iterable[Event], last_rx: Mapping[int, float], start_s: float,
                 end_s: float, *, calendar: oee.Calendar | None = None,
                 settings: Mapping[str, MachineSettings] | None = None,
                 machine: str | None = None, now_s: float | None = None,
                 short_stop_s: float = oee.DEFAULT_SHORT_STOP_S, startup_window_s: float = 0.0,
                 planned_maintenance: str = oee.DEFAULT_PM_POLICY,
                 versions: list[VersionSpan] | None = None) -> Report:
    """OEE per machine and the plant roll-up over [start_s, min(end_s, now_s)).

    Args:
        events: the journal's events (read_journal). last_rx: node id -> last receive time.
        calendar: shifts and planned stops (None: the whole window is planned).
        settings: machine -> ideal cycle, heartbeat and unit (no ideal cycle: P unknown).
        machine: only this machine (ReportError if unknown).
        short_stop_s, startup_window_s, planned_maintenance: as host/oee.evaluate.
        versions: the config versions over the window (read_versions): each part of it is
            computed with its version's machine settings, then summed (oee.rollup).
    """
    calendar = calendar or ALL_DAY
    settings = dict(settings or {})
    timelines: dict[str, MachineTimeline] = {m: MachineTimeline(m) for m in settings}
    nodes: dict[str, set[int]] = {}
    heartbeat_s: dict[int, float] = {}
    last_ts: dict[str, float] = {}
    notices: list[tuple[str, dict]] = []
    for ev in events:
        if ev.kind == "clock":
            notices.append(_clock_warning(ev, calendar))
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
    results, intervals = {}, {}
    for name in timelines:
        ms = settings.get(name, MachineSettings())
        until = until_s(ms, nodes.get(name, set()), last_rx, heartbeat_s,
                        last_ts.get(name), end)
        intervals[name] = tuple(timelines[name].intervals(until))
        parts = version_parts(versions, name, ms, start_s, end)
        try:
            results[name] = ([timelines[name].evaluate(
                pms.ideal_cycle_s, calendar, a, b, until_s=min(b, until),
                short_stop_s=short_stop_s, startup_window_s=startup_window_s,
                planned_maintenance=planned_maintenance) for a, b, pms in parts], parts)
        except oee.OEEInputError as exc:
            raise ReportError(f"machine {name}: {exc}") from None
    return finish_report(results, settings, calendar, start_s, end, notices, versions,
                         intervals)


def version_parts(versions: list[VersionSpan] | None, name: str, ms: MachineSettings,
                  start_s: float, end: float) -> list[tuple[float, float, MachineSettings]]:
    """[start_s, end) cut at the config versions (issue 14), each part with the machine
    settings of its version; one part under `ms` when the journal records none."""
    parts = [(max(start_s, v.start), min(end, v.end), v.settings.get(name, ms))
             for v in versions or () if v.start < end and v.end > start_s]
    return parts or [(start_s, end, ms)]


def until_s(ms: MachineSettings, ids: Iterable[int], last_rx: Mapping[int, float],
            heartbeat_s: Mapping[int, float], last_ts: float | None, end: float) -> float:
    """Until when a machine's last state lasts: its nodes last heard (or its newest event)
    plus the silence timeout of the slowest of them, at most `end`."""
    ids = list(ids)
    heard = max([last_rx[i] for i in ids if i in last_rx]
                + [-1e18 if last_ts is None else last_ts])
    grace = _SILENT_PERIODS * max([heartbeat_s.get(i, ms.heartbeat_s) for i in ids],
                                  default=ms.heartbeat_s)
    return min(end, heard + grace)


def finish_report(results: Mapping[str, tuple[list[oee.OEEResult], list]],
                  settings: Mapping[str, MachineSettings], calendar: oee.Calendar,
                  start_s: float, end: float, notices: list[tuple[str, dict]],
                  versions: list[VersionSpan] | None = None,
                  intervals: Mapping[str, tuple] | None = None) -> Report:
    """The report of the machines' results (per machine: the results of its version parts
    and those parts, version_parts): rows in line order, the plant row, notices (warnings as catalogue keys and fields, issue
    18); `intervals`: each machine's state intervals (the shift sheet's timeline)."""
    rows = []
    # the line's order, as the registry lists its machines; others after, by name
    line_order = {m: i for i, m in enumerate(settings)}
    for name in sorted(results, key=lambda m: (line_order.get(m, len(line_order)), m)):
        parts_results, parts = results[name]
        result = parts_results[0] if len(parts_results) == 1 else oee.rollup(parts_results,
                                                                               name)
        ideal_known = all(pms.ideal_cycle_s for _, _, pms in parts)
        rows.append(Row(name, result, ideal_known, parts[-1][2].unit,
                        (intervals or {}).get(name, ())))
    plant = Plant(rows)
    for row in [*rows, plant]:
        p = row.data()["performance"]
        if p is not None and p > 1 + _P_SLACK:
            notices.append(("warn.performance", {"machine": row.machine, "p": p}))
    warnings = [notice_text(key, fields, catalogue("en"), calendar) for key, fields in notices]
    used = [v for v in versions or () if v.start < end and v.end > start_s]
    return Report(start_s, end, calendar, rows, plant, warnings, versions=used, notices=notices)


def _clock_warning(ev: Event, calendar: oee.Calendar) -> tuple[str, dict]:
    step = float(ev.data.get("step_s") or 0.0)
    return ("warn.clock_forward" if step > 0 else "warn.clock_back"), {"step": abs(step),
                                                                       "at": ev.ts_s}


def notice_text(key: str, fields: dict, cat: Catalogue, calendar: oee.Calendar) -> str:
    """A warning in `cat`'s language: a time (`at`) as ISO 8601 in English, else local; a
    ratio (`p`) as a percent; a step in seconds as written."""
    out = dict(fields)
    if "at" in out:
        out["at"] = (calendar.iso(out["at"]) if cat.lang == "en"
                     else cat.datetime(out["at"], calendar.zone))
    if "p" in out:
        out["p"] = cat.percent(out["p"])
    if "step" in out:
        out["step"] = f"{out['step']:g}" if cat.lang == "en" else cat.number(out["step"], 3)
    return cat.t(key, **out)


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
    """The window of `--shift WHICH` at `now_s` (docs/oee.md, "Which shift"):

    - a shift name: that shift running now, else the last one of that name that started
      (at 02:00 the night shift that began at 22:00 yesterday; at 07:00, the one that ended
      at 06:00);
    - 'current': the running shift, else the last one that ended;
    - 'today': the production day: every shift that started on the local date of the
      running shift, or between shifts of the last one that started.
    """
    started = [i for i in calendar.shifts_between(now_s - _WEEK_S - 86400, now_s + 1)
               if i.start <= now_s]
    names = ", ".join(sorted({s.name for s in calendar.shifts})) or "none configured"
    if not started:
        raise ReportError(f"no shift has started in the last week (shifts: {names})")
    latest = max(started, key=lambda i: (i.start, i.name))
    if which == "current":
        running = [i for i in started if now_s < i.end]
        cur = max(running, key=lambda i: i.start) if running else max(
            started, key=lambda i: i.end)
        return cur.start, cur.end
    if which == "today":
        day = [i for i in calendar.shifts_between(now_s - _WEEK_S, now_s + 2 * 86400)
               if i.day == latest.day]
        return min(i.start for i in day), max(i.end for i in day)
    named = [i for i in started if i.name == which]
    if not named:
        raise ReportError(f"no shift {which!r} has started in the last week (shifts: {names}; "
                          "or 'today', 'current')")
    inst = max(named, key=lambda i: i.start)
    return inst.start, inst.end


# The output formats live in host/report/oee_tables.py.
FORMATS = {"table": format_table, "csv": format_csv, "json": format_json}

"""Logbook and sensor side by side: each logbook period matched to its calendar shift, the
sensor's figures for that shift next to the logbook's, and differences flagged with a cause.

The sensor side is `oee report`'s own computation (build_report over the shift's window); the
logbook side is `oee calc`'s (logbook.Summary); nothing here computes OEE a second way.

Matching (docs/oee.md, "Logbook and sensor side by side"): a period is matched by its `date`
(the local date its shift starts) and `shift` (a calendar shift name) columns, and is of its
`machine` column's machine, or of the one machine the config has (or `--machine`). A period
that cannot be matched is listed with the reason and compared with nothing; a shift in the
window with sensor data and no logbook period is listed too. Two periods for the same machine
and shift are an error. Differences within one period net out: the logbook gives minutes per
period, not times, so a stop it lacks and a stop it invents in the same shift cancel.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date

from .. import oee
from ..errors import LampwatchError
from ..events import Event
from ..timeline import oee_data
from .logbook import Period, Summary
from .oee_report import MARGIN_S, MachineSettings, build_report

# Figures in the order both sides show them; *_min minutes, the rest units or fractions.
FIGURES = ("planned_min", "run_min", "pm_min", "setup_min", "breakdown_min", "unrecorded_min",
           "good", "ng", "availability", "performance", "quality", "oee", "coverage")
CAUSES = ("unrecorded_stop", "logbook_down_running", "output_mismatch", "sensor_gap",
          "planned_time")


class ReconcileError(LampwatchError):
    """The logbook and the config cannot be put side by side (which machine, duplicates)."""


@dataclass(frozen=True)
class Tolerances:
    """How far the two sides may differ before a difference is flagged.

    minutes: run time, downtime and planned time (minutes per period).
    output: output (processed and good) as a share of the logbook's (0.02: 2 %).
    coverage: below this share of planned time with a known state: a sensor gap.
    """

    minutes: float = 10.0
    output: float = 0.02
    coverage: float = 0.95


@dataclass(frozen=True)
class Figures:
    """One side's figures for one period; None where that side has no such figure."""

    planned_min: float | None = None
    run_min: float | None = None
    pm_min: float | None = None
    setup_min: float | None = None
    breakdown_min: float | None = None
    unrecorded_min: float | None = None
    good: float | None = None
    ng: float | None = None
    availability: float | None = None
    performance: float | None = None
    quality: float | None = None
    oee: float | None = None
    coverage: float | None = None

    @property
    def down_min(self) -> float:
        return (self.pm_min or 0.0) + (self.setup_min or 0.0) + (self.breakdown_min or 0.0)

    @property
    def output(self) -> float:
        return (self.good or 0.0) + (self.ng or 0.0)

    def data(self) -> dict:
        return {k: getattr(self, k) for k in FIGURES}


@dataclass(frozen=True)
class Flag:
    """A difference over its tolerance: `cause` one of CAUSES; `amount` minutes, or for an
    output mismatch the sensor's difference as a share of the logbook's output."""

    cause: str
    amount: float


@dataclass(frozen=True)
class Match:
    """One logbook period; `shift` None and `why` set when it could not be matched."""

    period: Period
    machine: str | None
    logbook: Figures
    shift: oee.ShiftInstance | None = None
    sensor: Figures | None = None
    flags: tuple[Flag, ...] = ()
    why: str | None = None  # "no_columns", "no_shift", "no_machine"


@dataclass(frozen=True)
class Reconciliation:
    start: float
    end: float
    calendar: oee.Calendar
    tolerances: Tolerances
    matches: list[Match]
    unlogged: list[tuple[str, oee.ShiftInstance]] = field(default_factory=list)


def logbook_figures(p: Period, pm_policy: str) -> Figures:
    """The logbook side of a period: `oee calc`'s Summary and ratios."""
    s = Summary.of(p, pm_policy)
    r = s.ratios
    return Figures(s.planned_min, s.run_min, p.pm_min, p.setup_min, p.breakdown_min, None,
                   p.good, p.processed - p.good, r.availability, r.performance, r.quality,
                   r.oee, None)


def sensor_figures(result: oee.OEEResult, ideal_known: bool, pm_min: float,
                   logbook_down_min: float) -> Figures:
    """The sensor side: the report's result; output includes output made in unknown time
    (the logbook counts a whole shift's output). Unrecorded stops: downtime the sensor saw
    beyond the logbook's."""
    d = oee_data(result, ideal_known)
    f = Figures(result.planned_s / 60, result.run_s / 60, pm_min, result.setup_s / 60,
                result.breakdown_s / 60, None, result.good + result.unknown_good,
                result.ng + result.unknown_ng, d["availability"], d["performance"],
                d["quality"], d["oee"], result.planned_coverage)
    return replace(f, unrecorded_min=max(0.0, f.down_min - logbook_down_min))


def flags(log: Figures, sensor: Figures, tol: Tolerances) -> tuple[Flag, ...]:
    """The differences over tolerance and their likely cause (docs/oee.md)."""
    out = []
    unknown_min = (1 - (sensor.coverage if sensor.coverage is not None else 1.0)) * (
        sensor.planned_min or 0.0)
    if sensor.coverage is not None and sensor.coverage < tol.coverage:
        out.append(Flag("sensor_gap", unknown_min))
    if abs((log.planned_min or 0.0) - (sensor.planned_min or 0.0)) > tol.minutes:
        out.append(Flag("planned_time", (log.planned_min or 0.0) - (sensor.planned_min or 0.0)))
    more_down = sensor.down_min - log.down_min
    more_run = (sensor.run_min or 0.0) - (log.run_min or 0.0)
    if more_down > tol.minutes:
        out.append(Flag("unrecorded_stop", more_down))
    elif -more_down > tol.minutes and more_run > tol.minutes:
        # the logbook's downtime the lamp showed as running (not time the sensor missed)
        out.append(Flag("logbook_down_running", min(-more_down, more_run)))
    for side_l, side_s in ((log.output, sensor.output), (log.good or 0.0, sensor.good or 0.0)):
        if side_l and abs(side_s - side_l) / side_l > tol.output:
            out.append(Flag("output_mismatch", (side_s - side_l) / side_l))
            break
        if not side_l and side_s:
            out.append(Flag("output_mismatch", float("inf")))
            break
    return tuple(out)


def instance_of(calendar: oee.Calendar, day: date, name: str) -> oee.ShiftInstance | None:
    """The calendar's shift `name` starting on local date `day`, if there is one."""
    start, end = calendar.day(day)
    return next((i for i in calendar.shifts_between(start, end)
                 if i.day == day and i.name == name), None)


def _machine_of(p: Period, machine: str | None, machines: Sequence[str]) -> str:
    if p.machine is not None:
        return p.machine
    if machine is not None:
        return machine
    if len(machines) == 1:
        return machines[0]
    raise ReconcileError(f"logbook row {p.row} names no machine and the config has "
                         f"{len(machines)} ({', '.join(machines) or 'none'}): add a machine "
                         "column or give --machine")


def reconcile(periods: Iterable[Period], events: Sequence[Event], last_rx: Mapping[int, float],
              *, calendar: oee.Calendar, settings: Mapping[str, MachineSettings],
              window: tuple[float, float] | None = None, machine: str | None = None,
              tolerances: Tolerances = Tolerances(), now_s: float | None = None,
              short_stop_s: float = oee.DEFAULT_SHORT_STOP_S, startup_window_s: float = 0.0,
              planned_maintenance: str = oee.DEFAULT_PM_POLICY) -> Reconciliation:
    """Each period with the sensor's figures for its shift (module docstring).

    Args:
        periods: the logbook's (logbook.read_logbook). events, last_rx: read_journal's.
        window: only periods whose shift starts in [start, end); None: every period, and the
            window is the span of the matched shifts.
        machine: the machine of periods without a machine column; only this machine's.
        the rest: as oee_report.build_report.
    Raises ReconcileError for a period of unknown machine or two periods of one shift.
    """
    judged = {"short_stop_s": short_stop_s, "startup_window_s": startup_window_s,
              "now_s": now_s}
    around = _Around(events)
    machines = list(settings)
    matches, seen = [], {}
    for p in periods:
        name = _machine_of(p, machine, machines)
        if machine is not None and name != machine:
            continue
        log = logbook_figures(p, planned_maintenance)
        inst = instance_of(calendar, p.date, p.shift) if p.date and p.shift else None
        if window is not None and (inst is None or not window[0] <= inst.start < window[1]):
            continue
        why = ("no_columns" if not (p.date and p.shift) else "no_shift" if inst is None
               else "no_machine" if name not in settings else None)
        if why:
            matches.append(Match(p, name, log, why=why))
            continue
        key = (name, inst.start, inst.name)
        if key in seen:
            raise ReconcileError(f"logbook rows {seen[key]} and {p.row} are both {name}, shift "
                                 f"{inst.name} on {inst.day}")
        seen[key] = p.row
        result = _result(around, last_rx, inst, calendar, settings, name, planned_maintenance,
                         judged)
        pm_min = result.maintenance_s / 60
        if planned_maintenance != "availability_loss":  # PM then leaves planned time
            pm_min = (_result(around, last_rx, inst, calendar, settings, name,
                              "availability_loss", judged).maintenance_s / 60)
        sensor = sensor_figures(result, bool(settings[name].ideal_cycle_s), pm_min,
                                log.down_min)
        matches.append(Match(p, name, log, inst, sensor, flags(log, sensor, tolerances)))
    shifts = [m.shift for m in matches if m.shift is not None]
    days = [m.period.date for m in matches if m.period.date is not None]
    if window is None and shifts:
        window = (min(i.start for i in shifts), max(i.end for i in shifts))
    elif window is None:  # nothing matched: the logbook's days, else an empty window now
        window = ((calendar.day(min(days))[0], calendar.day(max(days))[1]) if days
                  else (now_s or 0.0, now_s or 0.0))
    logged = {(m.machine, m.shift.start, m.shift.name) for m in matches if m.shift}
    unlogged = []
    for inst in calendar.shifts_between(*window) if window[1] > window[0] else []:
        if not window[0] <= inst.start < window[1]:
            continue
        for name in [machine] if machine else machines:
            if (name, inst.start, inst.name) in logged:
                continue
            r = _result(around, last_rx, inst, calendar, settings, name, planned_maintenance,
                        judged)
            if r.covered_planned_s > 0:
                unlogged.append((name, inst))
    return Reconciliation(window[0], window[1], calendar, tolerances, matches, unlogged)


class _Around:
    """The events `oee report` would read for a window (its margin either side), in journal
    order, found by bisection: each shift of a long logbook costs its own events only."""

    def __init__(self, events: Sequence[Event]):
        self.events = events
        self.by_ts = sorted((e.ts_s, i) for i, e in enumerate(events))

    def __call__(self, start_s: float, end_s: float) -> list[Event]:
        lo = bisect_left(self.by_ts, (start_s - MARGIN_S, -1))
        hi = bisect_right(self.by_ts, (end_s + MARGIN_S, len(self.events)))
        return [self.events[i] for i in sorted(i for _, i in self.by_ts[lo:hi])]


def _result(around, last_rx, inst, calendar, settings, name, policy, judged) -> oee.OEEResult:
    events = around(inst.start, inst.end)
    rep = build_report(events, last_rx, inst.start, inst.end, calendar=calendar,
                       settings=settings, machine=name, planned_maintenance=policy, **judged)
    return rep.rows[0].result

"""`oee report` over a journal: whole minutes from the rollups, the edges from events.

Every figure of host/oee.evaluate is a sum over time and over the pieces of output, and a
stop's class never depends on the window, so a machine's result over [start, end) is the
sum of its results over adjacent parts. The whole minutes its rollup cells cover (and
that hold what host/rollup.py says they hold for this report: same short-stop threshold and
PM policy, no count that the ideal cycle would spread beyond its span, no startup reject
to find) are summed in SQL from the cells; the parts before and after them (a window edge
inside a minute, the time after the cells end: the last stop run, the open state) are
evaluated from events as before. A machine whose cells cannot be used (none yet, events
newer than them that change them, planned time not on whole minutes) is evaluated from its
events. Either way the figures are those of oee_report.build_report (tests/test_rollups.py).

Events are read per machine, from the window's start for counts (a count before it was made
before it) and with oee_report's day of margin for states (a stop is judged on its whole
length) and after the end (a count's span, a stop's end).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from .. import journal, oee
from ..errors import JournalReadError
from ..events import Event
from ..losses import _Timeline, checked_states, classify, merge, planned_time, subtract
from ..timeline import MachineTimeline
from .oee_report import (
    _MARGIN_S,
    ALL_DAY,
    MachineSettings,
    Report,
    ReportError,
    _clock_warning,
    finish_report,
    until_s,
)

_MINUTE = 60
_RATE_SLACK = 1e-9


def journal_report(path: str | Path, start_s: float, end_s: float, *,
                   calendar: oee.Calendar | None = None,
                   settings: Mapping[str, MachineSettings] | None = None,
                   machine: str | None = None, now_s: float | None = None,
                   short_stop_s: float = oee.DEFAULT_SHORT_STOP_S,
                   startup_window_s: float = 0.0,
                   planned_maintenance: str = oee.DEFAULT_PM_POLICY,
                   use_rollups: bool = True) -> Report:
    """The report build_report makes from read_journal's events, read as described above.

    Raises ReportError (no journal, unknown machine, impossible data).
    """
    calendar = calendar or ALL_DAY
    settings = dict(settings or {})
    end = end_s if now_s is None else max(start_s, min(end_s, now_s))
    judged = {"short_stop_s": short_stop_s, "startup_window_s": startup_window_s,
              "planned_maintenance": planned_maintenance}
    lo, hi = start_s - _MARGIN_S, end_s + _MARGIN_S
    try:
        with journal.open_readonly(path) as j:
            return _report(j, start_s, end_s, end, lo, hi, calendar, settings, machine,
                           judged, use_rollups)
    except JournalReadError as exc:
        raise ReportError(str(exc)) from None


def _events(rows) -> list[Event]:
    out = []
    for row in rows:
        try:
            out.append(Event.from_row(row.ts_s, row.kind, row.node_id, row.machine, row.data))
        except (TypeError, ValueError):
            continue  # a malformed row is skipped, as the forwarder does
    return out


def _report(j, start_s, end_s, end, lo, hi, calendar, settings, machine, judged,
            use_rollups) -> Report:
    last_rx = j.last_rx()
    warnings = [_clock_warning(ev, calendar) for ev in _events(j.kind_between("clock", lo, hi))]
    heartbeat_s: dict[int, float] = {}
    for ev in _events(j.kind_between("hello", lo, hi)):
        if ev.machine and ev.data.get("heartbeat_ms"):
            heartbeat_s[ev.node_id] = ev.data["heartbeat_ms"] / 1000.0
    last_ts = {m: j.machine_last_ts(m, lo, hi) for m in j.machines()}
    names = set(settings) | {m for m, t in last_ts.items() if t is not None}
    if machine is not None:
        if machine not in names:
            known = ", ".join(sorted(names)) or "none in this journal"
            raise ReportError(f"unknown machine {machine!r} (known: {known})")
        names = {machine}
    cells = _usable_cells(j, judged) if use_rollups else {}
    plan = _plan(calendar, start_s, end)
    results = {}
    for name in names:
        ms = settings.get(name, MachineSettings())
        ideal = ms.ideal_cycle_s or 1.0
        try:
            results[name] = _machine(j, name, ms, ideal, cells.get(name), plan, start_s, end,
                                     calendar, judged, last_rx, heartbeat_s, last_ts.get(name),
                                     lo, hi)
        except oee.OEEInputError as exc:
            raise ReportError(f"machine {name}: {exc}") from None
    return finish_report(results, settings, calendar, start_s, end, warnings)


def _usable_cells(j, judged) -> dict[str, tuple[float, float]]:
    """machine -> [from_s, to_s) of cells built as this report judges stops, and not
    changed by newer events."""
    meta = j.rollup_meta()
    if (meta.get("short_stop_s") != judged["short_stop_s"]
            or meta.get("pm_policy") != judged["planned_maintenance"]):
        return {}
    stale = j.rollup_stale()
    out = {}
    for m, (a, b, _) in j.rollup_machines().items():
        if m in stale:
            b = min(b, math.floor(stale[m] / _MINUTE) * _MINUTE)
        if b > a:
            out[m] = (a, b)
    return out


def _plan(calendar: oee.Calendar, start: float, end: float) -> list[tuple[float, float]]:
    """Planned spans of [start, end), as host/oee.evaluate makes them."""
    if end <= start:
        return []
    insts = calendar.shifts_between(start, end)
    scheduled = merge((max(i.start, start), min(i.end, end)) for i in insts)
    off_plan = merge([b for i in insts for b in i.breaks] + list(calendar.planned_stops))
    return subtract(scheduled, off_plan)


def _machine(j, name, ms, ideal, cells, plan, start_s, end, calendar, judged, last_rx,
             heartbeat_s, last_ts, lo, hi) -> oee.OEEResult:
    a = b = None
    if cells is not None:
        a = max(-(-start_s // _MINUTE) * _MINUTE, cells[0])
        b = min(end // _MINUTE * _MINUTE, cells[1])
        inner = [t for span in plan for t in span if a < t < b]
        if b - a < _MINUTE or any(t % _MINUTE for t in inner):
            a = b = None
    nodes = set(j.rollup_nodes(name, lo, hi)) if a is not None else set()
    parts = []
    edges = [(start_s, end)] if a is None else [(start_s, a), (b, end)]
    timelines = []
    for x, y in edges:
        if y <= x:
            continue
        evs = _events(j.machine_window(name, x, y, _MARGIN_S))
        nodes |= {ev.node_id for ev in evs if ev.node_id is not None}
        tl = MachineTimeline(name)
        for ev in evs:
            tl.add(ev)
        timelines.append((x, y, tl))
    until = until_s(ms, nodes, last_rx, heartbeat_s, last_ts, end)
    if a is not None:
        rolled = _rolled(j, name, ideal, plan, a, b, judged)
        if rolled is None or any(_reaches_back(tl, x, ideal, until, judged)
                                 for x, _, tl in timelines if x == b):
            return _machine(j, name, ms, ideal, None, plan, start_s, end, calendar, judged,
                            last_rx, heartbeat_s, last_ts, lo, hi)
        parts.append(rolled)
    for x, y, tl in timelines:
        parts.append(tl.evaluate(ms.ideal_cycle_s, calendar, x, y, until_s=until, **judged))
    return oee.rollup(parts, name)


def _reaches_back(tl: MachineTimeline, b: float, ideal: float, until: float,
                  judged) -> bool:
    """Whether output counted at or after `b` is laid (by the ideal cycle) before `b`,
    into time the cells hold without it."""
    timeline = checked_states(tl.intervals(until), ALL_DAY)
    kinds, _ = classify(timeline, judged["short_stop_s"], judged["planned_maintenance"])
    look = _Timeline([(s.start, s.end) for s in timeline],
                     ["planned" if k == "planned_pm" else k for k in kinds])
    for c in tl.counts:
        if c.start is not None and c.start < c.ts and c.ts >= b:
            made = look.made_in(c.start, c.ts, c.qty * ideal)
            if made and made[0][0] < b and c.start >= b:
                return True
    return False


def _rolled(j, name, ideal, plan, a, b, judged) -> oee.OEEResult | None:
    """The machine's result over [a, b) from its cells; None if a cell does not hold what
    this report needs (a count spread beyond its span, a startup reject)."""
    spans, t = [], a
    for p, q in plan:
        p, q = max(p, a), min(q, b)
        if q <= p:
            continue
        if p > t:
            spans.append((t, p, False))
        spans.append((p, q, True))
        t = q
    if t < b:
        spans.append((t, b, False))
    acc = dict.fromkeys(("run", "minor", "setup", "breakdown", "maintenance", "planned_pm",
                         "planned"), 0.0)
    out = dict.fromkeys(("good", "ng", "unknown_good", "unknown_ng", "excluded_good",
                         "excluded_ng"), 0.0)
    known = run_outside = 0.0
    window = judged["startup_window_s"]
    for _, planned, cls, secs, good, ng, rate, gap in j.rollup_sums(
            [(int(p), int(q), pl) for p, q, pl in spans], {name: (int(a), int(b))}):
        if (rate or 0.0) * ideal > 1 - _RATE_SLACK:
            return None
        if cls:
            known += secs
        if planned and cls:
            acc[cls] += secs
        elif cls == "run":
            run_outside += secs
        where = ("excluded_" if not planned or cls in ("planned", "planned_pm") else
                 "unknown_" if not cls else "")
        if where == "" and ng > 0 and gap is not None and gap < window:
            return None  # NG soon after a setup: startup rejects, counted per count
        out[where + "good"] += good
        out[where + "ng"] += ng
    plan_s = sum(q - p for p, q, pl in spans if pl)
    planned_s = planned_time(plan_s - acc["planned"], acc["maintenance"] + acc["planned_pm"],
                             judged["planned_maintenance"])
    covered = acc["run"] + acc["minor"] + acc["setup"] + acc["breakdown"] + acc["maintenance"]
    g, n = out["good"], out["ng"]
    return oee.OEEResult(
        name, a, b, all_time_s=b - a, planned_s=planned_s,
        unknown_s=max(0.0, b - a - known), unknown_planned_s=max(0.0, planned_s - covered),
        run_s=acc["run"] + acc["minor"], breakdown_s=acc["breakdown"], setup_s=acc["setup"],
        maintenance_s=acc["maintenance"], minor_stop_s=acc["minor"],
        net_run_s=ideal * (g + n), fully_productive_s=ideal * g, startup_reject_s=0.0,
        unknown_net_s=ideal * (out["unknown_good"] + out["unknown_ng"]),
        unknown_good_s=ideal * out["unknown_good"], good=g, ng=n, startup_ng=0.0,
        unknown_good=out["unknown_good"], unknown_ng=out["unknown_ng"],
        excluded_good=out["excluded_good"], excluded_ng=out["excluded_ng"],
        run_outside_planned_s=run_outside)

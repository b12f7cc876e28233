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
from ..losses import (
    _Timeline,
    checked_states,
    classify,
    merge,
    overlap,
    planned_time,
    subtract,
)
from ..timeline import MachineTimeline
from .oee_report import (
    ALL_DAY,
    MARGIN_S,
    MachineSettings,
    Report,
    ReportError,
    VersionSpan,
    _clock_warning,
    finish_report,
    until_s,
    version_parts,
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
                   use_rollups: bool = True,
                   versions: list[VersionSpan] | None = None) -> Report:
    """The report build_report makes from read_journal's events, read as described above.

    Raises ReportError (no journal, unknown machine, impossible data).
    """
    calendar = calendar or ALL_DAY
    settings = dict(settings or {})
    end = end_s if now_s is None else max(start_s, min(end_s, now_s))
    judged = {"short_stop_s": short_stop_s, "startup_window_s": startup_window_s,
              "planned_maintenance": planned_maintenance}
    lo, hi = start_s - MARGIN_S, end_s + MARGIN_S
    try:
        with journal.open_readonly(path) as j:
            return _report(j, start_s, end_s, end, lo, hi, calendar, settings, machine,
                           judged, use_rollups, versions)
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
            use_rollups, versions) -> Report:
    last_rx = j.last_rx()
    notices = [_clock_warning(ev, calendar) for ev in _events(j.kind_between("clock", lo, hi))]
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
    results = {}
    for name in names:
        # each part of the window under its config version's settings (issue 14)
        parts = version_parts(versions, name, settings.get(name, MachineSettings()),
                              start_s, end)
        try:
            results[name] = ([_machine(j, name, ms, ms.ideal_cycle_s or 1.0, cells.get(name),
                                       _plan(calendar, a, b), a, b, calendar, judged, last_rx,
                                       heartbeat_s, last_ts.get(name), lo, hi)
                              for a, b, ms in parts], parts)
        except oee.OEEInputError as exc:
            raise ReportError(f"machine {name}: {exc}") from None
    return finish_report(results, settings, calendar, start_s, end, notices, versions)


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
    edges = [(start_s, end)] if a is None else [(start_s, a), (b, end)]
    timelines = []
    for x, y in edges:
        if y <= x:
            continue
        evs = _events(j.machine_window(name, x, y, MARGIN_S))
        nodes |= {ev.node_id for ev in evs if ev.node_id is not None}
        timelines.append((x, y, _timeline(name, evs)))
    until = until_s(ms, nodes, last_rx, heartbeat_s, last_ts, end)
    parts = [tl.evaluate(ms.ideal_cycle_s, calendar, x, y, until_s=until, **judged)
             for x, y, tl in timelines]
    if a is not None:
        rolled = _rolled(j, name, ideal, plan, a, b, cells[1], until, judged, start_s, end)
        if rolled is None:  # cells this report cannot use: the machine from its events
            return _machine(j, name, ms, ideal, None, plan, start_s, end, calendar, judged,
                            last_rx, heartbeat_s, last_ts, lo, hi)
        parts.append(rolled)
    return oee.rollup(parts, name)


def _timeline(name: str, events) -> MachineTimeline:
    tl = MachineTimeline(name)
    for ev in events:
        tl.add(ev)
    return tl


def _spans(plan, a: float, b: float) -> list[tuple[float, float, bool]]:
    """[a, b) cut into planned (True) and unplanned (False) spans."""
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
    return spans


def _rolled(j, name, ideal, plan, a, b, cells_end, until, judged, start_s,
            end) -> oee.OEEResult | None:
    """The machine's result over [a, b) from its cells, corrected for the counts whose
    output the ideal cycle lays across a boundary; None if a cell does not hold what this
    report needs (a startup reject, a reach between known and unknown time)."""
    spans = _spans(plan, a, b)
    acc = dict.fromkeys(("run", "minor", "setup", "breakdown", "maintenance", "planned_pm",
                         "planned"), 0.0)
    out = dict.fromkeys(("good", "ng", "unknown_good", "unknown_ng", "excluded_good",
                         "excluded_ng"), 0.0)
    known = run_outside = 0.0
    rows = j.rollup_sums([(int(p), int(q), pl) for p, q, pl in spans],
                         {name: (int(a), int(b))})
    # the cells after b: the largest quantity a count there holds (how far back it may reach)
    after = j.rollup_sums([(int(b), int(cells_end), False)],
                          {name: (int(b), int(cells_end))}) if b < cells_end else []
    qty_max = max([r[8] or 0.0 for r in rows + after], default=0.0)
    for _, planned, cls, secs, good, ng, rate, gap, _q, mixed in rows + after:
        if (mixed or 0.0) * ideal > 1 - _RATE_SLACK or (rate or 0.0) >= 1e299:
            return None
    for _, planned, cls, secs, good, ng, rate, gap, _q, _m in rows:
        if cls:
            known += secs
        if planned and cls:
            acc[cls] += secs
        elif cls == "run":
            run_outside += secs
        where = ("excluded_" if not planned or cls in ("planned", "planned_pm") else
                 "unknown_" if not cls else "")
        if where == "" and ng > 0 and gap is not None and gap < judged["startup_window_s"]:
            return None  # NG soon after a setup: startup rejects, judged per count
        out[where + "good"] += good
        out[where + "ng"] += ng
    fixed = _corrections(j, name, ideal, plan, a, b, until, qty_max, judged, start_s, end,
                         cells_end)
    if fixed is None:
        return None
    for key, value in fixed.items():
        out[key] += value
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


_FIRST_LOOK_S = 600.0
_BACK_S = 3600.0


def _crossed(j, name, B: float, cells_end: float, ideal: float, need_s: float) -> bool:
    """Whether a count may reach back across B: a cell from B holds a count spread beyond
    its span before the production time from B holds need_s (a count later than that
    finds its units after B), or the cells end first."""
    if B + _FIRST_LOOK_S > cells_end:
        return True
    made_s = 0.0
    for minute, cls, secs, rate in j.rollup_cells(name, B, B + _FIRST_LOOK_S):
        if (rate or 0.0) * ideal > 1 - _RATE_SLACK:
            return True
        if cls in ("run", ""):
            made_s += secs
        if made_s >= need_s and minute + _MINUTE <= B + _FIRST_LOOK_S:
            return False
    return True


def _corrections(j, name, ideal, plan, a, b, until, qty_max, judged, start_s,
                 end, cells_end) -> dict | None:
    """What the counts whose output the ideal cycle lays across a boundary (the cells'
    edges a and b, a change of planned time) add to the cells' sums over [a, b): their
    output as the engine places it less as the cells hold it, and what they lay before a
    (the edge evaluated from events before a takes only counts begun before a). Only counts
    from a boundary until the production time after it holds qty_max units at the ideal
    cycle can reach back across it; a count begun at or after the window's end counts for
    nothing in it (host/losses.attribute)."""
    bounds = sorted({a, b, *(t for span in plan for t in span if a < t < b)})
    seen: set = set()
    delta = dict.fromkeys(("good", "ng", "unknown_good", "unknown_ng", "excluded_good",
                           "excluded_ng"), 0.0)
    need_s = qty_max * ideal
    for B in bounds:
        if not _crossed(j, name, B, cells_end, ideal, need_s):
            continue
        look_s, back_s = _FIRST_LOOK_S, _BACK_S
        while True:
            evs = _events(j.machine_window(name, B, B + look_s, back_s, counts_after=False))
            tl = _timeline(name, evs)
            timeline = checked_states(tl.intervals(until), ALL_DAY)
            if not timeline:
                break
            kinds, _ = classify(timeline, judged["short_stop_s"],
                                judged["planned_maintenance"])
            look = _Timeline([(x.start, x.end) for x in timeline],
                             ["planned" if k == "planned_pm" else k for k in kinds])
            made_s = sum(overlap(x.start, x.end, [(B, B + look_s)])
                         for x, k in zip(timeline, kinds) if k in ("run", None))
            placed, too_short = [], False
            for c in tl.counts:
                if (c.start is None or c.start >= c.ts or c.start >= end
                        or not B <= c.ts < B + look_s):
                    continue
                engine = look.made_in(c.start, c.ts, c.qty * ideal)
                cells = look.made_in(c.start, c.ts, 0.0)
                if engine == cells:
                    continue
                if engine and engine[0][0] <= timeline[0].start:
                    too_short = True  # it reaches before the states read: read further
                placed.append((c, engine, cells))
            if too_short and back_s < MARGIN_S:
                back_s = MARGIN_S
                continue
            if made_s < need_s and B + look_s < until:
                look_s *= 4
                continue
            break
        for c, engine, cells in placed:
            key = (c.ts, c.kind, c.start, c.qty)
            if key in seen:
                continue
            seen.add(key)
            _place(delta, c, engine, 1.0, a, b, plan)
            _place(delta, c, cells, -1.0, a, b, plan)
            if c.start >= a:
                _place(delta, c, engine, 1.0, start_s, a, plan)
    return delta


def _place(delta: dict, c, pieces, sign: float, a: float, b: float, plan) -> None:
    """Add c's output laid over `pieces` inside [a, b), as host/losses.attribute tallies it."""
    span = sum(q - p for p, q, _ in pieces)
    if span <= 0 or b <= a:
        return
    plan = [(max(p, a), min(q, b)) for p, q in plan if min(q, b) > max(p, a)]
    kind = "good" if c.kind == "GOOD" else "ng"
    for p, q, k in pieces:
        qty = c.qty * (q - p) / span
        inside = overlap(p, q, [(a, b)])
        if inside <= 0:
            continue
        planned = qty * overlap(p, q, plan) / (q - p)
        delta["excluded_" + kind] += sign * (qty * inside / (q - p) - planned)
        where = ("" if k not in (None, "planned") else "unknown_" if k is None
                 else "excluded_")
        delta[where + kind] += sign * planned

"""OEE engine: A, P, Q, OEE, TEEP and the six big losses from state and count timelines; pure."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass, fields
from itertools import pairwise

from .errors import OEEInputError
from .shifts import Break, Calendar, Shift, ShiftInstance, finite

# The calendar types are re-exported so that callers need only this module.
__all__ = ["DEFAULT_SHORT_STOP_S", "PLANNED_REASONS", "REASONS", "STATES", "Break", "Calendar",
           "CountEvent", "OEEResult", "Ratios", "Shift", "ShiftInstance", "StateInterval",
           "evaluate", "percent", "ratios", "rollup"]

STATES = ("RUN", "IDLE", "STOP", "OFF", "UNKNOWN")
REASONS = ("setup", "planned_maintenance", "breakdown", "no_order", "material", "other")
# Like a break, these take the time out of planned production time (see docs/oee.md).
PLANNED_REASONS = frozenset({"planned_maintenance", "no_order"})
# A stop with one of these reasons is an availability loss however short it is.
_AVAILABILITY_REASONS = frozenset({"setup", "breakdown"})
DEFAULT_SHORT_STOP_S = 300.0


@dataclass(frozen=True)
class StateInterval:
    """The machine was in `state` over [start, end) (epoch seconds UTC); `reason` for stops."""

    start: float
    end: float
    state: str
    reason: str | None = None


@dataclass(frozen=True)
class CountEvent:
    """`qty` units (pieces, kg, ...) counted as `kind` "GOOD" or "NG" at `ts` (epoch s UTC)."""

    ts: float
    kind: str
    qty: float = 1.0


@dataclass(frozen=True)
class Ratios:
    """OEE ratios as fractions; None where the denominator is zero."""

    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None


def ratios(planned_s: float, run_s: float, ideal_total_s: float, ideal_good_s: float) -> Ratios:
    """The one OEE formula, from summed times (engine, roll-up and logbook all use it).

    Args:
        planned_s: planned production time. run_s: run (operating) time.
        ideal_total_s: sum of ideal cycle x total count. ideal_good_s: ideal cycle x good.
    Returns Ratios; OEE = ideal_good_s / planned_s, which equals A x P x Q when all three
    are defined. Performance above 1.0 is kept: it means the ideal cycle time is too slow.
    Raises OEEInputError for negative inputs, run > planned or good > total.
    """
    for name, value in (("planned time", planned_s), ("run time", run_s),
                        ("ideal total time", ideal_total_s), ("ideal good time", ideal_good_s)):
        if finite(value, name) < 0:
            raise OEEInputError(f"{name} must not be negative ({value})")
    if run_s > planned_s * (1 + 1e-9) + 1e-6:
        raise OEEInputError(f"run time {run_s} exceeds planned production time {planned_s}")
    if ideal_good_s > ideal_total_s * (1 + 1e-9) + 1e-9:
        raise OEEInputError(f"good output exceeds total output ({ideal_good_s} > {ideal_total_s})")
    return Ratios(
        availability=run_s / planned_s if planned_s else None,
        performance=ideal_total_s / run_s if run_s else None,
        quality=ideal_good_s / ideal_total_s if ideal_total_s else None,
        oee=ideal_good_s / planned_s if planned_s else None,
    )


def percent(ratio: float | None, digits: int = 1) -> str:
    """A ratio as every lampwatch table and message writes it: 0.8754 -> '87.5%'; None -> '-'.

    The one percent formatter in Python (the board's page formats its own, in the browser).
    """
    return "-" if ratio is None else f"{100 * ratio:.{digits}f}%"


@dataclass(frozen=True)
class OEEResult:
    """Times (seconds) and counts of one machine and window, or of a roll-up; ratios derived.

    Ratios describe the covered part of planned production time (planned_s less
    unknown_planned_s); counts made outside it are in excluded_good / excluded_ng.
    """

    machine: str
    start: float
    end: float
    all_time_s: float = 0.0
    planned_s: float = 0.0
    unknown_s: float = 0.0
    unknown_planned_s: float = 0.0
    run_s: float = 0.0
    breakdown_s: float = 0.0
    setup_s: float = 0.0
    minor_stop_s: float = 0.0
    net_run_s: float = 0.0
    fully_productive_s: float = 0.0
    startup_reject_s: float = 0.0
    good: float = 0.0
    ng: float = 0.0
    excluded_good: float = 0.0
    excluded_ng: float = 0.0
    run_outside_planned_s: float = 0.0

    @property
    def total(self) -> float:
        return self.good + self.ng

    @property
    def covered_planned_s(self) -> float:
        return self.run_s + self.setup_s + self.breakdown_s

    @property
    def reduced_speed_s(self) -> float:
        """Negative when output beat the ideal cycle time (performance > 1)."""
        return self.run_s - self.minor_stop_s - self.net_run_s

    @property
    def process_defect_s(self) -> float:
        return self.net_run_s - self.fully_productive_s - self.startup_reject_s

    @property
    def losses(self) -> dict[str, float]:
        """The six big losses in seconds, in loss-tree order."""
        return {name: getattr(self, name) for name in (
            "breakdown_s", "setup_s", "minor_stop_s", "reduced_speed_s", "process_defect_s",
            "startup_reject_s")}

    @property
    def ratios(self) -> Ratios:
        return ratios(self.covered_planned_s, self.run_s, self.net_run_s, self.fully_productive_s)

    availability = property(lambda self: self.ratios.availability)
    performance = property(lambda self: self.ratios.performance)
    quality = property(lambda self: self.ratios.quality)
    oee = property(lambda self: self.ratios.oee)

    @property
    def utilization(self) -> float | None:
        """Planned production time / all time."""
        return self.planned_s / self.all_time_s if self.all_time_s else None

    @property
    def teep(self) -> float | None:
        """OEE x planned production time / all time."""
        oee, use = self.oee, self.utilization
        return None if oee is None or use is None else oee * use

    @property
    def coverage(self) -> float | None:
        """Share of all time with a known state."""
        return 1 - self.unknown_s / self.all_time_s if self.all_time_s else None

    @property
    def planned_coverage(self) -> float | None:
        """Share of planned production time with a known state (the ratios' basis)."""
        return 1 - self.unknown_planned_s / self.planned_s if self.planned_s else None

    def as_dict(self) -> dict:
        """Stored fields plus every derived time and ratio, for JSON and sinks."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("total", "covered_planned_s", "reduced_speed_s", "process_defect_s",
                     "availability", "performance", "quality", "oee", "utilization", "teep",
                     "coverage", "planned_coverage"):
            out[name] = getattr(self, name)
        return out


_SUMMED = tuple(f.name for f in fields(OEEResult) if f.name not in ("machine", "start", "end"))


def rollup(results: Iterable[OEEResult], machine: str = "all") -> OEEResult:
    """Sum times, counts and ideal output of several results and recompute the ratios.

    Never averages percentages. Quality of a roll-up is ideal-time weighted
    (sum ideal x good / sum ideal x total), so machines counting different units mix.
    """
    results = list(results)
    if not results:
        return OEEResult(machine, 0.0, 0.0)
    sums = {name: sum(getattr(r, name) for r in results) for name in _SUMMED}
    return OEEResult(machine, min(r.start for r in results), max(r.end for r in results), **sums)


def _merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _subtract(base: list[tuple[float, float]], cut: list[tuple[float, float]]):
    out = []
    for a, b in base:
        for c, d in cut:
            if d <= a or c >= b:
                continue
            if c > a:
                out.append((a, c))
            a = max(a, d)
        if b > a:
            out.append((a, b))
    return out


def _overlap(a: float, b: float, spans: list[tuple[float, float]]) -> float:
    return sum(max(0.0, min(b, d) - max(a, c)) for c, d in spans)


def _inside(ts: float, spans: list[tuple[float, float]]) -> bool:
    i = bisect_right(spans, (ts, math.inf)) - 1
    return i >= 0 and spans[i][0] <= ts < spans[i][1]


def _checked_states(states: Iterable[StateInterval], cal: Calendar) -> list[StateInterval]:
    out = sorted(states, key=lambda s: (s.start, s.end))
    for s in out:
        finite(s.start, "state interval start")
        finite(s.end, "state interval end")
        where = cal.iso(s.start)
        if s.state not in STATES:
            raise OEEInputError(f"unknown state {s.state!r} at {where}")
        if s.end < s.start:
            raise OEEInputError(f"state interval ends before it starts at {where} ({s.state})")
        if s.reason is not None and s.reason not in REASONS:
            raise OEEInputError(f"unknown reason {s.reason!r} at {where}; "
                                f"expected one of {', '.join(REASONS)}")
        if s.reason is not None and s.state in ("RUN", "UNKNOWN"):
            raise OEEInputError(f"reason {s.reason!r} given for a {s.state} interval at {where}")
    out = [s for s in out if s.end > s.start]
    for prev, cur in pairwise(out):
        if cur.start < prev.end:
            raise OEEInputError(f"state intervals overlap at {cal.iso(cur.start)} "
                                f"({prev.state} and {cur.state})")
    return out


def _checked_counts(counts: Iterable[CountEvent], cal: Calendar) -> list[CountEvent]:
    out = list(counts)
    for c in out:
        finite(c.ts, "count timestamp")
        if c.kind not in ("GOOD", "NG"):
            raise OEEInputError(f"unknown count kind {c.kind!r} at {cal.iso(c.ts)}")
        if finite(c.qty, "count quantity") < 0:
            raise OEEInputError(f"negative {c.kind} quantity {c.qty} at {cal.iso(c.ts)}")
    return out


def _classify(timeline: list[StateInterval], short_stop_s: float):
    """Loss class of each interval (None for UNKNOWN) and the ends of setups and breakdowns.

    Contiguous stop intervals form one stop (IDLE flickering to STOP is one event), and a
    stop is judged on its whole length, so the class never depends on the window.
    """
    kinds: list[str | None] = [None] * len(timeline)
    startup_ends: list[float] = []
    is_stop = [s.state in ("IDLE", "STOP", "OFF") and s.reason not in PLANNED_REASONS
               for s in timeline]
    i = 0
    while i < len(timeline):
        s = timeline[i]
        if not is_stop[i]:
            kinds[i] = {"RUN": "run", "UNKNOWN": None}.get(s.state, "planned")
            i += 1
            continue
        j = i + 1
        while j < len(timeline) and is_stop[j] and timeline[j].start == timeline[j - 1].end:
            j += 1
        stop = timeline[i:j]
        explicit = any(x.reason in _AVAILABILITY_REASONS for x in stop)
        minor = not explicit and sum(x.end - x.start for x in stop) < short_stop_s
        for k, x in enumerate(stop, i):
            kinds[k] = "minor" if minor else ("setup" if x.reason == "setup" else "breakdown")
        if explicit:
            startup_ends.append(stop[-1].end)
        i = j
    return kinds, startup_ends


def evaluate(states: Iterable[StateInterval], counts: Iterable[CountEvent],
             ideal_cycle_s: float, calendar: Calendar, start: float, end: float, *,
             now: float | None = None, machine: str = "",
             short_stop_s: float = DEFAULT_SHORT_STOP_S,
             startup_window_s: float = 0.0) -> OEEResult:
    """OEE of one machine over [start, min(end, now)).

    Args:
        states: state intervals, unclipped (a stop's class depends on its whole length);
            an interval still open should end at `now`. Gaps count as UNKNOWN.
        counts: GOOD / NG events. ideal_cycle_s: ideal seconds per unit (piece, kg, ...).
        now: for a running shift; time after it is not evaluated.
        short_stop_s: unreasoned stops shorter than this are minor stops (performance loss).
        startup_window_s: NG this soon after a setup or breakdown ends is a startup reject.
    Raises OEEInputError for impossible input (overlaps, unknown states, bad numbers).
    """
    if finite(ideal_cycle_s, "ideal cycle time") <= 0:
        raise OEEInputError(f"ideal cycle time must be greater than 0 s, not {ideal_cycle_s}")
    if finite(short_stop_s, "short-stop threshold") < 0:
        raise OEEInputError("short-stop threshold must not be negative")
    if finite(startup_window_s, "startup window") < 0:
        raise OEEInputError("startup window must not be negative")
    if finite(end, "window end") < finite(start, "window start"):
        raise OEEInputError(f"window ends before it starts at {calendar.iso(start)}")
    if now is not None:
        end = max(start, min(end, finite(now, "now")))
    timeline = _checked_states(states, calendar)
    events = _checked_counts(counts, calendar)
    window = [(start, end)] if end > start else []
    insts = calendar.shifts_between(start, end) if window else []
    scheduled = _merge((max(i.start, start), min(i.end, end)) for i in insts)
    off_plan = _merge([b for i in insts for b in i.breaks] + list(calendar.planned_stops))
    plan = _subtract(scheduled, off_plan)

    kinds, startup_ends = _classify(timeline, short_stop_s)
    acc = dict.fromkeys(("run", "minor", "setup", "breakdown", "planned"), 0.0)
    known = run_outside = 0.0
    for s, kind in zip(timeline, kinds):
        if kind is not None:
            in_window, in_plan = _overlap(s.start, s.end, window), _overlap(s.start, s.end, plan)
            known += in_window
            acc[kind] += in_plan
            run_outside += in_window - in_plan if kind == "run" else 0.0
    plan_s = sum(b - a for a, b in plan)
    planned_s = plan_s - acc["planned"]
    covered_s = acc["run"] + acc["minor"] + acc["setup"] + acc["breakdown"]

    starts = [s.start for s in timeline]
    tally = dict.fromkeys(("good", "ng", "excluded_good", "excluded_ng", "startup"), 0.0)
    for c in events:
        if not start <= c.ts < end:
            continue
        i = bisect_right(starts, c.ts) - 1
        kind = kinds[i] if i >= 0 and c.ts < timeline[i].end else None
        counted = kind not in (None, "planned") and _inside(c.ts, plan)
        tally[("" if counted else "excluded_") + c.kind.lower()] += c.qty
        k = bisect_right(startup_ends, c.ts) - 1
        if counted and c.kind == "NG" and k >= 0 and c.ts < startup_ends[k] + startup_window_s:
            tally["startup"] += c.qty
    return OEEResult(
        machine, start, end, all_time_s=end - start, planned_s=planned_s,
        # Differences of float sums: the clamp removes rounding noise, never a real value.
        unknown_s=max(0.0, end - start - known),
        unknown_planned_s=max(0.0, planned_s - covered_s),
        run_s=acc["run"] + acc["minor"], breakdown_s=acc["breakdown"], setup_s=acc["setup"],
        minor_stop_s=acc["minor"], net_run_s=ideal_cycle_s * (tally["good"] + tally["ng"]),
        fully_productive_s=ideal_cycle_s * tally["good"],
        startup_reject_s=ideal_cycle_s * tally["startup"], good=tally["good"], ng=tally["ng"],
        excluded_good=tally["excluded_good"], excluded_ng=tally["excluded_ng"],
        run_outside_planned_s=run_outside)

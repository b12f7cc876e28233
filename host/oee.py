"""OEE engine: A, P, Q, OEE, TEEP and the six big losses from state and count timelines; pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from functools import cached_property

from .errors import OEEInputError
from .losses import (
    DEFAULT_PM_POLICY,
    DEFAULT_SHORT_STOP_S,
    PM_POLICIES,
    REASONS,
    STATES,
    attribute,
    checked_counts,
    checked_states,
    classify,
    merge,
    overlap,
    planned_reasons,
    planned_time,
    subtract,
)
from .shifts import Break, Calendar, Shift, ShiftInstance, finite

# The calendar types are re-exported so that callers need only this module.
__all__ = [
    "DEFAULT_PM_POLICY",
    "DEFAULT_SHORT_STOP_S",
    "LOSS_KEYS",
    "PM_POLICIES",
    "REASONS",
    "STATES",
    "Break",
    "Calendar",
    "CountEvent",
    "OEEResult",
    "Ratios",
    "Shift",
    "ShiftInstance",
    "StateInterval",
    "evaluate",
    "percent",
    "planned_reasons",
    "planned_time",
    "ratios",
    "rollup",
]


@dataclass(frozen=True, slots=True)  # the live timelines hold a shift of them per machine
class StateInterval:
    """The machine was in `state` over [start, end) (epoch seconds UTC); `reason` for stops."""

    start: float
    end: float
    state: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)  # ~2 a minute per machine in the live timelines
class CountEvent:
    """`qty` units (pieces, kg, ...) counted as `kind` "GOOD" or "NG" at `ts` (epoch s UTC).

    `start`: when the output began to be made (a heartbeat's delta: the previous heartbeat
    of its boot); the quantity is spread over [start, ts) (host/losses.py). None: made
    at `ts`.
    """

    ts: float
    kind: str
    qty: float = 1.0
    start: float | None = None


@dataclass(frozen=True)
class Ratios:
    """OEE ratios as fractions; None where the denominator is zero."""

    availability: float | None
    performance: float | None
    quality: float | None
    oee: float | None


def ratios(planned_s: float, run_s: float, ideal_total_s: float, ideal_good_s: float,
           unknown_total_s: float = 0.0, unknown_good_s: float = 0.0) -> Ratios:
    """The one OEE formula, from summed times (engine, roll-up and logbook all use it).

    Args:
        planned_s: planned production time. run_s: run (operating) time.
        ideal_total_s: sum of ideal cycle x total count made in known time (performance).
        ideal_good_s: ideal cycle x good count made in known time.
        unknown_total_s, unknown_good_s: the same for output made in unknown time, which
            counts in quality only (docs/oee.md, "Output in unknown time").
    Returns Ratios; OEE = A x P x Q, which is ideal_good_s / planned_s when no output fell
    in unknown time. Performance above 1.0 is kept: it means the ideal cycle time is too
    slow. Raises OEEInputError for negative inputs, run > planned or good > total.
    """
    for name, value in (("planned time", planned_s), ("run time", run_s),
                        ("ideal total time", ideal_total_s), ("ideal good time", ideal_good_s),
                        ("unknown-time output", unknown_total_s),
                        ("unknown-time good output", unknown_good_s)):
        if finite(value, name) < 0:
            raise OEEInputError(f"{name} must not be negative ({value})")
    if run_s > planned_s * (1 + 1e-9) + 1e-6:
        raise OEEInputError(f"run time {run_s} exceeds planned production time {planned_s}")
    for good, total in ((ideal_good_s, ideal_total_s), (unknown_good_s, unknown_total_s)):
        if good > total * (1 + 1e-9) + 1e-9:
            raise OEEInputError(f"good output exceeds total output ({good} > {total})")
    all_total, all_good = ideal_total_s + unknown_total_s, ideal_good_s + unknown_good_s
    quality = all_good / all_total if all_total else None
    if not planned_s:
        oee = None
    elif not unknown_total_s:
        oee = ideal_good_s / planned_s
    else:  # A x P x Q = (run / planned) x (ideal total / run) x Q
        oee = ideal_total_s * (quality or 0.0) / planned_s
    return Ratios(
        availability=run_s / planned_s if planned_s else None,
        performance=ideal_total_s / run_s if run_s else None,
        quality=quality,
        oee=oee,
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
    unknown_planned_s). Output made in unknown planned time is in unknown_good / unknown_ng
    (quality only); output made outside planned time is in excluded_good / excluded_ng.
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
    maintenance_s: float = 0.0  # planned maintenance as an availability loss
    minor_stop_s: float = 0.0
    net_run_s: float = 0.0
    fully_productive_s: float = 0.0
    startup_reject_s: float = 0.0
    unknown_net_s: float = 0.0  # ideal cycle x output in unknown time
    unknown_good_s: float = 0.0
    good: float = 0.0
    ng: float = 0.0
    startup_ng: float = 0.0
    unknown_good: float = 0.0
    unknown_ng: float = 0.0
    excluded_good: float = 0.0
    excluded_ng: float = 0.0
    run_outside_planned_s: float = 0.0

    @property
    def total(self) -> float:
        return self.good + self.ng

    @property
    def covered_planned_s(self) -> float:
        return self.run_s + self.setup_s + self.breakdown_s + self.maintenance_s

    @property
    def reduced_speed_s(self) -> float:
        """Negative when output beat the ideal cycle time (performance > 1)."""
        return self.run_s - self.minor_stop_s - self.net_run_s

    @property
    def process_defect_s(self) -> float:
        return self.net_run_s - self.fully_productive_s - self.startup_reject_s

    @property
    def losses(self) -> dict[str, float]:
        """The six big losses and planned maintenance in seconds, in loss-tree order."""
        return {name: getattr(self, name) for name in LOSS_KEYS}

    @cached_property  # a frozen result: A, P, Q, OEE and TEEP each read it (~7 us)
    def ratios(self) -> Ratios:
        return ratios(self.covered_planned_s, self.run_s, self.net_run_s, self.fully_productive_s,
                      self.unknown_net_s, self.unknown_good_s)

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
# The losses in loss-tree order: availability (breakdowns, setups, planned maintenance when
# it is an availability loss), performance, quality.
LOSS_KEYS = ("breakdown_s", "setup_s", "maintenance_s", "minor_stop_s", "reduced_speed_s",
             "process_defect_s", "startup_reject_s")


def rollup(results: Iterable[OEEResult], machine: str = "all") -> OEEResult:
    """Sum times, counts and ideal output of several results and recompute the ratios.

    Never averages percentages. Quality of a roll-up is ideal-time weighted
    (sum ideal x good / sum ideal x total), so machines counting different units mix.
    """
    results = list(results)
    if not results:
        return OEEResult(machine, 0.0, 0.0)
    if len(results) == 2:  # the live OEE's settled past + the time since, every minute
        a, b = results[0].__dict__, results[1].__dict__
        sums = {name: a[name] + b[name] for name in _SUMMED}
    else:
        sums = {name: sum(getattr(r, name) for r in results) for name in _SUMMED}
    return OEEResult(machine, min(r.start for r in results), max(r.end for r in results), **sums)


def evaluate(states: Iterable[StateInterval], counts: Iterable[CountEvent],
             ideal_cycle_s: float, calendar: Calendar, start: float, end: float, *,
             now: float | None = None, machine: str = "",
             short_stop_s: float = DEFAULT_SHORT_STOP_S,
             startup_window_s: float = 0.0,
             planned_maintenance: str = DEFAULT_PM_POLICY) -> OEEResult:
    """OEE of one machine over [start, min(end, now)).

    Args:
        states: state intervals, unclipped (a stop's class depends on its whole length);
            an interval still open should end at `now`. Gaps count as UNKNOWN.
        counts: GOOD / NG events (a count with a `start` is spread over the time it was made:
            host/losses.py). ideal_cycle_s: ideal seconds per unit (piece, kg, ...).
        now: for a running shift; time after it is not evaluated.
        short_stop_s: unreasoned stops shorter than this are minor stops (performance loss).
        startup_window_s: NG this soon after a setup, breakdown or maintenance ends is a
            startup reject.
        planned_maintenance: the PM policy, one of PM_POLICIES (see `planned_time`).
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
    timeline = checked_states(states, calendar)
    events = checked_counts(counts, calendar)
    window = [(start, end)] if end > start else []
    insts = calendar.shifts_between(start, end) if window else []
    scheduled = merge((max(i.start, start), min(i.end, end)) for i in insts)
    off_plan = merge([b for i in insts for b in i.breaks] + list(calendar.planned_stops))
    plan = subtract(scheduled, off_plan)

    kinds, startup_ends = classify(timeline, short_stop_s, planned_maintenance)
    acc = dict.fromkeys(("run", "minor", "setup", "breakdown", "maintenance", "planned_pm",
                         "planned"), 0.0)
    known = run_outside = 0.0
    for s, kind in zip(timeline, kinds):
        if kind is not None:
            in_window, in_plan = overlap(s.start, s.end, window), overlap(s.start, s.end, plan)
            known += in_window
            acc[kind] += in_plan
            run_outside += in_window - in_plan if kind == "run" else 0.0
    available_s = sum(b - a for a, b in plan) - acc["planned"]
    planned_s = planned_time(available_s, acc["maintenance"] + acc["planned_pm"],
                             planned_maintenance)
    covered_s = (acc["run"] + acc["minor"] + acc["setup"] + acc["breakdown"]
                 + acc["maintenance"])

    bounds = [(s.start, s.end) for s in timeline]
    count_kinds = ["planned" if k == "planned_pm" else k for k in kinds]
    t = attribute(events, bounds, count_kinds, (start, end), plan, ideal_cycle_s, startup_ends,
                  startup_window_s)
    return OEEResult(
        machine, start, end, all_time_s=end - start, planned_s=planned_s,
        # Differences of float sums: the clamp removes rounding noise, never a real value.
        unknown_s=max(0.0, end - start - known),
        unknown_planned_s=max(0.0, planned_s - covered_s),
        run_s=acc["run"] + acc["minor"], breakdown_s=acc["breakdown"], setup_s=acc["setup"],
        maintenance_s=acc["maintenance"], minor_stop_s=acc["minor"],
        net_run_s=ideal_cycle_s * (t.good + t.ng), fully_productive_s=ideal_cycle_s * t.good,
        startup_reject_s=ideal_cycle_s * t.startup,
        unknown_net_s=ideal_cycle_s * (t.unknown_good + t.unknown_ng),
        unknown_good_s=ideal_cycle_s * t.unknown_good, good=t.good, ng=t.ng,
        startup_ng=t.startup, unknown_good=t.unknown_good, unknown_ng=t.unknown_ng,
        excluded_good=t.excluded_good, excluded_ng=t.excluded_ng,
        run_outside_planned_s=run_outside)

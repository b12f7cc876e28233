"""The OEE engine's time accounting: checked intervals, their loss classes, where output goes.

Pure; host/oee.py is the engine that uses it (and re-exports the constants).

Where a count's output goes in an OEE window: spread over the time it was made.

A heartbeat's count delta is the output made since the previous heartbeat of its boot, so a
count event may carry that span (`CountEvent.start`). Its quantity is spread evenly over the
time in the span in which output can be made: `RUN`, `UNKNOWN` and gaps in the timeline (a
stopped machine makes nothing). A unit cannot be made faster than its ideal cycle, so when
that production time is less than `qty x ideal_cycle_s` the span reaches further back over
earlier production time until it holds that much: a unit finished just after a stop or a
window's start was partly made before it. Each share is then

- counted (in A, P and Q) where the state is known and the time is planned;
- output in unknown time where the state is unknown and the time is planned: it counts in
  the totals and in quality but not in performance, because its run time is not known;
- excluded (breaks, off shift, planned stops) where the time is not planned;
- dropped where it falls outside the window (it belongs to the neighbouring window).

Time before a machine's first known state is unknown, so there is always production time to
go back to. A count without a span is a point at its own time, classified by the interval
that contains it.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from .errors import OEEInputError
from .shifts import finite

if TYPE_CHECKING:
    from .oee import Calendar, CountEvent, StateInterval

__all__ = ["DEFAULT_PM_POLICY", "DEFAULT_SHORT_STOP_S", "PM_POLICIES", "REASONS", "STATES",
           "Tally", "attribute", "checked_counts", "checked_states", "classify", "inside",
           "merge", "overlap", "planned_reasons", "planned_time", "pm_policy_checked", "subtract"]

STATES = ("RUN", "IDLE", "STOP", "OFF", "UNKNOWN")
REASONS = ("setup", "planned_maintenance", "breakdown", "no_order", "material", "other")
# Where planned maintenance goes (docs/oee.md, "Planned maintenance"): an availability loss,
# as the source study counts it, or planned downtime that leaves planned production time.
PM_POLICIES = ("availability_loss", "planned_stop")
DEFAULT_PM_POLICY = "availability_loss"
# A stop with one of these reasons is an availability loss however short it is.
_AVAILABILITY_REASONS = frozenset({"setup", "breakdown", "planned_maintenance"})
DEFAULT_SHORT_STOP_S = 300.0


def pm_policy_checked(pm_policy: str) -> str:
    if pm_policy not in PM_POLICIES:
        raise OEEInputError(f"planned maintenance policy must be one of "
                            f"{', '.join(PM_POLICIES)}, not {pm_policy!r}")
    return pm_policy


def planned_reasons(pm_policy: str = DEFAULT_PM_POLICY) -> frozenset[str]:
    """Reasons whose time leaves planned production time, like a break: `no_order` always
    (nothing to make is a scheduling loss), `planned_maintenance` under "planned_stop"."""
    if pm_policy_checked(pm_policy) == "planned_stop":
        return frozenset({"no_order", "planned_maintenance"})
    return frozenset({"no_order"})



_PRODUCING = frozenset({"run", None})  # RUN and UNKNOWN: the time in which output can be made


def planned_time(available_s: float, pm_s: float, pm_policy: str = DEFAULT_PM_POLICY) -> float:
    """Planned production time of `available_s` holding `pm_s` of planned maintenance.

    The one place the PM policy decides the denominator of availability, for the engine and
    the logbook alike: "availability_loss" keeps PM in planned time (A = (available - PM -
    setup - breakdown) / available), "planned_stop" takes it out (A = run / (available - PM)).
    """
    return available_s - pm_s if pm_policy_checked(pm_policy) == "planned_stop" else available_s


def merge(spans: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """Sorted, non-overlapping union of [a, b) spans."""
    out: list[tuple[float, float]] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract(base: list[tuple[float, float]], cut: list[tuple[float, float]]):
    """`base` less `cut` (both merged span lists)."""
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


def overlap(a: float, b: float, spans: list[tuple[float, float]]) -> float:
    """Length of [a, b) inside the merged `spans`."""
    return sum(max(0.0, min(b, d) - max(a, c)) for c, d in spans)


def inside(ts: float, spans: list[tuple[float, float]]) -> bool:
    i = bisect_right(spans, (ts, math.inf)) - 1
    return i >= 0 and spans[i][0] <= ts < spans[i][1]


@dataclass
class Tally:
    """Quantities by where they went (units, not seconds)."""

    good: float = 0.0
    ng: float = 0.0
    unknown_good: float = 0.0
    unknown_ng: float = 0.0
    excluded_good: float = 0.0
    excluded_ng: float = 0.0
    startup: float = 0.0  # counted NG soon after a setup, breakdown or maintenance

    def add(self, where: str, kind: str, qty: float) -> None:
        name = ("" if where == "counted" else f"{where}_") + ("good" if kind == "GOOD" else "ng")
        setattr(self, name, getattr(self, name) + qty)


class _Timeline:
    """The classified intervals of a machine, for looking up the time a span covers."""

    def __init__(self, bounds: Sequence[tuple[float, float]], kinds: Sequence[str | None]):
        self.bounds, self.kinds = bounds, kinds
        self.starts = [a for a, _ in bounds]

    def kind_at(self, ts: float) -> str | None:
        i = bisect_right(self.starts, ts) - 1
        return self.kinds[i] if i >= 0 and ts < self.bounds[i][1] else None

    def made_in(self, since: float, ts: float, need_s: float) -> list[tuple]:
        """(start, end, kind) of the time output counted at `ts` was made in: the production
        time (RUN, or unknown: a gap or UNKNOWN) back from `ts` to `since`, and further back
        until it holds `need_s` seconds, but only through time as known (or as unknown) as
        the time it was counted in: output counted in unknown time is never laid back into
        known run time (where the event clock stood still, unknown time is short). Pieces in
        time order."""
        out: list[tuple] = []
        got, t = 0.0, ts
        i = bisect_left(self.starts, ts) - 1  # the last interval starting before ts
        unknown_side: bool | None = None
        while True:
            if i >= 0 and self.bounds[i][1] >= t:  # within interval i
                a, kind = self.bounds[i][0], self.kinds[i]
                i -= 1
            else:  # a gap back to the end of interval i: unknown
                a, kind = (self.bounds[i][1] if i >= 0 else -math.inf), None
            if unknown_side is None:
                unknown_side = kind is None
            elif t <= since and (kind is None) != unknown_side:
                break  # the span is covered: widen no further than its own side
            if kind in _PRODUCING:
                cut = min(since, t - max(0.0, need_s - got))  # latest point enough
                if cut >= a:
                    if t > cut:
                        out.append((cut, t, kind))
                    break
                out.append((a, t, kind))
                got += t - a
            elif got >= need_s and since >= a:
                break
            t = a
        out.reverse()
        return out


def attribute(counts, bounds: Sequence[tuple[float, float]], kinds: Sequence[str | None],
              window: tuple[float, float], plan: list[tuple[float, float]],
              ideal_cycle_s: float, startup_ends: list[float],
              startup_window_s: float) -> Tally:
    """Tally `counts` (CountEvent) over one window.

    Args:
        bounds, kinds: the machine's intervals (sorted, not overlapping) and their loss
            class ("run", "minor", "setup", "breakdown", "maintenance", "planned", or None
            for UNKNOWN).
        window: [start, end). plan: merged planned spans inside the window.
        startup_ends: sorted ends of stops after which NG are startup rejects.
    """
    tl = _Timeline(bounds, kinds)
    w0, w1 = window
    tally = Tally()
    for c in counts:
        if c.start is None or c.start >= c.ts:
            pieces = [(c.ts, c.ts, tl.kind_at(c.ts), c.qty)]
        else:
            if c.start >= w1:
                continue
            made = tl.made_in(c.start, c.ts, c.qty * ideal_cycle_s)
            span = sum(q - p for p, q, _ in made)
            if span <= 0:
                pieces = [(c.ts, c.ts, tl.kind_at(c.ts), c.qty)]
            else:
                pieces = [(p, q, k, c.qty * (q - p) / span) for p, q, k in made]
        for p, q, kind, qty in pieces:
            if q == p:  # a point
                if not w0 <= p < w1:
                    continue
                planned = qty if inside(p, plan) else 0.0
            else:
                in_window = max(0.0, min(q, w1) - max(p, w0))
                if in_window <= 0:
                    continue
                planned = qty * overlap(p, q, plan) / (q - p)
                qty *= in_window / (q - p)
            if qty - planned > 0:
                tally.add("excluded", c.kind, qty - planned)
            if planned <= 0:
                continue
            if kind is None:
                tally.add("unknown", c.kind, planned)
            elif kind == "planned":
                tally.add("excluded", c.kind, planned)
            else:
                tally.add("counted", c.kind, planned)
                k = bisect_right(startup_ends, c.ts) - 1
                if c.kind == "NG" and k >= 0 and c.ts < startup_ends[k] + startup_window_s:
                    tally.startup += planned
    return tally


def checked_states(states: Iterable[StateInterval], cal: Calendar) -> list[StateInterval]:
    out = sorted(states, key=lambda s: (s.start, s.end))
    for s in out:
        finite(s.start, "state interval start")
        finite(s.end, "state interval end")
        if (s.state not in STATES or s.end < s.start
                or (s.reason is not None and (s.reason not in REASONS
                                              or s.state in ("RUN", "UNKNOWN")))):
            _bad_state(s, cal)  # the time formatted only for the error: it costs ~3 us
    out = [s for s in out if s.end > s.start]
    for prev, cur in pairwise(out):
        if cur.start < prev.end:
            raise OEEInputError(f"state intervals overlap at {cal.iso(cur.start)} "
                                f"({prev.state} and {cur.state})")
    return out


def _bad_state(s: StateInterval, cal: Calendar) -> None:
    where = cal.iso(s.start)
    if s.state not in STATES:
        raise OEEInputError(f"unknown state {s.state!r} at {where}")
    if s.end < s.start:
        raise OEEInputError(f"state interval ends before it starts at {where} ({s.state})")
    if s.reason not in REASONS:
        raise OEEInputError(f"unknown reason {s.reason!r} at {where}; "
                            f"expected one of {', '.join(REASONS)}")
    raise OEEInputError(f"reason {s.reason!r} given for a {s.state} interval at {where}")


def checked_counts(counts: Iterable[CountEvent], cal: Calendar) -> list[CountEvent]:
    out = list(counts)
    for c in out:
        finite(c.ts, "count timestamp")
        if c.kind not in ("GOOD", "NG"):
            raise OEEInputError(f"unknown count kind {c.kind!r} at {cal.iso(c.ts)}")
        if finite(c.qty, "count quantity") < 0:
            raise OEEInputError(f"negative {c.kind} quantity {c.qty} at {cal.iso(c.ts)}")
    return out


def classify(timeline: list[StateInterval], short_stop_s: float, pm_policy: str):
    """Loss class of each interval (None for UNKNOWN) and the ends of the stops after which
    NG are startup rejects (those with a setup, breakdown or maintenance interval).

    Contiguous stop intervals form one stop (IDLE flickering to STOP is one event), and a
    stop is judged on its whole length, so the class never depends on the window. Classes:
    run, minor, setup, breakdown, maintenance, planned (no_order), planned_pm (planned
    maintenance under the "planned_stop" policy).
    """
    kinds: list[str | None] = [None] * len(timeline)
    startup_ends: list[float] = []
    planned = planned_reasons(pm_policy)
    is_stop = [s.state in ("IDLE", "STOP", "OFF") and s.reason not in planned for s in timeline]
    i = 0
    while i < len(timeline):
        s = timeline[i]
        if not is_stop[i]:
            kinds[i] = ({"RUN": "run", "UNKNOWN": None}.get(s.state, "planned")
                        if s.reason != "planned_maintenance" else "planned_pm")
            i += 1
            continue
        j = i + 1
        while j < len(timeline) and is_stop[j] and timeline[j].start == timeline[j - 1].end:
            j += 1
        stop = timeline[i:j]
        explicit = any(x.reason in _AVAILABILITY_REASONS for x in stop)
        minor = not explicit and sum(x.end - x.start for x in stop) < short_stop_s
        for k, x in enumerate(stop, i):
            kinds[k] = "minor" if minor else _LOSS_OF_REASON.get(x.reason, "breakdown")
        if explicit:
            startup_ends.append(stop[-1].end)
        i = j
    return kinds, startup_ends


_LOSS_OF_REASON = {"setup": "setup", "planned_maintenance": "maintenance"}

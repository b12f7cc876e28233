"""Per-minute rollups of a machine's timeline: seconds and output per loss class; pure.

A rollup cell is (minute, class): the seconds of the minute the machine spent in intervals of
that loss class (host/losses.classify: run, minor, setup, breakdown, maintenance, planned,
planned_pm, or "" for unknown time), and the GOOD and NG output made in them. Output is
placed as the OEE engine places it (host/losses.attribute) with each count's quantity
spread over the production time inside its own span. The engine does the same whenever that
time holds the units at the ideal cycle (qty x ideal_cycle_s <= production time); when it
does not (a unit finished just after a stop), it reaches further back over production time
of the same side (known or unknown), which changes no sum unless that reach crosses a window
edge or a change of planned time. So a cell keeps `rate`, the largest qty / production time
of its counts, and `qty_max`, their largest quantity: a report corrects the few counts that
reach across such a boundary (host/report/oee_rollup.py). `mixed_rate` is the rate of counts
whose span holds known and unknown time (there a reach moves output between the two).
`ng_gap` is the smallest time from a startup end (the end of a stop with a setup, breakdown
or maintenance) to an NG count in the cell: no startup rejects when it is at least the
startup window.

Summed over whole minutes of a window, cells give the engine's figures for that window as
long as the calendar's planned time starts and ends on whole minutes (host/report/
oee_rollup.py checks it), because every figure of host/oee.evaluate is a sum over time and
over the pieces of output, and a stop's class never depends on the window.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable

from . import oee
from .events import Event
from .losses import _Timeline, checked_states, classify
from .timeline import STOP_STATES, MachineTimeline

__all__ = ["CLASSES", "MINUTE_S", "Cell", "minute_cells"]

MINUTE_S = 60
CLASSES = ("run", "minor", "setup", "breakdown", "maintenance", "planned", "planned_pm", "")
_UTC = oee.Calendar("UTC", ())
# Cell: [secs, good, ng, rate, ng_gap, qty_max, mixed_rate]
Cell = list
_NO_PRODUCTION = 1e300  # the rate of a count with no production time in its span


def _cell(cells: dict, minute: int, cls: str) -> Cell:
    c = cells.get((minute, cls))
    if c is None:
        c = cells[(minute, cls)] = [0.0, 0.0, 0.0, 0.0, math.inf, 0.0, 0.0]
    return c


def _spread(cells: dict, a: float, b: float, cls: str, lo: float, hi: float, secs: bool,
            kind: str = "", qty: float = 0.0, rate: tuple = (0.0, 0.0, 0.0),
            gap: float = math.inf) -> None:
    """Add [a, b) clipped to [lo, hi) minute by minute: its seconds, or `qty` of output
    spread evenly over it."""
    a0, b0 = a, b
    a, b = max(a, lo), min(b, hi)
    m = int(a // MINUTE_S) * MINUTE_S
    while a < b:
        end = min(b, m + MINUTE_S)
        c = _cell(cells, m, cls)
        if secs:
            c[0] += end - a
        else:
            share = qty * (end - a) / (b0 - a0)
            _add_output(c, kind, share, rate, gap)
        a, m = end, m + MINUTE_S


def _add_output(c: Cell, kind: str, qty: float, rate: tuple, gap: float) -> None:
    """rate: (rate, the count's whole quantity, rate if its span is mixed else 0)."""
    if kind == "GOOD":
        c[1] += qty
    else:
        c[2] += qty
        c[4] = min(c[4], gap)
    c[3] = max(c[3], rate[0])
    c[5] = max(c[5], rate[1])
    c[6] = max(c[6], rate[2])


def minute_cells(events: Iterable[Event], from_s: float, to_s: float, *,
                 until_s: float | None = None, short_stop_s: float = oee.DEFAULT_SHORT_STOP_S,
                 pm_policy: str = oee.DEFAULT_PM_POLICY) -> dict[tuple[int, str], Cell]:
    """Cells of the whole minutes in [from_s, to_s) of one machine.

    Args:
        events: the machine's state, count and reason events: every state from the last one
            before its stop runs that reach into the range (read a margin before from_s)
            until to_s, the counts from from_s on, the reasons. from_s and to_s whole
            minutes; to_s no later than the start of the machine's last stop run (its
            length is not known yet). until_s: how long the last state lasts (at least
            until the newest count: the report's does), for the spans of counts after to_s.
        short_stop_s, pm_policy: as host/oee.evaluate; the classes depend on them.
    Returns (minute start, class) -> [seconds, good, ng, rate, ng_gap].
    """
    tl = MachineTimeline("")
    for ev in events:
        tl.add(ev)
    timeline = checked_states(tl.intervals(max(to_s, until_s or to_s)), _UTC)
    kinds, startup_ends = classify(timeline, short_stop_s, pm_policy)
    cells: dict[tuple[int, str], Cell] = {}
    lo, hi = float(from_s), float(to_s)
    t = lo
    for s, kind in zip(timeline, kinds):
        if s.end <= lo or s.start >= hi:
            continue
        if s.start > t:  # a gap (before the first state): unknown
            _spread(cells, t, s.start, "", lo, hi, True)
        _spread(cells, s.start, s.end, kind or "", lo, hi, True)
        t = max(t, s.end)
    if t < hi:
        _spread(cells, t, hi, "", lo, hi, True)
    bounds = [(s.start, s.end) for s in timeline]
    # output in planned maintenance (planned_pm) is output in planned stops, as the engine
    # counts it: its cells are "planned"
    look = _Timeline(bounds, ["planned" if k == "planned_pm" else k for k in kinds])
    # The states read may begin after an earlier startup end (an incremental build reads
    # from the state before the stop run in effect at its start): with none found, the gap
    # is claimed only back to where the states read begin, or to the end of a stop run they
    # begin in (it may be cut, its reason unseen), and a report with a longer startup window
    # judges that cell's NG from events.
    known_from = timeline[0].start if timeline else lo
    for k, s in enumerate(timeline):
        if s.state not in STOP_STATES or (k and s.start != timeline[k - 1].end):
            break
        known_from = s.end
    for c in tl.counts:
        gap = math.inf
        if c.kind == "NG":
            k = bisect_right(startup_ends, c.ts) - 1
            gap = c.ts - (startup_ends[k] if k >= 0 else known_from)
        if c.start is None or c.start >= c.ts:
            if lo <= c.ts < hi:
                cls = look.kind_at(c.ts) or ""
                m = int(c.ts // MINUTE_S) * MINUTE_S
                _add_output(_cell(cells, m, cls), c.kind, c.qty, (0.0, c.qty, 0.0), gap)
            continue
        made = look.made_in(c.start, c.ts, 0.0)
        span = sum(q - p for p, q, _ in made)
        if span <= 0:  # no production time in its span: the engine would look further back
            m = int(c.ts // MINUTE_S) * MINUTE_S
            if lo <= c.ts < hi:
                _add_output(_cell(cells, m, ""), c.kind, 0.0,
                            (_NO_PRODUCTION, c.qty, _NO_PRODUCTION), gap)
            continue
        r = c.qty / span
        rate = (r, c.qty, r if len({k is None for _, _, k in made}) > 1 else 0.0)
        for p, q, k in made:
            _spread(cells, p, q, k or "", lo, hi, False, c.kind, c.qty * (q - p) / span, rate,
                    gap)
    return cells


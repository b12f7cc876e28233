"""A machine's state / count / reason events -> host/oee.py timelines and OEE; pure.

Shared by the live deriver (running-shift OEE) and `lampwatch oee report`, so both compute
from the very same events in the very same way.

Reasons: a `reason` event {"reason", "start_s", "end_s"} names the cause of the stop time
(IDLE, STOP, OFF) inside [start_s, end_s); `end_s` null means "this whole stop": the run
of contiguous stop intervals containing start_s, from its beginning to its end. A later reason event overrides an
earlier one where they overlap. A state event may carry its own reason (lamp map
"STOP:setup"); an operator's reason overrides it.
"""

from __future__ import annotations

import logging
import math
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import replace
from math import isnan

from . import oee
from .events import Event

log = logging.getLogger(__name__)

STOP_STATES = frozenset({"IDLE", "STOP", "OFF"})
_MINUS_INF = float("-inf")
LOSS_KEYS = oee.LOSS_KEYS
# Losses that need the ideal cycle time: unknown (None) for a machine without one.
_IDEAL_LOSSES = ("reduced_speed_s", "process_defect_s", "startup_reject_s")
# A state change's state and reason as one byte (state index * 16 + reason index).
_STATES = tuple(sorted(oee.STATES))
_REASONS = (None,) + tuple(sorted(oee.REASONS))
_CODE = {(state, reason): i * 16 + j
         for i, state in enumerate(_STATES) for j, reason in enumerate(_REASONS)}
assert len(_STATES) <= 16 and len(_REASONS) <= 16, "a state change's byte holds 16 of each"


class MachineTimeline:
    """State changes, counts and reasons of one machine, fed event by event."""

    # one per machine for the running shift (10,000 in a large plant): no __dict__
    __slots__ = ("_archived", "_coalesce_s", "_code", "_counts", "_reasons", "_ts", "machine",
                 "touched")

    def __init__(self, machine: str, coalesce_s: float = 0.0):
        self.machine = machine
        # Live use: counts of one kind in the same `coalesce_s` bucket with no state change
        # between them are kept as one (bounded memory; the OEE is the same as long as
        # breaks and planned stops start and end on bucket boundaries, e.g. whole minutes).
        self._coalesce_s = coalesce_s
        # State changes in time order (among equal times, in the order taken), as columns: a
        # shift's changes at 10,000 machines are millions, and a (ts, order, state, reason)
        # tuple took ~140 B where these take 9.
        self._ts = array("d")
        self._code = bytearray()  # _CODE of (state, reason)
        # Counts in the order taken, as columns too (~25 B a count; a CountEvent took ~150):
        # the live timeline merges a machine's counts of a minute, and a new CountEvent at
        # each heartbeat lived a second or two, long enough to reach the collector's oldest
        # garbage-collector generation, whose full pass (~50 ms at 10,000 nodes) it then
        # set off every ~10 s. CountEvents are made when read (`counts`, `all_counts`).
        # _NO_COUNTS (shared, never written) until the first count: a collector holds a
        # timeline per machine from its start, and empty columns take ~270 B.
        self._counts = _NO_COUNTS
        # Live use: the first `_archived` counts are in the running shift's settled past
        # (archive): `counts` leaves them out; all_counts() and evaluate() see them.
        self._archived = 0
        # () until the first reason (most machines get none in a shift): an empty list is
        # 56 bytes a machine
        self._reasons: list[tuple[float, float | None, str]] | tuple = ()
        # The earliest time an event taken since the last `settled()` can change (a state's
        # time, a count's first moment, -inf for a reason or a prune): the live OEE keeps the
        # result of the shift's settled past and recomputes it only if this reaches into it.
        self.touched = math.inf

    def settled(self) -> None:
        """The live OEE has taken everything so far into account."""
        self.touched = math.inf

    def add(self, ev: Event) -> None:
        """Take one event of this machine; kinds other than state, count, reason are ignored."""
        d = ev.data
        if ev.kind == "state":
            state = d.get("state")
            if state not in oee.STATES:
                log.warning("%s: ignoring state event with state %r", self.machine, state)
                return
            reason = d.get("reason") if state in STOP_STATES else None
            ts = float(ev.ts_s)
            self.touched = min(self.touched, ts)
            code = _CODE[state, reason if reason in oee.REASONS else None]
            if self._ts and ts < self._ts[-1]:  # after those of the same time: taken later
                i = bisect_right(self._ts, ts)
                self._ts.insert(i, ts)
                self._code.insert(i, code)
            else:
                self._ts.append(ts)
                self._code.append(code)
        elif ev.kind == "count":
            since = d.get("since_s")
            since = None if since is None else float(since)
            for kind, key in (("GOOD", "good"), ("NG", "ng")):
                qty = d.get(key) or 0
                if qty > 0:
                    self._count(float(ev.ts_s), kind, float(qty), since)
        elif ev.kind == "reason":
            reason, start = d.get("reason"), d.get("start_s")
            if reason not in oee.REASONS or start is None:
                log.warning("%s: ignoring reason event %r", self.machine, d)
                return
            end = d.get("end_s")
            self.touched = -math.inf  # it may name any old stop
            if not self._reasons:
                self._reasons = []
            self._reasons.append((float(start), None if end is None else float(end), reason))

    @property
    def counts(self) -> list[oee.CountEvent]:
        """The counts after the archived ones, in the order taken (a new list each time)."""
        return self._counts.events(self._archived)

    def archive(self, n: int) -> None:
        """Archive the first `n` of `counts` (the live OEE no longer reads them: they are in
        its settled past); all_counts() and evaluate() still see them."""
        self._archived = min(self._archived + max(n, 0), len(self._counts.good))

    def unarchive(self) -> None:
        """`counts` holds the archived counts again (the settled past is recomputed)."""
        self._archived = 0

    def all_counts(self) -> list[oee.CountEvent]:
        return self._counts.events(0)

    def _count(self, ts: float, kind: str, qty: float, start: float | None) -> None:
        c, coalesce_s = self._counts, self._coalesce_s
        good = kind == "GOOD"
        if coalesce_s > 0:
            bucket = ts // coalesce_s
            # Merged only while both spans lie inside the bucket and after the last state
            # change: the merged output is then spread over time in one state and one
            # minute, as each was, and a calendar edge on a whole minute never splits it.
            floor = max(bucket * coalesce_s, self._ts[-1] if self._ts else _MINUS_INF)
            point = start is None or start >= ts
            if (ts if start is None else start) >= floor:
                d, n = c.d, len(c.good)
                for i in (n - 1, n - 2):  # the last GOOD and the last NG, not archived
                    if i < self._archived:
                        break
                    j = 3 * i
                    p_ts, p_start = d[j], d[j + 1]
                    p_none = isnan(p_start)  # no start
                    # a point (made where the event clock stood still) never joins a span:
                    # together they would be spread over time it was not made in
                    if (c.good[i] == good and ts >= p_ts and (p_none or p_start >= p_ts) == point
                            and (p_ts if p_none else p_start) >= floor):
                        if start is not None and (p_none or start < p_start):
                            d[j + 1] = p_start = start  # (else the first, or none, stays)
                            p_none = False
                        d[j] = ts
                        d[j + 2] += qty
                        self.touched = min(self.touched, ts if p_none else p_start)
                        return
        if c is _NO_COUNTS:
            c = self._counts = _Packed()
        c.d.extend((ts, math.nan if start is None else start, qty))
        c.good.append(good)
        self.touched = min(self.touched, ts if start is None else min(ts, start))

    @property
    def last_change_s(self) -> float | None:
        return self._ts[-1] if self._ts else None

    def prune(self, before_s: float, counts_before_s: float | None = None) -> None:
        """Forget data older than `before_s`, keeping the state change in effect at it, and
        the counts dated before `counts_before_s` (default `before_s`)."""
        self.touched = -math.inf  # what the live OEE kept stands on what goes here
        i = bisect_right(self._ts, before_s) - 1
        if i > 0:
            del self._ts[:i]
            del self._code[:i]
        cut = before_s if counts_before_s is None else counts_before_s
        self._counts, self._archived = self._counts.since(cut, self._archived)
        self._reasons = [r for r in self._reasons if r[1] is None or r[1] > before_s] or ()

    def intervals(self, until_s: float) -> list[oee.StateInterval]:
        """State intervals up to `until_s` (the last state runs until then), reasons applied."""
        return self._intervals(0, until_s)

    def intervals_since(self, from_s: float, until_s: float) -> tuple[list, bool]:
        """The intervals from the one in effect at `from_s` on, back to the start of the stop
        run it is in (a stop is judged whole), and whether earlier ones were left out. The
        live OEE evaluates the recent part of a shift from these: the same classes, and the
        same layout of output for any count whose output lies after the first of them."""
        code = self._code
        i = max(0, bisect_right(self._ts, from_s) - 1)
        while i > 0 and _STATES[code[i] >> 4] in STOP_STATES and (
                _STATES[code[i - 1] >> 4] in STOP_STATES):
            i -= 1
        return self._intervals(i, until_s), i > 0

    def _intervals(self, first: int, until_s: float) -> list[oee.StateInterval]:
        out = []
        times, code = self._ts, self._code
        n = len(times)
        for k in range(first, n):
            ts, c = times[k], code[k]
            end = times[k + 1] if k + 1 < n else max(ts, until_s)
            if end > ts:
                out.append(oee.StateInterval(ts, end, _STATES[c >> 4], _REASONS[c & 15]))
        for start, end, reason in self._reasons:
            out = _with_reason(out, start, end, reason)
        return out

    def evaluate(self, ideal_cycle_s: float | None, calendar: oee.Calendar, start: float,
                 end: float, *, until_s: float, now: float | None = None,
                 short_stop_s: float = oee.DEFAULT_SHORT_STOP_S, startup_window_s: float = 0.0,
                 planned_maintenance: str = oee.DEFAULT_PM_POLICY) -> oee.OEEResult:
        """OEE over [start, end) with the last state lasting until `until_s`.

        Without an ideal cycle time the engine runs with 1 s per unit; callers must then
        report performance and OEE as unknown (`oee_data(result, ideal_known=False)`), and
        never sum such a result's ideal times with another machine's.
        """
        return oee.evaluate(self.intervals(until_s), self.all_counts(), ideal_cycle_s or 1.0,
                            calendar, start, end, now=now, machine=self.machine,
                            short_stop_s=short_stop_s, startup_window_s=startup_window_s,
                            planned_maintenance=planned_maintenance)


class _Packed:
    """CountEvents in their order: ts, start (None: NaN) and qty of each, three doubles in
    one array (three arrays took ~190 bytes more a machine), and whether each is GOOD."""

    __slots__ = ("d", "good")

    def __init__(self):
        self.d = array("d")
        self.good = bytearray()

    def since(self, before_s: float, first: int) -> tuple[_Packed, int]:
        """Those dated at or after `before_s`, and how many of them were among the `first`."""
        d = self.d
        keep = [i for i, t in enumerate(d[::3]) if t >= before_s]
        if len(keep) == len(self.good):
            return self, first
        out = _Packed()
        for i in keep:
            out.d.extend(d[3 * i:3 * i + 3])
        out.good.extend(self.good[i] for i in keep)
        return out, bisect_left(keep, first)

    def events(self, lo: int) -> list[oee.CountEvent]:
        """Those from the `lo`-th on, as CountEvents."""
        d, good = self.d, self.good
        return [oee.CountEvent(d[j], "GOOD" if good[i] else "NG", d[j + 2],
                               None if isnan(d[j + 1]) else d[j + 1])
                for i, j in zip(range(lo, len(good)), range(3 * lo, 3 * len(good), 3))]


_NO_COUNTS = _Packed()


def _with_reason(intervals: list[oee.StateInterval], start: float, end: float | None,
                 reason: str) -> list[oee.StateInterval]:
    if end is None:  # the whole run of contiguous stop intervals containing `start`
        run: list[oee.StateInterval] = []
        for s in intervals:
            if s.state in STOP_STATES and (not run or s.start == run[-1].end):
                run.append(s)
                continue
            if run and run[-1].end > start:
                break
            run = [s] if s.state in STOP_STATES else []
        run = [] if not run or not run[0].start <= start < run[-1].end else run
        if not run:
            return intervals
        start, end = run[0].start, run[-1].end
    out = []
    for s in intervals:
        if s.state not in STOP_STATES or s.end <= start or s.start >= end:
            out.append(s)
            continue
        a, b = max(s.start, start), min(s.end, end)
        if s.start < a:
            out.append(replace(s, end=a))
        out.append(oee.StateInterval(a, b, s.state, reason))
        if b < s.end:
            out.append(replace(s, start=b))
    return out


def oee_data(result: oee.OEEResult, ideal_known: bool = True) -> dict:
    """The figures of an `oee` event / report row (architecture.md); None where unknown.

    good / ng: output counted in known planned time; unknown_good / unknown_ng: output made
    in unknown planned time (in quality, not in performance); excluded_*: output made
    outside planned time (breaks, off shift).
    """
    perf_ok = ideal_known
    data = {
        "availability": result.availability,
        "performance": result.performance if perf_ok else None,
        "quality": result.quality,
        "oee": result.oee if perf_ok else None,
        "teep": result.teep if perf_ok else None,
        "utilization": result.utilization,
        "good": result.good, "ng": result.ng, "startup_ng": result.startup_ng,
        "unknown_good": result.unknown_good, "unknown_ng": result.unknown_ng,
        "excluded_good": result.excluded_good, "excluded_ng": result.excluded_ng,
        "coverage": result.coverage, "planned_coverage": result.planned_coverage,
        "planned_s": result.planned_s, "run_s": result.run_s, "unknown_s": result.unknown_s,
    }
    losses = {k: getattr(result, k) for k in LOSS_KEYS}
    if not perf_ok:
        for k in _IDEAL_LOSSES:
            losses[k] = None
    data["losses"] = losses
    return data

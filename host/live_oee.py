"""The running shift's OEE per machine for the deriver: a point every interval, `final` once.

Fed the deriver's state, count and reason events (event times, epoch s UTC); pure: time
comes in as arguments. Shares host/timeline.py and host/oee.py with `lampwatch oee report`,
so the live figures and the report compute from the same events the same way.

A shift's `final` point is made once, dated at the shift's end: at the first tick once the
heartbeats that hold the shift's last output can have come (its end + the longest heartbeat
period + 1 s: a heartbeat's output spans back to the previous one), and never again for that
shift, also after a restart (the replayed journal says which shifts have theirs). Event time never goes back (host/hostclock.py), so an ended shift is never
re-entered either. Performance above 100 % is logged once per machine and shift: it is a
wrong ideal cycle time or doubled counts, never a figure to show silently.
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

from . import oee
from .events import Event
from .losses import _Timeline, checked_states, classify
from .timeline import STOP_STATES, MachineTimeline, oee_data

__all__ = ["OEESettings", "ShiftOEE"]

log = logging.getLogger(__name__)

# What a shift evaluated from `start` may read besides its own time: the state changes from
# this long before it (the state in effect, a stop run going on, where the output of a count
# after a silence lies), not the counts dated before it (their output lies before it).
_PRUNE_MARGIN_S = 3600.0
_COALESCE_S = 60.0  # live count timeline: one GOOD and one NG entry per minute and state
_TIMELINE_KINDS = frozenset({"state", "count", "reason"})
_P_SLACK = 1e-9
# The running shift's result is kept for its settled past, [shift start, end), and only the
# time since is evaluated each minute (without it a tick cost ~1 ms per machine and hour of
# shift: 10 s at 10,000 machines late in a shift). The settled past ends at least _SETTLED_S
# before now, before a stop still going (its class depends on its length), and where no
# count's output straddles it; it moves on in steps of at least _STEP_S.
# At most this many machines are evaluated per tick (0.1-0.2 ms each): with more, a round of
# points (or a shift's finals) is spread over the next ticks, so a tick of a 10,000-machine
# collector never stops ingest for a second (it would for 1-2 s). Each point is dated when it
# is evaluated; above PER_TICK x interval_s machines (6,000 at 60 s) a machine's point comes
# every machines / PER_TICK ticks instead of every interval.
PER_TICK = 100
_SETTLED_S = 60.0
# 8 minutes: a longer step makes the time evaluated each minute longer (median per-minute
# evaluation 121 us at 2 min, 132 at 8, 160 at 16), a shorter one makes walking a whole
# shift again slower (8 hours of a busy machine: 11.7 ms at 2 min, 5.2 at 8, 4.0 at 16).
_STEP_S = 480.0
# A machine evaluated from the shift's start again (a restart mid-shift, an event that
# reaches back) walks the steps of its settled past (20-90 us each; 60 for 8 hours): a tick
# takes at most this many, and a machine not caught up gets its point at a later tick (so a
# restart of a 10,000-machine collector mid-shift delays points, never ingest). Only ticks
# take steps: the live view (glance) shows the time since in one piece, so when the points
# come does not depend on who watched the board. (A journal imported gives a restart's
# points at the same times as far as a restart's walk fits one tick: the import does not
# restart; docs/oee.md.)
STEPS_PER_TICK = 300
# And at most this much evaluation: each machine's costs what it reads (the intervals of its
# view, the counts since its settled past, and one for itself: ~5 us each). PER_TICK was
# sized for 0.1-0.2 ms a machine, but one whose lamp changes every 20 s reads ~75 units, and
# 100 such evaluations took the deriver's ticks to p99 53 ms, max 74 (1,000 machines x 1
# frame/s; with this bound p99 29, max 30; ad hoc, in process). A tick evaluates at least
# one machine; the rest get their points at the next ticks. Counted, not timed, so an
# import dates the points as the collector did.
UNITS_PER_TICK = 4000
# The time since the settled past is evaluated with the intervals from this long (and the
# startup window) before its end: a count's output may lie before its span (host/losses.py).
_LOOKBACK_S = 900.0


@dataclass(slots=True)
class _Settled:
    """A machine's running-shift result over [shift start, end), kept (ShiftOEE.evaluate)."""

    key: tuple  # (shift start, shift end, ideal cycle): another key starts over
    end: float
    result: oee.OEEResult | None  # None while end is the shift's start
    grid: float  # the last fixed point of the shift it was settled for (_settle_point)
    fingerprint: tuple = ()  # _View.fingerprint at end


@dataclass(frozen=True)
class OEESettings:
    """How the live OEE is judged (the [oee] table of the collector config)."""

    interval_s: float = 60.0
    short_stop_s: float = oee.DEFAULT_SHORT_STOP_S
    startup_window_s: float = 0.0
    planned_maintenance: str = oee.DEFAULT_PM_POLICY


class ShiftOEE:
    """Timelines per machine and the running shift's OEE events.

    Args:
        calendar: the shifts (None, or one without shifts: no `oee` events, and no timelines
            kept: nothing would read them).
        settings: OEESettings.
    """

    def __init__(self, calendar: oee.Calendar | None, settings: OEESettings = OEESettings()):
        self.calendar, self.settings = calendar, settings
        # Without a shift nothing evaluates a timeline, yet kept they were the most of what a
        # node held in the steady state (about its last 75 minutes: ~11 of 18 KB at 1 Hz).
        self.keeps = calendar is not None and bool(calendar.shifts)
        self.timelines: dict[str, MachineTimeline] = {}
        self.shift: oee.ShiftInstance | None = None
        self._ended: oee.ShiftInstance | None = None  # ended, its final point still due
        self._last_s = -math.inf
        self._finals: set[tuple[str, float]] = set()  # (shift name, start) with a final
        self._settled: dict[str, _Settled] = {}  # per machine (evaluate)
        self._round: list = []  # machines still owed the running round's point (PER_TICK)
        self._finals_due: list | None = None  # machines still owed the ended shift's final
        self._warned: set[tuple[str, str, float]] = set()
        self._steps = STEPS_PER_TICK  # left in this tick
        self._units = UNITS_PER_TICK  # left in this tick
        self._idle_queue: list[str] = []  # timelines this round of _prune_idle has not pruned
        self._idle_next = -math.inf  # when the next round of _prune_idle begins

    def expect(self, machine: str) -> None:
        """A configured machine: its timeline is made now (when timelines are kept)."""
        if self.keeps:
            self.timeline(machine)

    def timeline(self, machine: str) -> MachineTimeline:
        tl = self.timelines.get(machine)
        if tl is None:
            tl = self.timelines[machine] = MachineTimeline(machine, coalesce_s=_COALESCE_S)
        return tl

    def absorb(self, events: Iterable[Event]) -> None:
        """Take derived (or replayed) events into the machines' timelines."""
        timelines, keeps = self.timelines, self.keeps
        for ev in events:
            if ev.kind in _TIMELINE_KINDS and ev.machine is not None:
                if keeps:
                    (timelines.get(ev.machine) or self.timeline(ev.machine)).add(ev)
            elif ev.kind == "oee" and ev.data.get("final") and ev.data.get("shift_start_s"):
                self._finals.add((ev.data.get("shift"), float(ev.data["shift_start_s"])))

    def resume(self, latest_s: float, grace_s: float) -> None:
        """After a replay: the shift running at the journal's latest time, or one that had
        ended less than `grace_s` before it, still owes its final point, unless the journal
        has it."""
        if not self.keeps:
            return
        assert self.calendar is not None
        inst, before = self.calendar.shift_at(latest_s), self.calendar.shift_at(latest_s - grace_s)
        self.shift = inst if inst is not None and self._key(inst) not in self._finals else None
        if before is not None and before != inst and self._key(before) not in self._finals:
            self._ended = before

    @staticmethod
    def _key(inst: oee.ShiftInstance) -> tuple[str, float]:
        return inst.name, inst.start

    def tick(self, now_s: float, machines: Iterable[tuple[int, str, float | None]],
             grace_s: float = 0.0) -> list[Event]:
        """`oee` events due at `now_s` for machines given as (node id, machine, ideal cycle);
        grace_s: how long after a shift's end its final point waits (module docstring)."""
        if not self.keeps:  # no shift ever runs (and no timeline is kept)
            return []
        assert self.calendar is not None
        machines = list(machines)
        out: list[Event] = []
        if self.shift is not None and now_s >= self.shift.end:
            self._ended, self.shift = self.shift, None
            self._round = []  # the final covers the machines the round had not reached
        self._steps, self._units = STEPS_PER_TICK, UNITS_PER_TICK
        room = PER_TICK
        ended = self._ended
        if ended is not None and now_s >= ended.end + grace_s:
            if self._key(ended) not in self._finals:
                if self._finals_due is None:
                    self._finals_due = machines
                batch, rest = self._finals_due[:PER_TICK], self._finals_due[PER_TICK:]
                events, behind = self._events(ended, ended.end, True, batch)
                out += events
                room -= len(batch)
                self._finals_due = behind + rest
                if self._finals_due:
                    return out  # the other machines' finals at the next ticks
                self._finals.add(self._key(ended))
            self._finals_due = None
            self._ended = None
            self._prune()
        inst = self.calendar.shift_at(now_s)
        if inst is not None and inst != self.shift and self._key(inst) not in self._finals:
            self.shift = inst
            self._last_s = -math.inf
            self._round = []
            self._prune()
        # The next shift's points wait for the ended one's finals (dated at its end), so
        # `oee` events never go back in time.
        if self.shift is not None and self._ended is None:
            if not self._round and now_s - self._last_s >= self.settings.interval_s:
                self._round, self._last_s = machines, now_s
            if self._round and room > 0:  # (after finals in this tick: what is left of it)
                batch, rest = self._round[:room], self._round[room:]
                events, behind = self._events(self.shift, now_s, False, batch)
                out += events
                self._round = behind + rest
        if self.shift is None and self._ended is None:
            self._prune_idle(now_s)
        return out

    def _prune_idle(self, now_s: float) -> None:
        """No shift running and no final owed: the timelines need nothing a shift starting
        now would not read (the state changes from _PRUNE_MARGIN_S before its start, no
        count dated before it). Without this a collector between two shifts kept every state
        change and count it took. A round over the timelines prunes PER_TICK a tick, and the
        next begins _PRUNE_MARGIN_S / 4 of event time after it ended."""
        if now_s < self._idle_next:
            return
        queue = self._idle_queue
        if not queue:
            queue.extend(self.timelines)
        for _ in range(min(PER_TICK, len(queue))):
            # (a shift yet to come starts after now: a count dated before it is never read)
            self.timelines[queue.pop()].prune(now_s - _PRUNE_MARGIN_S, now_s)  # never removed
        if not queue:
            self._idle_next = now_s + _PRUNE_MARGIN_S / 4

    def _prune(self) -> None:
        """Forget what no shift still to be evaluated needs (and the settled results: their
        timelines' counts are indexed anew)."""
        self._settled.clear()
        starts = [i.start for i in (self.shift, self._ended) if i is not None]
        if starts:
            for tl in self.timelines.values():
                tl.prune(min(starts) - _PRUNE_MARGIN_S, min(starts))

    def _events(self, inst: oee.ShiftInstance, at_s: float, final: bool,
                machines: list[tuple[int, str, float | None]]) -> tuple[list[Event], list]:
        """The `oee` events of `machines` within the tick's steps, and the machines whose
        settled past has not caught up yet (their events come at a later tick)."""
        out, behind = [], []
        for m in machines:
            node_id, machine, ideal = m
            if self._steps <= 0 or self._units <= 0:  # the tick's are spent: the rest next
                behind.append(m)
                continue
            result, steps, units = self.evaluate_within(machine, ideal, inst, at_s, self._steps)
            self._steps -= steps
            self._units -= units
            if result is None:
                behind.append(m)
                continue
            data = {"shift": inst.name, "shift_start_s": inst.start, "final": final}
            data.update(oee_data(result, bool(ideal)))
            self._check_performance(machine, inst, data["performance"])
            out.append(Event(at_s, "oee", node_id, machine, data))
        return out, behind

    def _check_performance(self, machine: str, inst: oee.ShiftInstance,
                           performance: float | None) -> None:
        key = (machine, inst.name, inst.start)
        if performance is not None and performance > 1 + _P_SLACK and key not in self._warned:
            self._warned.add(key)
            log.warning("%s: performance %s in shift %s is above 100 %%: its ideal_cycle_s is "
                        "too slow, or its counts are doubled", machine,
                        oee.percent(performance), inst.name)

    def evaluate(self, machine: str, ideal: float | None, inst: oee.ShiftInstance,
                 now_s: float) -> oee.OEEResult:
        """The machine's OEE over `inst` up to `now_s`: the kept result of the shift's settled
        past plus an evaluation of the time since (_Settled). Figures are sums over time and
        over the pieces of output (host/report/oee_rollup.py), so this equals one evaluation
        of the whole shift up to float rounding; anything that reaches back into the settled
        past (a late event, a reason, a stop's class changing) drops it. The time since is
        evaluated with the state intervals from _LOOKBACK_S (and the startup window) before
        the settled past's end, so a minute's work does not grow with the shift."""
        result = self.evaluate_within(machine, ideal, inst, now_s, math.inf)[0]
        assert result is not None
        return result

    def glance(self, machines: Iterable[tuple[str, float | None]], inst: oee.ShiftInstance,
               now_s: float) -> dict[str, oee.OEEResult]:
        """The live view's figures: evaluate for each (machine, ideal cycle), but without
        moving any settled past on (ticks do that, within their steps): the time since is
        evaluated in one piece, the same figure up to float rounding."""
        return {machine: self.evaluate_within(machine, ideal, inst, now_s, 0, True)[0]
                for machine, ideal in machines}

    def evaluate_within(self, machine: str, ideal: float | None, inst: oee.ShiftInstance,
                        now_s: float, max_steps: float,
                        behind_ok: bool = False) -> tuple[oee.OEEResult | None, int, int]:
        """evaluate, moving the settled past on by at most `max_steps` steps: (result, steps
        taken, units read: UNITS_PER_TICK). Where that does not catch up, the result is None,
        or with `behind_ok` the same figure up to float rounding (the rest evaluated in one
        piece), not to the last bit as the settled past would give it."""
        assert self.calendar is not None
        end = min(now_s, inst.end)
        s = self.settings
        tl = self.timeline(machine)
        ideal_s = ideal or 1.0
        key = (inst.start, inst.end, ideal_s)
        kept = self._settled.get(machine)
        # The counts after the settled past, made into CountEvents once per evaluation
        # (the timeline keeps them as columns).
        if kept is not None and kept.key == key and tl.touched >= kept.end and kept.end <= end:
            counts = tl.counts
            view = self._view(tl, counts, kept, end, ideal_s)
            if not (kept.fingerprint == view.fingerprint(kept.end, self._lookback_s)
                    and all(e >= kept.end for ts, e in view.early if ts > kept.end)):
                kept = None
        else:
            kept = None
        if kept is None:  # the whole shift is evaluated again
            kept = self._settled[machine] = _Settled(key, inst.start, None, inst.start)
            tl.unarchive()
            counts = tl.counts
            view = self._view(tl, counts, kept, end, ideal_s)
        tl.settled()

        def part(a: float, b: float, states: list[oee.StateInterval],
                 counts: list[oee.CountEvent]) -> oee.OEEResult:
            return oee.evaluate(states, counts, ideal_s, self.calendar, a, b, now=b,
                                machine=machine, short_stop_s=s.short_stop_s,
                                startup_window_s=s.startup_window_s,
                                planned_maintenance=s.planned_maintenance)

        walk = _Walk(view, counts, self._lookback_s)
        units = 1 + len(view.states) + len(counts)
        steps, caught_up = 0, False
        while steps < max_steps:  # the settled past moves on, a grid step at a time
            step = _settle_point(view, kept, end, walk)
            if step is None:
                caught_up = True
                break
            steps += 1
            grid, b = step
            if b > kept.end:
                mid = part(kept.end, b, walk.states_for(kept.end, b), walk.counts_in(kept.end, b))
                kept.result = mid if kept.result is None else oee.rollup([kept.result, mid],
                                                                         machine)
                kept.end = b
            kept.grid = grid
        if kept.end > inst.start:
            n = next((i for i, c in enumerate(counts) if c.ts >= kept.end), len(counts))
            tl.archive(n)
            counts = counts[n:]
            kept.fingerprint = view.fingerprint(kept.end, self._lookback_s)
        if not (caught_up or behind_ok or _settle_point(view, kept, end, walk) is None):
            return None, steps, units
        tail = part(kept.end, end, walk.states_for(kept.end, math.inf), counts)
        return (tail if kept.result is None else oee.rollup([kept.result, tail], machine),
                steps, units)

    @property
    def _lookback_s(self) -> float:
        return _LOOKBACK_S + self.settings.startup_window_s

    def _view(self, tl: MachineTimeline, counts: list[oee.CountEvent], kept: _Settled,
              end: float, ideal_s: float) -> _View:
        """The intervals and classes the time since the settled past needs, and when the
        output of each of its counts (`counts`: tl.counts) began: from the recent intervals,
        or from all of them when a count's output reaches back past the first of those."""
        s = self.settings
        states, cut = tl.intervals_since(kept.end - self._lookback_s, end)
        while True:
            states = checked_states(states, self.calendar)
            kinds, _ = classify(states, s.short_stop_s, s.planned_maintenance)
            look = _Timeline([(x.start, x.end) for x in states], kinds)
            early = [(c.ts, _earliest(look, c, ideal_s)) for c in counts]
            # (a count dated before the settled past's end adds nothing after it; one whose
            # output the intervals cannot place is put at its own time: -inf, below)
            if not cut or not states or all(e > states[0].start for ts, e in early
                                            if ts >= kept.end):
                return _View(states, kinds, [(ts, ts if e == -math.inf else e)
                                             for ts, e in early])
            states, cut = tl.intervals(end), False


@dataclass(slots=True)
class _View:
    """What ShiftOEE.evaluate reads of a timeline: intervals, their classes, and per count
    (in `counts` order) its time and when its output began."""

    states: list[oee.StateInterval]
    kinds: list
    early: list[tuple[float, float]]

    def fingerprint(self, end: float, lookback_s: float) -> tuple:
        """(start, min(end, the end), state, class) of the intervals before `end` and after
        `end - lookback_s`: a change there (a stop's class, a late lamp change) means the
        settled past is stale; earlier ones only change with an event dated before `end`."""
        lo = end - lookback_s
        return tuple((x.start, min(x.end, end), x.state, k)
                     for x, k in zip(self.states, self.kinds) if x.start < end and x.end > lo)


def _earliest(tl: _Timeline, c: oee.CountEvent, ideal_s: float) -> float:
    """When the output of count `c` began, as host/losses.attribute lays it out; -inf when
    the intervals place none of it (attribute then puts it at its own time: with fewer
    intervals that may differ)."""
    if c.start is None or c.start >= c.ts:
        return c.ts
    made = tl.made_in(c.start, c.ts, c.qty * ideal_s)
    span = sum(q - p for p, q, _ in made)
    return made[0][0] if span > 0 else -math.inf


def _settle_point(view: _View, kept: _Settled, end: float,
                  walk: _Walk) -> tuple[float, float] | None:
    """The next step of the settled past: (grid point, where it ends), or None (not yet).

    Steps are taken at fixed points of the shift (its start + k x _STEP_S), once that point
    is _SETTLED_S old and no stop still going began before it, and end at the latest count
    at or before it whose later counts' output all lies after it (so no count is split
    between two parts; where none qualifies, the step adds nothing). So where the settled
    past ends, and in which parts its result was summed, depends only on the events and the
    time, not on when evaluations ran: a journal imported or recomputed gives the same
    figures to the last bit as the collector that took the frames live.
    """
    grid = kept.grid + _STEP_S
    if grid > end - _SETTLED_S:
        return None
    states = view.states
    if states and states[-1].state in STOP_STATES:
        i = len(states) - 1
        while i > 0 and states[i - 1].state in STOP_STATES and states[i - 1].end == states[i].start:
            i -= 1
        if states[i].start < grid:
            return None  # a stop still going: its class is not known yet
    times, first_after = walk.times, walk.first_after
    lo = bisect_right(times, kept.end)  # the counts after the settled past
    target = grid
    while True:  # b moves back until no later count's output lies before it
        k = bisect_right(times, target)
        b = times[k - 1] if k > lo else target
        if b <= kept.end:
            return grid, kept.end
        first = first_after[bisect_right(times, b)]  # inf: no later count
        if first >= b:
            return grid, b
        target = first  # output made there was counted later (an NG in a stop, a burst)


class _Walk:
    """Indexes one evaluation's view for the steps of the settled past: each step is
    evaluated with only the intervals near it and its own counts, so a machine evaluated
    from the shift's start again (a restart, a late event) walks its steps in time linear in
    the shift, not quadratic (every step read every interval: 42 ms for 8 hours at 2-minute
    steps, 10.5 ms with this)."""

    def __init__(self, view: _View, counts: list[oee.CountEvent], lookback_s: float):
        self.view, self.lookback_s = view, lookback_s
        self.starts = [x.start for x in view.states]
        self._all = counts  # parallel to view.early
        self._by_time: list | None = None
        self._times: list[float] = []
        self._early: list[tuple[float, float]] = []
        self._first_after: list[float] = []

    def _index(self) -> None:
        """The counts by time, and the earliest start of output from each on (built once
        a step or a check needs them)."""
        early = self.view.early
        order = sorted(range(len(early)), key=lambda k: early[k][0])
        self._by_time = [self._all[k] for k in order]
        self._early = [early[k] for k in order]
        self._times = [ts for ts, _ in self._early]
        first, acc = [math.inf] * (len(order) + 1), math.inf
        for k in range(len(order) - 1, -1, -1):
            acc = min(acc, self._early[k][1])
            first[k] = acc
        self._first_after = first

    @property
    def times(self) -> list[float]:
        if self._by_time is None:
            self._index()
        return self._times

    @property
    def first_after(self) -> list[float]:
        """first_after[k]: the earliest start of output of the k-th count (by time) and
        those after it; inf past the last."""
        if self._by_time is None:
            self._index()
        return self._first_after

    def counts_in(self, a: float, b: float) -> list[oee.CountEvent]:
        """The counts dated in [a, b], in time order."""
        times = self.times
        return self._by_time[bisect_left(times, a):bisect_right(times, b)]

    def states_for(self, a: float, b: float) -> list:
        """The view's intervals a part [a, b] reads: from the one in effect _lookback_s
        before a (back to the start of its stop run: a stop is judged whole) to the last one
        starting at or before b (on to the end of its stop run). Left out are only intervals
        outside the part whose classes do not change with them (they add 0.0 to every sum,
        so the part is the same to the last bit), unless a count in it has output before the
        first of them: then all."""
        states, starts = self.view.states, self.starts
        n = len(states)
        i = max(0, bisect_right(starts, a - self.lookback_s) - 1)
        while i > 0 and states[i].state in STOP_STATES and states[i - 1].state in STOP_STATES:
            i -= 1
        j = bisect_right(starts, b)
        while 0 < j < n and states[j].state in STOP_STATES and states[j - 1].state in STOP_STATES:
            j += 1
        if i > 0:
            times = self.times
            k0, k1 = bisect_left(times, a), bisect_right(times, b)
            if any(e <= starts[i] for _, e in self._early[k0:k1]):
                i = 0
        return states[i:j] if i or j < n else states

"""Host monotonic time -> event time (UTC): mapped once, following wall-clock steps, never back.

The collector reads two clocks at each received chunk and each tick, through `HostClock.now`:
the wall clock (UTC, which NTP or a person may step) and a monotonic clock (which never
steps). Durations and order come from the monotonic clock: node uptime is anchored on it
(host/clock_anchor.py via host/derive.py). The event time of a monotonic instant `m` is
`m + D`, with D = wall - mono read once at start and changed only when the wall clock is
seen to move against the monotonic one:

- forward step (D grows by more than `step_s`): event time jumps with the wall clock. The
  skipped span held no real time: every machine is UNKNOWN across it (host/derive.py).
- backward step (D shrinks by more than `step_s`): following it at once would date new
  events before ones already journaled, and count output twice over the same hour. Event
  time stands still instead until the wall clock has caught up (as long as the step), then
  follows it again. Standing still, it creeps on by a millionth of real time (an hour: 3.6
  ms), so events of the pause keep their order and distinct times (InfluxDB keeps one point
  per series and time). Time in that pause has no place on the calendar: every machine is
  UNKNOWN from the step until its node's next data after the pause, so the output made in
  it is output in unknown time.
- smaller changes (NTP slewing) are followed once they reach `follow_s`; a backward one
  becomes a pause of its length, so event time never goes back.

Steps are logged and kept in `steps`; the deriver journals each as a `clock` event. After a
restart event time starts at the wall clock but never before the journal's last time
(`hold_from`): a wall clock that went back while the collector was down is a backward step.

Given the same callable as wall and monotonic clock (a test's or the demo's one clock), D is
0 and event time is that clock; if it goes back, that is a backward step like any other.
"""

from __future__ import annotations

import logging
import math
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ClockStep", "HostClock"]

log = logging.getLogger(__name__)

STEP_S = 1.0      # a change of wall - mono larger than this is a clock step
FOLLOW_S = 0.05   # smaller changes are followed once they add up to this
CREEP = 1e-6      # while event time stands still: its rate against real time
_SEGMENTS_KEPT = 64  # mapping segments kept for late frames (drift adds one every ~100 s)


@dataclass(frozen=True)
class ClockStep:
    """A wall-clock step seen at monotonic time `mono_s`.

    step_s: how far the wall clock moved (positive: forward). before_s: the event time at
    that instant on the old mapping; after_s: where event time follows the wall clock again
    (after the jump; for a backward step, after the pause, a few ms of creeping later).
    wall_s: the wall clock's new reading.
    """

    mono_s: float
    wall_s: float
    step_s: float
    before_s: float
    after_s: float


class HostClock:
    """The collector's clock: event times (epoch s UTC) from a wall and a monotonic clock.

    Args:
        wall: the wall clock (epoch seconds). mono: a monotonic clock (seconds).
        step_s: a larger change of wall - mono is a step (logged, `steps`).
        follow_s: smaller changes are followed once they reach this.
    """

    def __init__(self, wall: Callable[[], float] = time.time,
                 mono: Callable[[], float] = time.monotonic, *, step_s: float = STEP_S,
                 follow_s: float = FOLLOW_S):
        self.wall, self.mono = wall, mono
        self.step_s, self.follow_s = step_s, follow_s
        # (mono from, offset D, floor): event time of m is max(floor + CREEP x (m - mono
        # from), m + D) in its segment.
        self._segs: list[tuple[float, float, float]] = []
        self._starts: list[float] = []
        self._last_mono = -math.inf
        self._last = (math.nan, math.nan)  # (event time, mono) of the latest reading
        self._last_wall = math.nan
        self.steps: list[ClockStep] = []

    def now(self) -> float:
        """Read both clocks: the event time of now (never before an earlier reading)."""
        wall, mono = float(self.wall()), float(self.mono())
        mono = max(mono, self._last_mono)  # a "monotonic" clock that went back is held
        self._last_mono, self._last_wall = mono, wall
        segs = self._segs
        if segs:  # the usual reading: no step, in the newest segment (utc, inlined)
            m0, offset, floor = segs[-1]
            if abs(wall - mono - offset) < self.follow_s:
                label, creep = mono + offset, floor + CREEP * (mono - m0)
                label = max(label, creep)
                self._last = (label, mono)
                return label
        self._follow(wall, mono)
        label = self.utc(mono)
        self._last = (label, mono)
        return label

    def _follow(self, wall: float, mono: float) -> None:
        offset = wall - mono
        if not self._segs:
            self._push(mono, offset, -math.inf)
            return
        delta = offset - self._segs[-1][1]
        if abs(delta) < self.follow_s:
            return
        before = self.utc(mono)
        self._push(mono, offset, before)
        if abs(delta) > self.step_s:
            # where event time follows the wall clock again: at once when it jumped forward,
            # after the pause (crept through at CREEP) when it went back
            after = self.utc(mono) if delta > 0 else before - delta * CREEP
            self._stepped(ClockStep(mono, wall, delta, before, after))

    def _push(self, mono: float, offset: float, floor: float) -> None:
        self._segs.append((mono, offset, floor))
        self._starts.append(mono)
        if len(self._segs) > _SEGMENTS_KEPT:
            del self._segs[0], self._starts[0]

    def _stepped(self, step: ClockStep) -> None:
        self.steps.append(step)
        if step.step_s > 0:
            log.warning("host clock stepped forward by %.3f s: event time jumps from %s to %s; "
                        "the span between is unknown time", step.step_s, _iso(step.before_s),
                        _iso(step.after_s))
        else:
            log.warning("host clock stepped back by %.3f s: event time stands still at %s "
                        "until the wall clock catches up; output made meanwhile is output in "
                        "unknown time", -step.step_s, _iso(step.before_s))

    def hold_from(self, label: float) -> None:
        """Never issue an event time before `label` (the journal's last, after a restart).

        A wall clock behind it by more than `step_s` is a backward step (logged, `steps`).
        """
        now = self.now()
        if now >= label:
            return
        mono = self._last[1]
        self._push(mono, self._segs[-1][1], label)
        if label - now > self.step_s:
            self._stepped(ClockStep(mono, self._last_wall, now - label, label,
                                    label + (label - now) * CREEP))
        self._last = (label, mono)

    def utc(self, mono: float) -> float:
        """The event time (epoch s UTC) of monotonic time `mono`."""
        segs = self._segs
        if not segs:
            return mono
        m0, offset, floor = segs[-1]
        if mono < m0:
            i = bisect_right(self._starts, mono) - 1
            m0, offset, floor = segs[max(i, 0)]
            if i < 0:
                floor = -math.inf
        t, creep = mono + offset, floor + CREEP * (mono - m0)
        return max(t, creep)

    def mono_of(self, label: float) -> float:
        """The monotonic time of an event time: exact for the latest reading (the collector
        passes the deriver that one), else the mapping's inverse."""
        if label == self._last[0]:
            return self._last[1]
        segs = self._segs
        if not segs:
            return label
        for m0, offset, floor in reversed(segs):
            if max(floor, m0 + offset) <= label:
                if floor == -math.inf:
                    return label - offset
                # the inverse of max(m + D, floor + CREEP (m - m0)): the earlier crossing
                return min(label - offset, m0 + (label - floor) / CREEP)
        return label - segs[0][1]


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))

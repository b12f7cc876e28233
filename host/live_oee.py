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
from collections.abc import Iterable
from dataclasses import dataclass

from . import oee
from .events import Event
from .timeline import MachineTimeline, oee_data

__all__ = ["OEESettings", "ShiftOEE"]

log = logging.getLogger(__name__)

_PRUNE_MARGIN_S = 3600.0
_COALESCE_S = 60.0  # live count timeline: one GOOD and one NG entry per minute and state
_TIMELINE_KINDS = frozenset({"state", "count", "reason"})
_P_SLACK = 1e-9


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
        calendar: the shifts (None: timelines only, no `oee` events).
        settings: OEESettings.
    """

    def __init__(self, calendar: oee.Calendar | None, settings: OEESettings = OEESettings()):
        self.calendar, self.settings = calendar, settings
        self.timelines: dict[str, MachineTimeline] = {}
        self.shift: oee.ShiftInstance | None = None
        self._ended: oee.ShiftInstance | None = None  # ended, its final point still due
        self._last_s = -math.inf
        self._finals: set[tuple[str, float]] = set()  # (shift name, start) with a final
        self._warned: set[tuple[str, str, float]] = set()

    def timeline(self, machine: str) -> MachineTimeline:
        tl = self.timelines.get(machine)
        if tl is None:
            tl = self.timelines[machine] = MachineTimeline(machine, coalesce_s=_COALESCE_S)
        return tl

    def absorb(self, events: Iterable[Event]) -> None:
        """Take derived (or replayed) events into the machines' timelines."""
        timelines = self.timelines
        for ev in events:
            if ev.kind in _TIMELINE_KINDS and ev.machine is not None:
                (timelines.get(ev.machine) or self.timeline(ev.machine)).add(ev)
            elif ev.kind == "oee" and ev.data.get("final") and ev.data.get("shift_start_s"):
                self._finals.add((ev.data.get("shift"), float(ev.data["shift_start_s"])))

    def resume(self, latest_s: float, grace_s: float) -> None:
        """After a replay: the shift running at the journal's latest time, or one that had
        ended less than `grace_s` before it, still owes its final point, unless the journal
        has it."""
        if self.calendar is None:
            return
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
        if self.calendar is None:
            return []
        machines = list(machines)
        out: list[Event] = []
        if self.shift is not None and now_s >= self.shift.end:
            self._ended, self.shift = self.shift, None
        ended = self._ended
        if ended is not None and now_s >= ended.end + grace_s:
            if self._key(ended) not in self._finals:
                out += self._events(ended, ended.end, True, machines)
                self._finals.add(self._key(ended))
            self._ended = None
            self._prune()
        inst = self.calendar.shift_at(now_s)
        if inst is not None and inst != self.shift and self._key(inst) not in self._finals:
            self.shift = inst
            self._last_s = -math.inf
            self._prune()
        # The next shift's points wait for the ended one's final (dated at its end), so
        # `oee` events never go back in time.
        if (self.shift is not None and self._ended is None
                and now_s - self._last_s >= self.settings.interval_s):
            out += self._events(self.shift, now_s, False, machines)
            self._last_s = now_s
        return out

    def _prune(self) -> None:
        """Forget what no shift still to be evaluated needs."""
        starts = [i.start for i in (self.shift, self._ended) if i is not None]
        if starts:
            for tl in self.timelines.values():
                tl.prune(min(starts) - _PRUNE_MARGIN_S)

    def _events(self, inst: oee.ShiftInstance, at_s: float, final: bool,
                machines: list[tuple[int, str, float | None]]) -> list[Event]:
        out = []
        for node_id, machine, ideal in machines:
            result = self.evaluate(machine, ideal, inst, at_s)
            data = {"shift": inst.name, "shift_start_s": inst.start, "final": final}
            data.update(oee_data(result, bool(ideal)))
            self._check_performance(machine, inst, data["performance"])
            out.append(Event(at_s, "oee", node_id, machine, data))
        return out

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
        """The machine's OEE over `inst` up to `now_s`."""
        assert self.calendar is not None
        end = min(now_s, inst.end)
        s = self.settings
        return self.timeline(machine).evaluate(
            ideal, self.calendar, inst.start, inst.end, until_s=end, now=end,
            short_stop_s=s.short_stop_s, startup_window_s=s.startup_window_s,
            planned_maintenance=s.planned_maintenance)

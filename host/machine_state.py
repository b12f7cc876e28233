"""Tower lamp states -> machine state (RUN / IDLE / STOP / OFF / UNKNOWN), per machine; pure.

Lamp map
--------
A machine's lamp map is a small mapping of rules, in priority order (highest first)::

    {"red": "STOP", "yellow": "IDLE", "green": "RUN"}          # the default
    {"red": "STOP", "yellow": "IDLE", "blink:yellow": "STOP:setup", "green": "RUN"}

Keys name a lamp (green, yellow, red, blue, white), optionally prefixed: ``lamp`` matches
the lamp lit (ON or BLINK), ``on:lamp`` only steady, ``blink:lamp`` only blinking. Lamps
take priority in the order they first appear; for one lamp a prefixed rule beats the plain
one whatever their order. So in the second example a blinking yellow is STOP with the reason
"setup", a steady yellow is IDLE, and red beats both.

Values are a state (RUN, IDLE, STOP, OFF), optionally ``STATE:reason`` with a stop reason of
host/oee.py (setup, breakdown, ...), which then rides in the state event and feeds the six
big losses. The key ``none`` gives the state when no rule matches (default OFF), which is
"all lamps off" with the default map; lamps the map does not name are ignored.

Ordering rules (the timeline is append-only: a late frame never rewrites emitted history)
---------------------------------------------------------------------------------------
- Lamp changes are applied per lamp in order of the time they began: one older than the
  last change applied to that lamp is ignored (it was superseded), a duplicate is ignored.
- A machine state change is stamped with the lamp change's time, but never earlier than the
  previous state change: a late change of one lamp takes effect no earlier than what was
  already emitted.
- A heartbeat's lamp byte repairs a lamp whose LAMP frame was lost, at the heartbeat's time.
  The caller (host/derive.py) passes only a byte newer (by seq) than every LAMP frame and
  heartbeat of its boot already applied: the byte is what the node had classified when it
  sent it, so a late heartbeat may predate LAMP changes that began before its own time.
- Changes in one LAMP frame with the same began time are simultaneous: one state change.
- Silence makes the machine UNKNOWN from the time the caller gives (host/derive.py: last
  heard + the silence timeout; a host clock step); only data newer than that (a LAMP change
  or a heartbeat) ends UNKNOWN, from that data's time.

Lamp changes
------------
A tower lamp changes colour through a moment with every lamp off: green goes off 0.4-0.5 s
before red comes on. A change into "no rule matches" (with the default map: all off) is
therefore held for `lamp_change_s`: if a lamp that matches comes on within it, the gap was
part of the change and its time goes to the *new* state (a change is dated from the moment
the old lamp went off, when the machine stopped doing what that lamp said); otherwise the
machine entered the no-match state (OFF) when the last lamp went off. Without this, each
change would put a stop of half a second into the losses.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping

from .errors import ConfigError
from .events import Event
from .oee import REASONS
from .protocol import LAMP_NAMES, LAMP_STATES

DEFAULT_LAMP_MAP: dict[str, str] = {"red": "STOP", "yellow": "IDLE", "green": "RUN"}
MAPPED_STATES = ("RUN", "IDLE", "STOP", "OFF")
UNKNOWN = "UNKNOWN"
DEFAULT_LAMP_CHANGE_S = 1.0
_OFF, _ON, _BLINK = 0, 1, 2
_MODES = {"": (_ON, _BLINK), "on": (_ON,), "blink": (_BLINK,)}
_MEMO_MAX = 4 ** 5  # every combination of five lamps in OFF / ON / BLINK / unknown
# The trackers' lamp tuples, one object per combination (at most _MEMO_MAX): a tracker's own
# list and its lamp times as float objects took 94 bytes a machine more where one lamp had
# changed (tests/test_node_memory.py), by arithmetic ~200 where all five have.
_LAMPS: dict[tuple, tuple] = {}
_NO_LAMPS = (None,) * len(LAMP_NAMES)


def _target(value: str, key: str) -> tuple[str, str | None]:
    state, _, reason = str(value).partition(":")
    state = state.strip().upper()
    reason_or_none = reason.strip() or None
    if state not in MAPPED_STATES:
        raise ConfigError(f"lamp map {key!r}: state {value!r} is not one of "
                          f"{', '.join(MAPPED_STATES)}")
    if reason_or_none is not None and (reason_or_none not in REASONS or state == "RUN"):
        raise ConfigError(f"lamp map {key!r}: {value!r} needs a stop state and a reason "
                          f"among {', '.join(REASONS)}")
    return state, reason_or_none


class LampMap:
    """Compiled lamp map (module docstring). Raises ConfigError for an invalid one."""

    def __init__(self, rules: Mapping[str, str] | None = None):
        rules = DEFAULT_LAMP_MAP if rules is None else rules
        self.none: tuple[str, str | None] = ("OFF", None)
        order: list[int] = []
        by_lamp: dict[int, dict[int, tuple[str, str | None]]] = {}
        generic: dict[int, tuple[str, str | None]] = {}
        for key, value in rules.items():
            name = str(key).strip().lower()
            if name == "none":
                self.none = _target(value, key)
                continue
            mode, _, lamp = name.rpartition(":")
            if mode not in _MODES or lamp not in LAMP_NAMES:
                raise ConfigError(f"lamp map key {key!r}: expected a lamp "
                                  f"({', '.join(LAMP_NAMES)}), optionally 'on:' or 'blink:'")
            ch = LAMP_NAMES.index(lamp)
            if ch not in order:
                order.append(ch)
            target = _target(value, key)
            for st in _MODES[mode]:
                if mode:
                    by_lamp.setdefault(ch, {})[st] = target
                else:
                    generic[ch] = target
        self._rules = [(ch, {st: by_lamp.get(ch, {}).get(st, generic.get(ch))
                             for st in (_ON, _BLINK)}) for ch in order]
        # Lamp states -> target, filled as met: every heartbeat asks, and a machine shows
        # only a handful of lamp combinations (at most 4 ** 5 with None).
        self._memo: dict[tuple, tuple[str, str | None]] = {}

    def state(self, lamps: tuple[int | None, ...] | list[int | None]) -> tuple[str, str | None]:
        """(state, reason) for the five lamp states (0 OFF, 1 ON, 2 BLINK; None unknown=OFF)."""
        return self.match(lamps)[0]

    def match(self, lamps) -> tuple[tuple[str, str | None], bool]:
        """((state, reason), whether a rule matched: False means the `none` state)."""
        key = tuple(lamps)
        target = self._memo.get(key)
        if target is None:
            target = self._state(key)
            if len(self._memo) < _MEMO_MAX:
                self._memo[key] = target
        return target

    def _state(self, lamps: tuple[int | None, ...]) -> tuple[tuple[str, str | None], bool]:
        for ch, targets in self._rules:
            target = targets.get(lamps[ch] or _OFF)
            if target is not None:
                return target, True
        return self.none, False


class MachineTracker:
    """Lamp belief and emitted state of one machine; methods return the events to emit.

    lamp_change_s: how long a change into the no-match state is held (module docstring).
    """

    # one per machine (a collector may hold 10,000): no __dict__
    __slots__ = ("_dark_since", "_lamp_ts", "_unknown_until", "lamp_change_s", "lamp_map",
                 "lamps", "machine", "node_id", "reason", "since", "state")

    def __init__(self, machine: str, node_id: int, lamp_map: LampMap,
                 lamp_change_s: float = DEFAULT_LAMP_CHANGE_S):
        self.machine = machine
        self.node_id = node_id
        self.lamp_map = lamp_map
        self.lamp_change_s = lamp_change_s
        self.lamps: tuple[int | None, ...] = _NO_LAMPS  # shared: see _LAMPS
        self._lamp_ts = array("d", [float("-inf")]) * len(LAMP_NAMES)
        self.state: str | None = None
        self.reason: str | None = None
        self.since: float | None = None
        self._dark_since: float | None = None  # a change into the no-match state, held
        self._unknown_until = float("-inf")  # data up to this time does not end UNKNOWN

    def lamps_changed(self, changes: list[tuple[int, int, float]],
                      repaired: bool = False) -> list[Event]:
        """Apply lamp changes (channel, state, wall time), in order; changes that share a
        time are simultaneous, so the machine state settles once per distinct time."""
        out: list[Event] = []
        for k, (ch, st, ts) in enumerate(changes):
            out += self._lamp(ch, st, ts, repaired)
            if k + 1 == len(changes) or changes[k + 1][2] != ts:
                out += self.settle(ts)
        return out

    def heartbeat(self, lamps: tuple[int, ...], ts: float) -> list[Event]:
        """Repair lamps from a heartbeat's lamp byte, then settle the machine state.

        Only for a byte newer than every lamp information applied (module docstring); a
        stale heartbeat calls `settle` alone."""
        out: list[Event] = []
        if self.lamps != lamps:  # usually equal: no lamp to repair
            for ch, st in enumerate(lamps):
                if self.lamps[ch] != st and ts > self._lamp_ts[ch]:
                    out += self._lamp(ch, st, ts, repaired=True)
        return out + self.settle(ts)

    def _lamp(self, channel: int, state: int, ts: float, repaired: bool) -> list[Event]:
        if ts < self._lamp_ts[channel] or (ts == self._lamp_ts[channel]
                                           and self.lamps[channel] == state):
            return []
        out = []
        if self.lamps[channel] != state and not (self.lamps[channel] is None and state == _OFF):
            data = {"lamp": LAMP_NAMES[channel], "state": LAMP_STATES[state]}
            if repaired:
                data["repaired"] = True
            out.append(Event(ts, "lamp", self.node_id, self.machine, data))
        lamps = self.lamps[:channel] + (state,) + self.lamps[channel + 1:]
        self.lamps = _LAMPS.get(lamps) or (_LAMPS.setdefault(lamps, lamps)
                                           if len(_LAMPS) < _MEMO_MAX else lamps)
        self._lamp_ts[channel] = ts
        return out

    def settled(self) -> bool:
        """True when `settle` would emit and change nothing, at any time: no lamp-change gap
        held, and the lamps map to the emitted state (never UNKNOWN: data ends it)."""
        return (self._dark_since is None and self.state is not None and self.state != UNKNOWN
                and self.lamp_map.match(self.lamps)[0] == (self.state, self.reason))

    def settle(self, ts: float) -> list[Event]:
        """Emit a state change if the lamps now map to another state than the emitted one."""
        if self.state == UNKNOWN and self.since is not None and (
                ts <= self.since or ts <= self._unknown_until):
            return []  # data from before the silence (or from a clock pause) does not end it
        (state, reason), matched = self.lamp_map.match(self.lamps)
        dark = self._dark_since
        out: list[Event] = []
        if not matched:
            if (self.lamp_change_s > 0 and self.state is not None
                    and (state, reason) != (self.state, self.reason)):
                if dark is None:
                    dark = self._dark_since = ts
                if ts - dark < self.lamp_change_s:
                    return []  # perhaps the gap of a lamp change: wait for the next lamp
                ts = dark  # it was not: the machine went dark when the last lamp went off
        elif dark is not None:
            if ts - dark < self.lamp_change_s:
                ts = dark  # the gap was part of this change: its time goes to the new state
            else:  # dark for longer than a change: the no-match state came in between
                out.append(self._change(*self.lamp_map.none, dark))
        self._dark_since = None
        if state == self.state and reason == self.reason:
            return out
        return out + [self._change(state, reason, ts)]

    def silence(self, at_s: float, until_s: float | None = None) -> list[Event]:
        """The node went silent (or the host clock stepped): UNKNOWN from `at_s`, once, and
        until data made after `until_s` (default `at_s`; a clock step: where event time
        follows the wall clock again).

        A lamp-change gap still held becomes the no-match state first if it outlasted
        `lamp_change_s` before `at_s`.
        """
        if self.state in (None, UNKNOWN):
            return []
        out = self.settle(at_s) if self._dark_since is not None else []
        self._dark_since = None
        self._unknown_until = at_s if until_s is None else until_s
        return out + [self._change(UNKNOWN, None, at_s)]

    def restore(self, state: str, reason: str | None, since: float) -> None:
        """Take the emitted state from the journal (used when replaying after a restart)."""
        self.state, self.reason, self.since = state, reason, since
        self._dark_since = None
        self._unknown_until = float("-inf")

    def _change(self, state: str, reason: str | None, ts: float) -> Event:
        ts = ts if self.since is None else max(ts, self.since)
        data: dict = {"state": state, "prev": self.state}
        if reason is not None:
            data["reason"] = reason
        self.state, self.reason, self.since = state, reason, ts
        return Event(ts, "state", self.node_id, self.machine, data)

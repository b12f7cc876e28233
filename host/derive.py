"""Accepted frames -> derived events: clock anchoring, machine state, count deltas, OEE; pure.

The collector calls `Deriver.on_frame(frame, rx_s)` for every accepted frame and
`Deriver.tick(now_s)` about once a second, and writes the returned events to the journal in
the same transaction as the frame. Time is always passed in; nothing here reads a clock or
does I/O. Event shapes: docs/architecture.md ("Derived events").

Counts: per node and boot id the highest cumulative GOOD / NG seen (modulo 2**32) is kept; a
heartbeat contributes max(0, new - highest), so duplicates and reordered frames never count
twice, a new boot id starts from 0, and a late heartbeat of an earlier boot still adds to
that boot's total. A cumulative value "behind" the highest by the modular difference
(>= 2**31) is an older frame and adds nothing. A boot first seen mid-way (a collector with a
fresh journal) counts from 0: a count is never lost, at the price of one large delta.

Lamps: LAMP frames carry each change with the time it began; a heartbeat's lamp byte (the
node's classified states when it sent it) repairs a lost LAMP frame, but only when its seq is
higher than every frame of its boot whose lamps were applied (`on_frame` says why).

Restart: `replay(frames, events)` rebuilds the in-memory state from the journal without
emitting anything; see its docstring.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import oee
from .clock_anchor import AnchorFigures, ClockAnchor, NodeClock
from .events import Event
from .machine_state import LampMap, MachineTracker
from .protocol import COUNT_MOD, LAMP_NAMES, LAMP_STATES, Frame, Health, Heartbeat, Hello, Lamp
from .timeline import MachineTimeline, oee_data

__all__ = ["DeriveConfig", "Deriver", "DeriverProtocol", "Event", "MachineSnapshot",
           "NodeConfig", "NullDeriver"]

log = logging.getLogger(__name__)

_HALF = COUNT_MOD // 2
_SILENT_PERIODS = 3
_BOOTS_KEPT = 4
_PRUNE_MARGIN_S = 3600.0
_COALESCE_S = 60.0  # live count timeline: one GOOD and one NG entry per minute and state
_TIMELINE_KINDS = frozenset({"state", "count", "reason"})


@dataclass(frozen=True)
class NodeConfig:
    """What the deriver needs of one registry entry (the collector config may pass its own
    objects with these attributes)."""

    node_id: int
    machine: str
    ideal_cycle_s: float | None = None
    lamp_map: Mapping[str, str] | None = None


@dataclass(frozen=True)
class DeriveConfig:
    """What the deriver reads of the collector config; any object with these attributes does.

    nodes: node id -> NodeConfig (or an iterable of them). calendar: shifts for the live OEE
    (None: no `oee` events). heartbeat_s: heartbeat period assumed until a node's HELLO says
    otherwise. oee_interval_s: running-shift OEE refresh. short_stop_s: minor-stop threshold.
    """

    nodes: Mapping[int, Any] | Iterable[Any] = ()
    calendar: oee.Calendar | None = None
    heartbeat_s: float = 10.0
    oee_interval_s: float = 60.0
    short_stop_s: float = oee.DEFAULT_SHORT_STOP_S


@dataclass(frozen=True)
class MachineSnapshot:
    """Live view of one machine for the Andon board and the demo (times epoch s)."""

    machine: str
    node_id: int
    state: str | None
    reason: str | None
    since_s: float | None
    lamps: dict[str, str | None]
    last_heard_s: float | None
    silent: bool
    shift: str | None
    result: oee.OEEResult | None
    ideal_known: bool
    clock: AnchorFigures | None

    @property
    def good(self) -> float:
        return self.result.good if self.result else 0.0

    @property
    def ng(self) -> float:
        return self.result.ng if self.result else 0.0

    @property
    def coverage(self) -> float | None:
        return self.result.coverage if self.result else None

    def oee_data(self) -> dict:
        """A / P / Q / OEE, counts, coverage and losses as in an `oee` event ({} off shift)."""
        return oee_data(self.result, self.ideal_known) if self.result else {}


@dataclass
class _Node:
    cfg: Any
    tracker: MachineTracker
    clock: NodeClock
    heartbeat_s: float
    last_rx_s: float | None = None
    last_heard_s: float | None = None
    counts: OrderedDict[int, list[int]] = field(default_factory=OrderedDict)
    anchor: ClockAnchor | None = None  # of the newest frame, for the snapshot's figures
    # Per boot id: the highest seq of a frame whose lamp information was applied (a LAMP
    # frame or a heartbeat's lamp byte); see Deriver.on_frame. At most _BOOTS_KEPT boots.
    lamp_seq: dict[int, int] = field(default_factory=dict)


class DeriverProtocol(Protocol):
    """What the collector, the runtime, the board and the demo ask of a deriver.

    Every implementation implements all of it (Deriver, NullDeriver, test doubles), so
    callers never ask `hasattr`. Time is always passed in.
    """

    def on_frame(self, frame: Frame, rx_s: float) -> list[Event]:
        """Events derived from one accepted frame received at host time `rx_s`."""
        ...

    def tick(self, now_s: float) -> list[Event]:
        """Time-driven events (silence, the running shift's OEE), about once a second."""
        ...

    def snapshot(self, now_s: float) -> dict[str, MachineSnapshot]:
        """The live view per machine."""
        ...

    def replay(self, frames: Iterable[tuple[Frame, float]], events: Iterable[Event] = ()) -> None:
        """Rebuild memory from the journal after a restart, emitting nothing."""
        ...

    def add_reason(self, event: Event) -> None:
        """Take an operator's journaled `reason` event into the running shift's figures."""
        ...


class NullDeriver:
    """A deriver that derives nothing: frames are only journaled (benchmarks, tests)."""

    def on_frame(self, frame: Frame, rx_s: float) -> list[Event]:
        return []

    def tick(self, now_s: float) -> list[Event]:
        return []

    def snapshot(self, now_s: float) -> dict[str, MachineSnapshot]:
        return {}

    def replay(self, frames: Iterable[tuple[Frame, float]], events: Iterable[Event] = ()) -> None:
        return None

    def add_reason(self, event: Event) -> None:
        return None


def _with_hz(events: list[Event], changes: list[tuple[int, int, float]],
             body: Lamp) -> list[Event]:
    """Put the blink frequency the node measured (LAMP period) into its BLINK lamp events."""
    hz = {(ch, ts): ev.hz for (ch, _, ts), ev in zip(changes, body.events) if ev.hz}
    if hz:
        for e in events:
            if e.kind == "lamp" and e.data["state"] == "BLINK" and not e.data.get("repaired"):
                f = hz.get((LAMP_NAMES.index(e.data["lamp"]), e.ts_s))
                if f is not None:
                    e.data["hz"] = round(f, 3)
    return events


def _node_configs(nodes: Mapping[int, Any] | Iterable[Any]) -> dict[int, Any]:
    if isinstance(nodes, Mapping):
        return {int(k): v for k, v in nodes.items()}
    return {int(n.node_id): n for n in nodes}


class Deriver:
    """Per-node clock anchors, per-machine state and counts, and the running-shift OEE.

    Args:
        config: reads `nodes` (each with `machine`, and optionally `ideal_cycle_s`,
            `lamp_map` and `heartbeat_s`), `calendar`, and optionally `heartbeat_s`,
            `oee_interval_s` and `short_stop_s` (see DeriveConfig; host/config.Config fits).
            A node not in `nodes` is tracked as machine "node-<id>" with the default map.
    """

    def __init__(self, config: Any):
        self._cfgs = _node_configs(getattr(config, "nodes", ()))
        self._calendar: oee.Calendar | None = getattr(config, "calendar", None)
        self._heartbeat_s = float(getattr(config, "heartbeat_s", 10.0))
        self._oee_interval_s = float(getattr(config, "oee_interval_s", 60.0))
        self._short_stop_s = float(getattr(config, "short_stop_s", oee.DEFAULT_SHORT_STOP_S))
        self._nodes: dict[int, _Node] = {}
        self._timelines: dict[str, MachineTimeline] = {}
        self._shift: oee.ShiftInstance | None = None
        self._last_oee_s = -math.inf
        self._replaying = False
        for node_id in self._cfgs:
            self._node(node_id)

    # --- frames -------------------------------------------------------------------------

    def on_frame(self, frame: Frame, rx_s: float) -> list[Event]:
        """Events derived from one accepted frame received at host time `rx_s`."""
        h, body = frame.header, frame.body
        node = self._nodes.get(h.node_id) or self._node(h.node_id)
        if isinstance(body, Hello):
            node.clock.hello(h.boot_id, h.seq)
        anchor = node.clock.observe(h.boot_id, h.seq, h.uptime_ms, rx_s)
        ts = anchor.to_wall(h.uptime_ms)
        if node.last_rx_s is None or rx_s > node.last_rx_s:
            node.last_rx_s = rx_s
        if node.last_heard_s is None or ts >= node.last_heard_s:
            node.last_heard_s = ts
            node.anchor = anchor
        tr = node.tracker
        out: list[Event] = []
        if isinstance(body, Hello):
            node.heartbeat_s = body.heartbeat_ms / 1000.0
            out.append(Event(ts, "hello", h.node_id, tr.machine, {
                "boot_id": h.boot_id, "fw": ".".join(map(str, body.fw_version)),
                "reset_cause": body.reset_cause, "config_hash": body.config_hash.hex(),
                "heartbeat_ms": body.heartbeat_ms, "lamp_mask": body.lamp_mask}))
        elif isinstance(body, Heartbeat):  # the most frequent frame: tested first
            out += self._counts(node, h.boot_id, body, ts)
            # Its lamp byte is what the node had *classified* when it built the frame, and
            # ON / OFF take ~1.5 s to classify, so a change that began before the heartbeat's
            # uptime may only be in a LAMP frame built (and numbered) after it: time cannot
            # tell which is newer, seq can (frames are numbered as built; seq goes on across
            # soft and watchdog resets). A heartbeat older than a frame of its boot whose
            # lamps were applied (delayed, reordered, or lost and resent) is stale: applying
            # its byte as a repair would undo newer LAMP changes until the next heartbeat
            # (spurious lamp and state events), so only its counts apply. One newer than
            # every applied lamp frame still repairs a lost LAMP frame, as before.
            if self._newest_lamp_frame(node.lamp_seq, h.boot_id, h.seq):
                out += tr.heartbeat(body.lamps, ts)
            else:
                out += tr.settle(ts)
        elif isinstance(body, Lamp):
            # Always applied, late or not: each change carries the time it began, and the
            # tracker drops a change older than its lamp's last one (superseded, e.g. by a
            # heartbeat's repair). Only raises the boot's lamp seq for the rule above.
            self._newest_lamp_frame(node.lamp_seq, h.boot_id, h.seq)
            changes = [(ev.channel, ev.state, min(ts, anchor.to_wall(ev.uptime_ms)))
                       for ev in body.events]
            out += _with_hz(tr.lamps_changed(changes), changes, body)
        elif isinstance(body, Health):
            fig = anchor.figures()
            data = {
                "rssi": body.rssi, "free_heap": body.free_heap, "reconnects": body.reconnects,
                "frames_dropped": body.frames_dropped, "irq_resyncs": body.irq_resyncs,
                "events_dropped": body.events_dropped, "unacked": body.unacked,
                "boot_id": h.boot_id, "clock_offset_ms": round(fig.offset_ms, 3),
                "clock_uncertainty_ms": round(fig.uncertainty_ms, 3),
                "clock_drift_ppm": round(fig.drift_ppm, 3)}
            if body.short_pulses is not None:  # firmware 0.3+: how far the counts are proven
                data.update(edges_missed=body.edges_missed, short_pulses=body.short_pulses,
                            inferred_parts=body.inferred_parts,
                            lamp_frames_dropped=body.lamp_frames_dropped)
            out.append(Event(ts, "health", h.node_id, tr.machine, data))
        self._absorb(out)
        return out

    def _counts(self, node: _Node, boot_id: int, hb: Heartbeat, ts: float) -> list[Event]:
        counts = node.counts
        best = counts.get(boot_id)
        if best is None:  # the first heartbeat seen of this boot: it counted from 0
            best = counts[boot_id] = [hb.good, hb.ng]
            good, ng = hb.good, hb.ng
            while len(counts) > _BOOTS_KEPT:
                counts.popitem(last=False)
        else:
            # A delta "behind" the highest seen is an older or duplicated frame: 0.
            good = (hb.good - best[0]) % COUNT_MOD
            if good >= _HALF:
                good = 0
            ng = (hb.ng - best[1]) % COUNT_MOD
            if ng >= _HALF:
                ng = 0
            best[0] = (best[0] + good) % COUNT_MOD
            best[1] = (best[1] + ng) % COUNT_MOD
        counts.move_to_end(boot_id)
        if not (good or ng):
            return []
        return [Event(ts, "count", node.tracker.node_id, node.tracker.machine, {
            "good": good, "ng": ng, "good_total": best[0], "ng_total": best[1],
            "boot_id": boot_id})]

    @staticmethod
    def _newest_lamp_frame(seqs: dict[int, int], boot_id: int, seq: int) -> bool:
        """Record a lamp-bearing frame in a node's `lamp_seq`; True if it is the newest of
        its boot so far (a new boot makes room: the oldest boot seen goes)."""
        last = seqs.get(boot_id)
        if last is not None and seq <= last:
            return False
        if last is None:
            while len(seqs) >= _BOOTS_KEPT:
                del seqs[next(iter(seqs))]
        seqs[boot_id] = seq
        return True

    # --- time ---------------------------------------------------------------------------

    def tick(self, now_s: float) -> list[Event]:
        """Silence detection and the running shift's OEE (each `oee_interval_s`, final at end)."""
        out: list[Event] = []
        for node in self._nodes.values():
            if (node.last_rx_s is not None and node.last_heard_s is not None
                    and now_s - node.last_rx_s > _SILENT_PERIODS * node.heartbeat_s):
                out += node.tracker.silence(node.last_heard_s)
        self._absorb(out)
        oee_events = self._oee_tick(now_s) if self._calendar is not None else []
        return out + oee_events

    def _oee_tick(self, now_s: float) -> list[Event]:
        out: list[Event] = []
        cal = self._calendar
        assert cal is not None
        if self._shift is not None and now_s >= self._shift.end:
            out += self._oee_events(self._shift, self._shift.end, final=True)
            self._shift = None
        inst = cal.shift_at(now_s)
        if inst is not None and inst != self._shift:
            self._shift = inst
            self._last_oee_s = -math.inf
            for tl in self._timelines.values():
                tl.prune(inst.start - _PRUNE_MARGIN_S)
        if self._shift is not None and now_s - self._last_oee_s >= self._oee_interval_s:
            out += self._oee_events(self._shift, now_s, final=False)
            self._last_oee_s = now_s
        return out

    def _oee_events(self, inst: oee.ShiftInstance, at_s: float, final: bool) -> list[Event]:
        out = []
        for node in self._nodes.values():
            result, known = self._evaluate(node, inst, at_s)
            data = {"shift": inst.name, "shift_start_s": inst.start, "final": final}
            data.update(oee_data(result, known))
            out.append(Event(at_s, "oee", node.tracker.node_id, node.tracker.machine, data))
        return out

    def _evaluate(self, node: _Node, inst: oee.ShiftInstance,
                  now_s: float) -> tuple[oee.OEEResult, bool]:
        assert self._calendar is not None
        tl = self._timeline(node.tracker.machine)
        ideal = getattr(node.cfg, "ideal_cycle_s", None)
        end = min(now_s, inst.end)
        return tl.evaluate(ideal, self._calendar, inst.start, inst.end, until_s=end,
                           now=end, short_stop_s=self._short_stop_s), bool(ideal)

    # --- live view and operator input ---------------------------------------------------

    def snapshot(self, now_s: float) -> dict[str, MachineSnapshot]:
        """Per machine: state and since, lamps, last heard, and the running shift's OEE."""
        inst = self._calendar.shift_at(now_s) if self._calendar is not None else None
        out = {}
        for node in self._nodes.values():
            tr = node.tracker
            result, known = self._evaluate(node, inst, now_s) if inst else (None, False)
            silent = (node.last_rx_s is None
                      or now_s - node.last_rx_s > _SILENT_PERIODS * node.heartbeat_s)
            out[tr.machine] = MachineSnapshot(
                machine=tr.machine, node_id=tr.node_id, state=tr.state, reason=tr.reason,
                since_s=tr.since,
                lamps={name: None if st is None else LAMP_STATES[st]
                       for name, st in zip(LAMP_NAMES, tr.lamps)},
                last_heard_s=node.last_heard_s, silent=silent,
                shift=inst.name if inst else None, result=result, ideal_known=known,
                clock=node.anchor.figures() if node.anchor is not None else None)
        return out

    def add_reason(self, event: Event) -> None:
        """Take an operator's `reason` event (the board writes it to the journal) into the
        running shift's OEE."""
        self._absorb([event])

    # --- restart ------------------------------------------------------------------------

    def replay(self, frames: Iterable[tuple[Frame, float]], events: Iterable[Event] = ()) -> None:
        """Rebuild in-memory state after a restart, emitting nothing.

        Args:
            frames: (frame, rx_s) from the journal in id order, at least the last few
                heartbeat periods of every node (anchors, lamps, last heard, count maxima).
            events: the journal's events in id order since the start of the running shift
                (or earlier): they rebuild the shift timelines, raise the count maxima of
                boots whose frames are older than `frames`, and set each machine's emitted
                state to the journal's last one, so a silence already journaled as UNKNOWN
                is not emitted again.

        The frames go through `on_frame` in journal (= arrival) order, so each boot's lamp
        seq is rebuilt the same way: a stale heartbeat ignored live is ignored here too.
        (One at the very start of `frames` whose newer LAMP frame came just before it is
        applied, silently; the later heartbeats in the window set the lamps right again.)
        """
        self._replaying = True  # the frames' events are in `events` already
        try:
            for frame, rx_s in frames:
                self.on_frame(frame, rx_s)
        finally:
            self._replaying = False
        last_state: dict[str, Event] = {}
        latest_s = max((n.last_rx_s for n in self._nodes.values() if n.last_rx_s), default=None)
        for ev in events:
            self._absorb([ev])
            latest_s = ev.ts_s if latest_s is None else max(latest_s, ev.ts_s)
            if ev.kind == "state" and ev.machine is not None:
                last_state[ev.machine] = ev
            elif ev.kind == "count" and ev.node_id in self._nodes:
                self._seed_counts(self._nodes[ev.node_id], ev.data)
            elif ev.kind == "hello" and ev.node_id in self._nodes and ev.data.get("heartbeat_ms"):
                node = self._nodes[ev.node_id]
                if node.last_heard_s is None or ev.ts_s >= node.last_heard_s - 1.0:
                    node.heartbeat_s = ev.data["heartbeat_ms"] / 1000.0
        for node in self._nodes.values():
            ev = last_state.get(node.tracker.machine)
            if ev is not None:
                node.tracker.restore(ev.data["state"], ev.data.get("reason"), ev.ts_s)
        if self._calendar is not None and latest_s is not None:
            # The shift running when the collector stopped: its final event is still due.
            self._shift = self._calendar.shift_at(latest_s)

    def _seed_counts(self, node: _Node, data: Mapping) -> None:
        boot = data.get("boot_id")
        if boot is None:
            return
        totals = [int(data.get("good_total") or 0), int(data.get("ng_total") or 0)]
        best = node.counts.get(int(boot))
        if best is None:
            node.counts[int(boot)] = [v % COUNT_MOD for v in totals]
            return
        for i, value in enumerate(totals):
            if 0 < (value - best[i]) % COUNT_MOD < _HALF:
                best[i] = value % COUNT_MOD

    # --- helpers ------------------------------------------------------------------------

    def _node(self, node_id: int) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            cfg = self._cfgs.get(node_id) or NodeConfig(node_id, f"node-{node_id}")
            tracker = MachineTracker(cfg.machine, node_id,
                                     LampMap(getattr(cfg, "lamp_map", None)))
            heartbeat_s = float(getattr(cfg, "heartbeat_s", None) or self._heartbeat_s)
            node = self._nodes[node_id] = _Node(cfg, tracker, NodeClock(), heartbeat_s)
            self._timeline(cfg.machine)
        return node

    def _timeline(self, machine: str) -> MachineTimeline:
        tl = self._timelines.get(machine)
        if tl is None:
            tl = self._timelines[machine] = MachineTimeline(machine, coalesce_s=_COALESCE_S)
        return tl

    def _absorb(self, events: Iterable[Event]) -> None:
        if self._replaying:
            return
        for ev in events:
            if ev.kind in _TIMELINE_KINDS and ev.machine is not None:
                (self._timelines.get(ev.machine) or self._timeline(ev.machine)).add(ev)


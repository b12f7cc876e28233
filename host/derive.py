"""Accepted frames -> derived events: clock anchoring, machine state, count deltas, OEE; pure.

The collector calls `Deriver.on_frame(frame, rx_s)` for every accepted frame and
`Deriver.tick(now_s)` about once a second, and writes the returned events to the journal in
the same transaction as the frame. Time is always passed in; nothing here reads a clock or
does I/O. Event shapes: docs/architecture.md ("Derived events").

Time: host times come in as event times (epoch s UTC). With the collector's HostClock
(host/hostclock.py) node uptime is anchored on the host's *monotonic* time (`mono_of`) and
mapped back to event time (`utc`), so a wall-clock step never moves a node's anchor; each
step the clock saw is journaled as a `clock` event and makes every machine UNKNOWN from it
until its node's next data after it. Without a HostClock host times are used as they are.

Silence: a node not heard from for its silence timeout (3 heartbeat periods, by receive
time) makes its machine UNKNOWN from last heard + timeout, where last heard is when its
newest data was made (node time): the moment it became overdue. Only data made after that
ends UNKNOWN, at that data's own time, so frames a node resends from its outbox after an
outage end it where they belong. `tick` applies this rule, live and after a restart alike
(runtime.replay rebuilds each node's last heard from the journal), whatever the outage. A node
back from silence has 20 s to resend its outbox (a fresh frame may come before older ones);
its lamp information is held that long and applied in the order it was made (`drain` on a
clean stop; a crash inside that window loses the state changes held, not the frames).

Counts: host/boot_counts.py turns cumulative counts into deltas that never count twice;
each count event carries `since_s`, when its output began to be made.

Lamps: LAMP frames carry each change with the time it began; a heartbeat's lamp byte (the
node's classified states when it sent it) repairs a lost LAMP frame, but only when its seq is
higher than every frame of its boot whose lamps were applied (`on_frame` says why).

Restart: `replay(frames, events)` rebuilds the in-memory state from the journal without
emitting anything; see its docstring.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import oee
from .boot_counts import BootCounts
from .clock_anchor import AnchorFigures, ClockAnchor, NodeClock
from .derive_api import DeriveConfig, DeriverProtocol, MachineSnapshot, NodeConfig, NullDeriver
from .events import Event
from .hostclock import HostClock
from .live_oee import OEESettings, ShiftOEE
from .machine_state import DEFAULT_LAMP_CHANGE_S, LampMap, MachineTracker
from .protocol import (
    LAMP_NAMES,
    LAMP_STATES,
    T_HELLO,
    Frame,
    Header,
    Health,
    Heartbeat,
    Hello,
    Lamp,
)

__all__ = ["DeriveConfig", "Deriver", "DeriverProtocol", "Event", "MachineSnapshot",
           "NodeConfig", "NullDeriver"]

log = logging.getLogger(__name__)

_SILENT_PERIODS = 3
# A node back from silence resends its outbox within its longest retry delay (16 s, see
# firmware/outbox.py); its lamp information is applied in node-time order after this long.
_RESEND_S = 20.0  # (also measured by the node's own time: made at least this after)
_BOOTS_KEPT = 4


@dataclass(slots=True)  # one per node: 10,000 of them in a large plant
class _Node:
    cfg: Any
    tracker: MachineTracker
    clock: NodeClock
    heartbeat_s: float
    last_rx: float | None = None  # host monotonic time the newest frame arrived
    last_heard: float | None = None  # host monotonic time the newest data was made
    counts: BootCounts = field(default_factory=BootCounts)
    # Back from silence: lamp-bearing frames held until resend_until (Deriver._resent), and
    # the count events made meanwhile, for the live timeline.
    backlog: list | None = None
    resend_until: float = 0.0
    held: list | None = None
    anchor: ClockAnchor | None = None  # of the newest frame, for the snapshot's figures
    # Per boot: the highest seq of a frame whose lamp information was applied (a LAMP frame
    # or a heartbeat's lamp byte; see Deriver.on_frame), as boot id, seq, boot id, seq, ... in
    # the order the boots were first seen, at most _BOOTS_KEPT boots (a dict took ~220 bytes a
    # node, a list of one boot ~70).
    lamp_seq: list[int] = field(default_factory=list)
    # Set after a heartbeat of the node's newest boot (lamp_seq's last) left it settled:
    # (lamps, state, reason, since); a heartbeat of that boot matching it changes nothing
    # (Deriver._quiet). Any other frame clears it. (The boot is lamp_seq's: a copy of its id
    # here cost 8 bytes of tuple, and 32 more for the int where no other holder shared it;
    # estimated from the objects' sizes, not measured apart.)
    quiet: tuple | None = None


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


def _same(t: float) -> float:
    return t


class Deriver:
    """Per-node clock anchors, per-machine state and counts, and the running-shift OEE.

    Args:
        config: reads `nodes` (each with `machine`, and optionally `ideal_cycle_s`,
            `lamp_map` and `heartbeat_s`), `calendar`, and optionally `heartbeat_s`,
            `oee_interval_s`, `short_stop_s`, `startup_window_s`, `planned_maintenance` and
            `lamp_change_s` (see DeriveConfig; host/config.Config fits). A node not in
            `nodes` is tracked as machine "node-<id>" with the default map.
        host: the collector's HostClock (module docstring); None: host times are used as
            they come (tests and tools that pass wall times).
    """

    def __init__(self, config: Any, host: HostClock | None = None):
        self._heartbeat_s = float(getattr(config, "heartbeat_s", 10.0))
        self._lamp_change_s = float(getattr(config, "lamp_change_s", DEFAULT_LAMP_CHANGE_S))
        self._live = ShiftOEE(getattr(config, "calendar", None), OEESettings(
            interval_s=float(getattr(config, "oee_interval_s", 60.0)),
            short_stop_s=float(getattr(config, "short_stop_s", oee.DEFAULT_SHORT_STOP_S)),
            startup_window_s=float(getattr(config, "startup_window_s", 0.0)),
            planned_maintenance=getattr(config, "planned_maintenance", oee.DEFAULT_PM_POLICY)))
        self._host = host
        self._mono = host.mono_of if host is not None else _same
        self._utc = host.utc if host is not None else _same
        self._steps_seen = 0
        self._backlog_count = 0  # nodes back from silence, their resends held (_resent)
        self._nodes: dict[int, _Node] = {}
        self._machines: list[tuple[int, str, float | None]] | None = None  # for the live OEE
        self._grace_s: float | None = None  # _final_grace_s, kept (None: a node or period new)
        self._lamp_maps: dict[tuple | None, LampMap] = {}
        self._replaying = False
        # every configured node now (a node's config is its _Node's; a dict of them by id
        # besides took 0.3 MB at 10,000 nodes); a node not in the config, when first heard
        for node_id, cfg in _node_configs(getattr(config, "nodes", ())).items():
            self._node(node_id, cfg)

    # --- frames -------------------------------------------------------------------------

    def on_frame(self, frame: Frame, rx_s: float) -> list[Event]:
        """Events derived from one accepted frame received at host time `rx_s`."""
        h, body = frame.header, frame.body
        node = self._nodes.get(h.node_id)
        if node is None:
            return self._derive(frame, rx_s)
        if type(body) is not Heartbeat:
            node.quiet = None
            return self._derive(frame, rx_s)
        if node.quiet is not None:
            out = self._quiet(node, h, body, rx_s)
            if out is not None:
                return out
        node.quiet = None
        out = self._derive(frame, rx_s)
        tr, seqs = node.tracker, node.lamp_seq
        if (node.backlog is None and tr.lamps == body.lamps and seqs and seqs[-2] == h.boot_id
                and tr.settled()):
            node.quiet = (body.lamps, tr.state, tr.reason, tr.since)
        return out

    def _quiet(self, node: _Node, h: Any, body: Heartbeat, rx_s: float) -> list[Event] | None:
        """The fast path of a heartbeat that changes no lamp and no state (most of a plant's
        frames): the same boot (the newest), lamps and machine state as the node's last
        settled heartbeat, the node neither silent nor back from silence, no clock step.
        Does what `_derive` would (anchor, last heard, counts, the lamps' bookkeeping) and
        returns its events: none, or the count; None, having changed nothing: take
        `_derive`."""
        host = self._host
        tr = node.tracker
        boot_id = h.boot_id
        if ((host is not None and len(host.steps) > self._steps_seen)
                or node.quiet != (body.lamps, tr.state, tr.reason, tr.since)
                or node.backlog is not None):
            return None
        seqs = node.lamp_seq
        i = len(seqs) - 2
        if i < 0 or seqs[i] != boot_id:  # not the newest (quiet) boot's: the general path
            return None
        last_lamp_seq = seqs[i + 1]
        rx = self._mono(rx_s)
        if rx > node.last_rx:
            if rx - node.last_rx > _SILENT_PERIODS * node.heartbeat_s:
                return None
            node.last_rx = rx
        anchor = node.clock.observe(boot_id, h.seq, h.uptime_ms, rx)
        made = anchor.to_wall(h.uptime_ms)
        if made >= node.last_heard:
            node.last_heard = made
            node.anchor = anchor
        if h.seq > last_lamp_seq:  # a newer lamp byte, equal to the lamps: settle() is a no-op
            seqs[i + 1] = h.seq
        if node.counts.unchanged(boot_id, body.good, body.ng):
            node.counts.made(boot_id, made)  # a zero delta, without building one
            return []
        counts = self._counts(node, boot_id, body, made, self._utc(made), anchor)
        if counts:
            self._absorb(counts)
        return counts

    def _derive(self, frame: Frame, rx_s: float) -> list[Event]:
        """on_frame's general path."""
        out: list[Event] = []
        host = self._host
        if host is not None and len(host.steps) > self._steps_seen:
            self._take(out, self._clock_steps())
        h, body = frame.header, frame.body
        node = self._nodes.get(h.node_id) or self._node(h.node_id)
        if isinstance(body, Hello):
            node.clock.hello(h.boot_id, h.seq)
        rx = self._mono(rx_s)
        anchor = node.clock.observe(h.boot_id, h.seq, h.uptime_ms, rx)
        # h.boot_id as the int the node's clock keeps for it, the one stored with its counts
        # and lamp seqs too (each holder's own copy of the same id took 56 bytes more a node:
        # tracemalloc, 2,000 nodes in process)
        boot_id = node.clock.boot
        made = anchor.to_wall(h.uptime_ms)  # host monotonic time (the anchor's domain)
        utc = self._utc
        ts = utc(made)
        tr = node.tracker
        if node.last_rx is None or rx > node.last_rx:
            # Silent past its timeout before this frame came (a tick may not have run yet:
            # frames a node resends right after a restart): the same rule as `tick`, first.
            timeout = _SILENT_PERIODS * node.heartbeat_s
            if node.last_rx is not None and rx - node.last_rx > timeout:
                self._take(out, tr.silence(utc(node.last_heard + timeout)))
                if node.backlog is None:
                    self._backlog_count += 1
                node.backlog, node.resend_until = [], rx + _RESEND_S
            node.last_rx = rx
        if node.last_heard is None or made >= node.last_heard:
            node.last_heard = made
            node.anchor = anchor
        lamps = None  # (made at, seq, boot, body, changes) of a lamp-bearing frame
        if isinstance(body, Hello):
            node.heartbeat_s = body.heartbeat_ms / 1000.0
            self._grace_s = None
            out.append(Event(ts, "hello", h.node_id, tr.machine, {
                "boot_id": h.boot_id, "fw": ".".join(map(str, body.fw_version)),
                "reset_cause": body.reset_cause, "config_hash": body.config_hash.hex(),
                "heartbeat_ms": body.heartbeat_ms, "lamp_mask": body.lamp_mask}))
        elif isinstance(body, Heartbeat):  # the most frequent frame: tested first
            counts = self._counts(node, boot_id, body, made, ts, anchor)
            lamps = (ts, h.seq, boot_id, body, None)
            if counts and node.backlog is None and not out:  # the usual case, in one go
                new = counts + self._lamps(node, *lamps)
                self._absorb(new)
                return new
            self._take(out, counts)
        elif isinstance(body, Lamp):
            changes = [(ev.channel, ev.state, min(ts, utc(anchor.to_wall(ev.uptime_ms))))
                       for ev in body.events]
            lamps = (ts, h.seq, boot_id, body, changes)
        elif isinstance(body, Health):
            fig = self._figures(anchor)
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
        if lamps is not None:
            # held while the node (by our clock, or by its own: a simulated node may run
            # fast) has not had its 20 s to resend
            if (node.backlog is not None and rx < node.resend_until
                    and made < node.resend_until):
                node.backlog.append(lamps)  # back from silence: the resends may follow
            else:
                out += self._resent(node)
                self._take(out, self._lamps(node, *lamps))
        return out

    def _take(self, out: list[Event], events: list[Event]) -> None:
        """Add derived events to `out` and to the live timelines, each exactly once."""
        if events:
            self._absorb(events)
            out += events

    def _counts(self, node: _Node, boot_id: int, hb: Heartbeat, made: float, ts: float,
                anchor: ClockAnchor) -> list[Event]:
        d = node.counts.heartbeat(boot_id, hb.good, hb.ng, made, anchor.to_wall(0))
        if not (d.good or d.ng):
            return []
        tr = node.tracker
        return [Event(ts, "count", tr.node_id, tr.machine, {
            "good": d.good, "ng": d.ng, "good_total": d.good_total, "ng_total": d.ng_total,
            "boot_id": boot_id, "since_s": self._utc(d.since)})]

    def _lamps(self, node: _Node, ts: float, seq: int, boot_id: int, body: Heartbeat | Lamp,
               changes: list | None) -> list[Event]:
        """Apply a frame's lamp information to the machine's tracker."""
        tr = node.tracker
        if changes is None:  # a heartbeat's lamp byte
            # It is what the node had *classified* when it built the frame, and ON / OFF take
            # ~1.5 s to classify, so a change that began before the heartbeat's uptime may
            # only be in a LAMP frame built (and numbered) after it: time cannot tell which
            # is newer, seq can (frames are numbered as built; seq goes on across soft and
            # watchdog resets). A heartbeat older than a frame of its boot whose lamps were
            # applied (delayed, reordered, or lost and resent) is stale: applying its byte as
            # a repair would undo newer LAMP changes until the next heartbeat (spurious lamp
            # and state events), so only its counts apply. One newer than every applied lamp
            # frame still repairs a lost LAMP frame.
            if self._newest_lamp_frame(node.lamp_seq, boot_id, seq):
                return tr.heartbeat(body.lamps, ts)
            return tr.settle(ts)
        # A LAMP frame is always applied, late or not: each change carries the time it
        # began, and the tracker drops a change older than its lamp's last one (superseded,
        # e.g. by a heartbeat's repair). It only raises the boot's lamp seq for the rule above.
        self._newest_lamp_frame(node.lamp_seq, boot_id, seq)
        return _with_hz(tr.lamps_changed(changes), changes, body)

    def _resent(self, node: _Node) -> list[Event]:
        """The lamp information a node sent while coming back from silence, applied in the
        order it was made (its outbox resends oldest first, but a fresh frame is sent at
        once, while older ones wait up to 16 s for their retry: they must not be dated after
        it, nor end UNKNOWN after it)."""
        if node.backlog is None:
            return []
        backlog, node.backlog = sorted(node.backlog, key=lambda x: (x[0], x[1])), None
        self._backlog_count -= 1
        out: list[Event] = []
        for item in backlog:
            out += self._lamps(node, *item)
        self._absorb(out)  # the state changes first, then the counts held meanwhile
        held, node.held = node.held, None
        if held and not self._replaying:
            self._live.absorb(held)
        return out

    @staticmethod
    def _newest_lamp_frame(seqs: list[int], boot_id: int, seq: int) -> bool:
        """Record a lamp-bearing frame in a node's `lamp_seq`; True if it is the newest of
        its boot so far (a new boot makes room: the oldest boot seen goes)."""
        for i in range(len(seqs) - 2, -1, -2):  # the newest boot first: the usual one
            if seqs[i] == boot_id:
                if seq <= seqs[i + 1]:
                    return False
                seqs[i + 1] = seq
                return True
        if len(seqs) >= 2 * _BOOTS_KEPT:
            del seqs[:2]
        seqs += (boot_id, seq)
        return True

    # --- time ---------------------------------------------------------------------------

    def tick(self, now_s: float) -> list[Event]:
        """Clock steps, silence (module docstring) and the running shift's OEE."""
        out: list[Event] = []
        self._take(out, self._clock_steps())
        now = self._mono(now_s)
        for node in self._nodes.values():
            if node.backlog is not None and now >= node.resend_until:
                out += self._resent(node)
            timeout = _SILENT_PERIODS * node.heartbeat_s
            if (node.last_rx is not None and node.last_heard is not None
                    and now - node.last_rx > timeout):
                self._take(out, node.tracker.silence(self._utc(node.last_heard + timeout)))
        if not self._live.keeps:  # no shift ever runs: no list of machines to keep
            return out
        if self._machines is None:  # built again only when a node is added
            self._machines = [(n.tracker.node_id, n.tracker.machine,
                               getattr(n.cfg, "ideal_cycle_s", None))
                              for n in self._nodes.values()]
        return out + self._live.tick(now_s, self._machines, self._final_grace_s())

    def _final_grace_s(self) -> float:
        """How long a shift's final point waits for the heartbeat holding its last output
        (kept between ticks: the walk over 10,000 nodes took 0.25 ms a tick, ad hoc)."""
        if self._grace_s is None:
            self._grace_s = max((n.heartbeat_s for n in self._nodes.values()),
                                default=0.0) + 1.0
        return self._grace_s

    def _clock_steps(self) -> list[Event]:
        """A `clock` event for each wall-clock step the HostClock saw since the last call,
        and every machine UNKNOWN from it until its node's next data after it."""
        host = self._host
        if host is None or len(host.steps) <= self._steps_seen or self._replaying:
            return []
        out: list[Event] = []
        for step in host.steps[self._steps_seen:]:
            out.append(Event(step.before_s, "clock", None, None, {
                "step_s": round(step.step_s, 3), "wall_s": step.wall_s,
                "after_s": step.after_s}))
            for node in self._nodes.values():
                out += node.tracker.silence(step.before_s, step.after_s)
        self._steps_seen = len(host.steps)
        return out

    # --- live view and operator input ---------------------------------------------------

    def snapshot(self, now_s: float) -> dict[str, MachineSnapshot]:
        """Per machine: state and since, lamps, last heard, and the running shift's OEE."""
        cal = self._live.calendar
        inst = cal.shift_at(now_s) if cal is not None else None
        now = self._mono(now_s)
        out = {}
        nodes = [(n, getattr(n.cfg, "ideal_cycle_s", None)) for n in self._nodes.values()]
        results = self._live.glance(((n.tracker.machine, ideal) for n, ideal in nodes),
                                    inst, now_s) if inst else {}
        for node, ideal in nodes:
            tr = node.tracker
            result = results.get(tr.machine)
            silent = (node.last_rx is None
                      or now - node.last_rx > _SILENT_PERIODS * node.heartbeat_s)
            out[tr.machine] = MachineSnapshot(
                machine=tr.machine, node_id=tr.node_id, state=tr.state, reason=tr.reason,
                since_s=tr.since,
                lamps={name: None if st is None else LAMP_STATES[st]
                       for name, st in zip(LAMP_NAMES, tr.lamps)},
                last_heard_s=None if node.last_heard is None else self._utc(node.last_heard),
                silent=silent, shift=inst.name if inst else None, result=result,
                ideal_known=bool(ideal) and inst is not None,
                clock=self._figures(node.anchor) if node.anchor is not None else None)
        return out

    def _figures(self, anchor: ClockAnchor) -> AnchorFigures:
        """An anchor's figures with its offset (the node's boot) on UTC: the anchor runs on
        the host's monotonic clock, whose zero is the host's own boot."""
        fig = anchor.figures()
        return dataclasses.replace(fig, offset_ms=self._utc(fig.offset_ms / 1000.0) * 1000.0)

    def add_reason(self, event: Event) -> None:
        """Take an operator's `reason` event (the board writes it to the journal) into the
        running shift's OEE."""
        self._absorb([event])

    def drain(self, now_s: float) -> list[Event]:
        """The collector stops: the lamp information of nodes back from silence, held for
        their resends (`_resent`), applied now."""
        out: list[Event] = []
        for node in self._nodes.values():
            out += self._resent(node)
        return out

    # --- restart ------------------------------------------------------------------------

    def replay(self, frames: Iterable[tuple[Frame | Header, float]],
               events: Iterable[Event] = ()) -> None:
        """Rebuild in-memory state after a restart, emitting nothing.

        Args:
            frames: (frame, rx_s) from the journal in id order: at least each node's last
                frames before it was last heard (anchors, lamps, last heard, count maxima).
                A Header instead of a Frame: a frame only the node's clock anchor takes
                (`_clock_only`; runtime.replay sends the older part of each tail so).
            events: the journal's events in id order since the start of the running shift
                (or earlier): they rebuild the shift timelines, raise the count maxima of
                boots whose frames are older than `frames`, set each machine's emitted
                state to the journal's last one (a silence already journaled as UNKNOWN is
                not emitted again), and say which shifts have their final point.

        The frames go through `on_frame` in journal (= arrival) order, so each boot's lamp
        seq is rebuilt the same way: a stale heartbeat ignored live is ignored here too.
        (One at the very start of `frames` whose newer LAMP frame came just before it is
        applied, silently; the later heartbeats in the window set the lamps right again.)
        """
        self._replaying = True  # the frames' events are in `events` already
        try:
            for frame, rx_s in frames:
                if type(frame) is Header:
                    self._clock_only(frame, rx_s)
                else:
                    self.on_frame(frame, rx_s)
        finally:
            self._replaying = False
        last_state: dict[str, Event] = {}
        latest_s = max((self._utc(n.last_rx) for n in self._nodes.values()
                        if n.last_rx is not None), default=-math.inf)
        nodes = self._nodes
        # Taken into the timelines in chunks, in order (the loop below touches no timeline,
        # nor what _absorb holds back): a million or more events after a restart.
        chunk: list[Event] = []
        for ev in events:
            chunk.append(ev)
            if len(chunk) == 4096:
                self._absorb(chunk)
                chunk = []
            latest_s = max(latest_s, ev.ts_s)
            kind = ev.kind
            if kind == "count":
                if ev.node_id in nodes:
                    self._seed_counts(nodes[ev.node_id], ev)
            elif kind == "state":
                if ev.machine is not None:
                    last_state[ev.machine] = ev
            elif kind == "hello" and ev.node_id in nodes and ev.data.get("heartbeat_ms"):
                # the node's period until its next hello: the last one (in arrival order)
                # holds, however many frames came since
                nodes[ev.node_id].heartbeat_s = ev.data["heartbeat_ms"] / 1000.0
                self._grace_s = None
        self._absorb(chunk)
        for node in self._nodes.values():
            ev = last_state.get(node.tracker.machine)
            if ev is not None:
                node.tracker.restore(ev.data["state"], ev.data.get("reason"), ev.ts_s)
        if latest_s > -math.inf:
            self._live.resume(latest_s, self._final_grace_s())

    def _clock_only(self, h: Header, rx_s: float) -> None:
        """What `on_frame` gives a frame's clock anchor, and nothing else: a HELLO starts an
        epoch, and every frame is a sample (as in `_derive` and `_quiet`). A restart's older
        frames of each node's tail: their lamps, counts and silences are superseded by the
        newer frames' (runtime.replay), but the anchor keeps 30 minutes of minima."""
        clock = (self._nodes.get(h.node_id) or self._node(h.node_id)).clock
        if h.type == T_HELLO:
            clock.hello(h.boot_id, h.seq)
        clock.observe(h.boot_id, h.seq, h.uptime_ms, self._mono(rx_s))

    def _seed_counts(self, node: _Node, ev: Event) -> None:
        data = ev.data
        if data.get("boot_id") is not None:
            node.counts.seed(int(data["boot_id"]), int(data.get("good_total") or 0),
                             int(data.get("ng_total") or 0), self._mono(ev.ts_s))

    # --- helpers ------------------------------------------------------------------------

    def _node(self, node_id: int, cfg: Any = None) -> _Node:
        node = self._nodes.get(node_id)
        if node is None:
            cfg = cfg or NodeConfig(node_id, f"node-{node_id}")
            tracker = MachineTracker(cfg.machine, node_id,
                                     self._lamp_map(getattr(cfg, "lamp_map", None)),
                                     lamp_change_s=self._lamp_change_s)
            heartbeat_s = float(getattr(cfg, "heartbeat_s", None) or self._heartbeat_s)
            node = self._nodes[node_id] = _Node(cfg, tracker, NodeClock(), heartbeat_s)
            self._machines = self._grace_s = None
            self._live.expect(cfg.machine)
        return node

    def _lamp_map(self, rules: Mapping[str, str] | None) -> LampMap:
        """One compiled LampMap per distinct map, shared by its machines (it is pure; ~1 KB a
        node at 10,000 nodes, most of which share the default map)."""
        key = None if rules is None else tuple(rules.items())
        lamp_map = self._lamp_maps.get(key)
        if lamp_map is None:
            lamp_map = self._lamp_maps[key] = LampMap(rules)
        return lamp_map

    def _absorb(self, events: Iterable[Event]) -> None:
        """Take events into the live timelines. The counts of a node coming back from
        silence wait for its resent lamp information (`_resent`): counts merge per minute
        there, so they go in after the state changes dated before them."""
        if self._replaying:
            return
        if self._backlog_count:  # some node is back from silence (rare): hold its counts
            held = [e for e in events if e.kind == "count" and self._holding(e.node_id)]
            if held:
                node = self._nodes[held[0].node_id]
                node.held = (node.held or []) + held
                events = [e for e in events
                          if not (e.kind == "count" and self._holding(e.node_id))]
        self._live.absorb(events)

    def _holding(self, node_id: int | None) -> bool:
        node = self._nodes.get(node_id) if node_id is not None else None
        return node is not None and node.backlog is not None

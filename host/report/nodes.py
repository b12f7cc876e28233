"""`lampwatch nodes`: every node in the registry and every node heard, and what looks wrong.

`read_facts` gathers what the collector's journal knows per node (read-only, beside a
running collector); `node_rows` is pure: (registry nodes, journal facts, now_s) -> rows with
flags. A node silent for 3 heartbeat periods (its HELLO's, else the registry's) is UNKNOWN,
whatever state it last reported. Rejected frames are counted by the collector per source,
reason and the node the frame was verified as (docs/protocol.md, "Duplicates and replays"):
duplicates and replays go to their node; the rest (bad tag, unknown node, malformed) named
no node anyone could trust and are listed by source.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from ..protocol import LAMP_NAMES

if TYPE_CHECKING:  # read_facts only calls the reader it is given; the rest is pure
    from ..journal import JournalReader

__all__ = ["JournalFacts", "NodeFacts", "NodeRow", "UnknownSource", "format_table",
           "node_rows", "read_facts", "to_json"]

WEEK_S = 7 * 86400.0
STATE_WINDOW_S = 86400.0  # RUN time without a part is looked for within the last day
SILENT_PERIODS = 3  # as the collector: silent after 3 heartbeat periods
STUCK_MIN_S = 600.0  # RUN this long without a GOOD part: the counter looks stuck ...
STUCK_CYCLES = 20  # ... or this many ideal cycles, whichever is longer
STUCK_DEFAULT_S = 1800.0  # without an ideal cycle time


@dataclass
class NodeFacts:
    """What the journal says about one node (times epoch s)."""

    node_id: int
    machine: str | None = None
    first_rx_s: float | None = None
    last_rx_s: float | None = None
    sources: set[str] = field(default_factory=set)
    hello: dict | None = None
    health: dict | None = None
    states: list[tuple[float, str]] = field(default_factory=list)  # last one before the window
    lamp_state: dict[str, str] = field(default_factory=dict)  # each lamp's last state
    lamp_lit_s: dict[str, float] = field(default_factory=dict)  # last time it lit
    last_good_s: float | None = None


@dataclass
class JournalFacts:
    nodes: dict[int, NodeFacts] = field(default_factory=dict)
    # (source, reason, node id or 0, count, last time seen)
    rejects: list[tuple[str, str, int, int, float]] = field(default_factory=list)
    clock_steps: list[tuple[float, dict]] = field(default_factory=list)  # last week's

    def node(self, node_id: int) -> NodeFacts:
        return self.nodes.setdefault(node_id, NodeFacts(node_id))


def read_facts(journal: JournalReader, now_s: float) -> JournalFacts:
    """Per node: frames heard and their sources, last HELLO and HEALTH, states of the last
    day, each lamp's last state and last lit time, last GOOD part; and all reject counts.

    Raises JournalReadError if the journal cannot be read."""
    f = JournalFacts()
    for node, source, first, last in journal.frame_sources():
        n = f.node(node)
        n.sources.add(source)
        n.first_rx_s = first if n.first_rx_s is None else min(n.first_rx_s, first)
        n.last_rx_s = last if n.last_rx_s is None else max(n.last_rx_s, last)
    for node, machine, kind, data in journal.last_hello_and_health():
        n = f.node(node)
        n.machine = n.machine or machine
        setattr(n, kind, data)
    for node, ts, state in journal.states_since(now_s - STATE_WINDOW_S):
        f.node(node).states.append((ts, state))
    for node, lamp, state in journal.last_lamp_states():
        f.node(node).lamp_state[lamp] = state
    for node, lamp, ts in journal.last_lit():
        f.node(node).lamp_lit_s[lamp] = ts
    for node, ts in journal.last_good_part():
        f.node(node).last_good_s = ts
    f.rejects = [tuple(r) for r in journal.reject_counts()]
    f.clock_steps = journal.clock_steps(now_s - WEEK_S)
    return f


def clock_step_lines(facts: JournalFacts, tz: str = "UTC") -> list[str]:
    """One line per host clock step the collector saw in the last week (plant time)."""
    zone = ZoneInfo(tz)
    lines = []
    for ts, data in facts.clock_steps:
        step = float(data.get("step_s") or 0.0)
        when = datetime.fromtimestamp(ts, zone).strftime("%m-%d %H:%M:%S")
        lines.append((T_STEP_FORWARD if step > 0 else T_STEP_BACK).format(
            s=f"{abs(step):g}", when=when))
    return lines


@dataclass(frozen=True)
class NodeRow:
    node_id: int
    machine: str | None
    registered: bool
    state: str | None  # UNKNOWN while silent
    last_seen_s: float | None
    firmware: str | None
    rssi: int | None
    clock_offset_ms: float | None
    clock_uncertainty_ms: float | None
    frames_rejected: int  # replays and bad bodies under the node's valid tag
    frames_dropped: int | None
    commissioned: str | None
    flags: tuple[str, ...]
    silent_s: float | None = None  # how long it has been silent, when it is
    frames_duplicate: int = 0  # its own resends of frames stored already: harmless
    rejects: dict[str, int] = field(default_factory=dict)  # frames_rejected by reason
    last_rejected_s: float | None = None
    # from the last HEALTH of firmware 0.3+ (None before): LAMP frames among frames_dropped,
    # count pulses rejected as too short, parts counted by the line-rate rule across a stall,
    # count edges the IRQ path missed
    lamp_frames_dropped: int | None = None
    short_pulses: int | None = None
    inferred_parts: int | None = None
    edges_missed: int | None = None


@dataclass(frozen=True)
class UnknownSource:
    source: str
    rejects: dict[str, int]
    last_s: float


def _run_s_since(states: list[tuple[float, str]], t0: float, now_s: float) -> float:
    """Seconds in RUN between t0 and now_s, from (time, state) changes in time order."""
    total = 0.0
    for i, (ts, state) in enumerate(states):
        end = states[i + 1][0] if i + 1 < len(states) else now_s
        if state == "RUN":
            total += max(0.0, min(end, now_s) - max(ts, t0))
    return total


def _silent_s(cfg: Any, n: NodeFacts | None, now_s: float) -> float | None:
    """Seconds since the node was last heard, when that is 3 heartbeat periods or more."""
    if n is None or n.last_rx_s is None:
        return None
    hb_s = (n.hello or {}).get("heartbeat_ms", 0) / 1000.0 or getattr(
        cfg, "heartbeat_s", 10.0)
    quiet = now_s - n.last_rx_s
    return quiet if quiet > SILENT_PERIODS * hb_s else None


def _flags(cfg: Any, n: NodeFacts | None, now_s: float) -> list[str]:
    if cfg is None:
        return ["not in the registry"]
    out = [] if getattr(cfg, "commissioned", None) else ["never commissioned"]
    if n is None or n.last_rx_s is None:
        return ["never heard"] + out
    if _silent_s(cfg, n, now_s) is not None:
        out.insert(0, "silent")
        return out  # its inputs cannot be judged while nobody hears it
    if n.first_rx_s is not None and now_s - n.first_rx_s >= WEEK_S and n.hello:
        for i, lamp in enumerate(LAMP_NAMES):
            lit = n.lamp_state.get(lamp) in ("ON", "BLINK")
            if n.hello.get("lamp_mask", 0) & (1 << i) and not lit \
                    and now_s - n.lamp_lit_s.get(lamp, -WEEK_S) > WEEK_S:
                out.append(f"{lamp} lamp not seen lit in a week")
    ideal = getattr(cfg, "ideal_cycle_s", None)
    stuck_s = max(STUCK_MIN_S, STUCK_CYCLES * ideal) if ideal else STUCK_DEFAULT_S
    since = max(n.last_good_s or 0.0, now_s - STATE_WINDOW_S)
    run_s = _run_s_since(n.states, since, now_s)
    if run_s >= stuck_s:
        out.append(f"GOOD counter stuck: {run_s / 60:.0f} min RUN without a part")
    return out


def _health_flags(health: dict) -> list[str]:
    """What the node's own HEALTH says is wrong (firmware 0.3+), this boot."""
    out = []
    if health.get("lamp_frames_dropped"):
        out.append(T_LAMP_DROPPED.format(n=health["lamp_frames_dropped"]))
    if health.get("short_pulses"):
        out.append(T_SHORT.format(n=health["short_pulses"]))
    if health.get("inferred_parts"):
        out.append(T_INFERRED.format(n=health["inferred_parts"]))
    if health.get("edges_missed"):
        out.append(T_MISSED.format(n=health["edges_missed"]))
    return out


def node_rows(nodes: Mapping[int, Any], facts: JournalFacts,
              now_s: float) -> tuple[list[NodeRow], list[UnknownSource]]:
    """Rows for the registry's nodes and every node heard, by id; and unknown sources.

    Args:
        nodes: node id -> registry entry (host/config.Node: machine, heartbeat_s,
            ideal_cycle_s, commissioned).
        facts: read_facts of the journal. now_s: the time to judge silence and staleness at.
    """
    verified: dict[int, dict[str, int]] = {}
    last_rejected: dict[int, float] = {}
    unknown: dict[str, UnknownSource] = {}
    for source, reason, node_id, count, last_s in facts.rejects:
        if node_id:
            by_reason = verified.setdefault(node_id, {})
            by_reason[reason] = by_reason.get(reason, 0) + count
            if reason != "duplicate":
                last_rejected[node_id] = max(last_rejected.get(node_id, last_s), last_s)
            continue
        u = unknown.get(source) or UnknownSource(source, {}, last_s)
        u.rejects[reason] = u.rejects.get(reason, 0) + count
        unknown[source] = UnknownSource(source, u.rejects, max(u.last_s, last_s))
    rows = []
    for node_id in sorted(set(nodes) | {i for i, n in facts.nodes.items() if n.last_rx_s}):
        cfg, n = nodes.get(node_id), facts.nodes.get(node_id)
        health = (n.health if n else None) or {}
        state = n.states[-1][1] if n and n.states else None
        silent_s = _silent_s(cfg, n, now_s)
        if silent_s is not None:
            state = "UNKNOWN"  # what it said last is not what it does now
        by_reason = dict(verified.get(node_id, {}))
        duplicates = by_reason.pop("duplicate", 0)
        rows.append(NodeRow(
            node_id, cfg.machine if cfg else (n.machine if n else None), cfg is not None,
            state, n.last_rx_s if n else None, ((n.hello if n else None) or {}).get("fw"),
            health.get("rssi"), health.get("clock_offset_ms"),
            health.get("clock_uncertainty_ms"), sum(by_reason.values()),
            health.get("frames_dropped"), getattr(cfg, "commissioned", None),
            tuple(_flags(cfg, n, now_s) + _health_flags(health)), silent_s, duplicates,
            by_reason, last_rejected.get(node_id), health.get("lamp_frames_dropped"),
            health.get("short_pulses"), health.get("inferred_parts"),
            health.get("edges_missed")))
    return rows, sorted(unknown.values(), key=lambda u: u.source)


# What the table says (kept together, to be translated in one place).
T_HEAD = ("ID", "MACHINE", "STATE", "FW", "dBm", "BOOTED (±)", "DUP", "REJ", "DROP")
T_TITLE = "{n} node{s}; times in plant time, {tz}; now {now}"
T_SILENT = "silent since {since} ({age})"
T_REJECTED = "rejected: {what} (last {when})"
T_UNKNOWN = "Rejected frames that name no node they could be verified as, by source:"
T_UNKNOWN_ROW = "  {source}: {what} (last {when})"
T_LAMP_DROPPED = "{n} LAMP frames dropped: lamp history has gaps"
T_SHORT = "{n} count pulses rejected as too short"
T_INFERRED = "{n} parts counted across a stall by the line-rate rule"
T_MISSED = "{n} count edges the IRQ path missed (the pulse counter has them)"
T_STEP_FORWARD = "Host clock stepped forward by {s} s at {when} (event time jumped)"
T_STEP_BACK = "Host clock stepped back by {s} s at {when} (event time stood still)"
T_FOOT = "DUP: its resends of frames stored already (harmless); REJ: replays and forgeries"
_MACHINE_W = 12  # longer machine names end in an ellipsis (--format json has them whole)


def _age(seconds: float) -> str:
    """22h, 59m, 45s, 3d: how long, in its largest unit."""
    d = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if d >= size:
            return f"{d // size:.0f}{unit}"
    return f"{d:.0f}s"


def _clock(ts_s: float | None, zone: ZoneInfo) -> str:
    return "-" if ts_s is None else datetime.fromtimestamp(ts_s, zone).strftime("%m-%d %H:%M")


def _uncertainty(ms: float | None) -> str:
    if ms is None:
        return ""
    return f" ±{ms / 1000:.0f}s" if ms >= 1000 else f" ±{ms:.0f}ms"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def format_table(rows: list[NodeRow], unknown: list[UnknownSource], now_s: float,
                 tz: str = "UTC") -> str:
    """The table within 80 columns, times in the plant's time zone `tz`; under a node, what
    looks wrong about it."""
    zone = ZoneInfo(tz)
    table = [T_HEAD]
    notes: list[list[str]] = []
    for r in rows:
        state = r.state or "-"
        if r.silent_s is not None:
            state = f"UNKNOWN {_age(r.silent_s)}"
        booted = "-"
        if r.clock_offset_ms is not None:
            booted = _clock(r.clock_offset_ms / 1000, zone) + _uncertainty(
                r.clock_uncertainty_ms)
        table.append((str(r.node_id), _cut(r.machine or "?", _MACHINE_W), state,
                      r.firmware or "-", "-" if r.rssi is None else str(r.rssi), booted,
                      str(r.frames_duplicate), str(r.frames_rejected),
                      "-" if r.frames_dropped is None else str(r.frames_dropped)))
        flags = [T_SILENT.format(since=_clock(r.last_seen_s, zone), age=_age(r.silent_s))
                 if f == "silent" and r.silent_s is not None else f for f in r.flags]
        if r.rejects:
            what = ", ".join(f"{k} {v}" for k, v in sorted(r.rejects.items()))
            flags.append(T_REJECTED.format(what=what, when=_clock(r.last_rejected_s, zone)))
        notes.append(flags)
    widths = [max(len(row[i]) for row in table) for i in range(len(T_HEAD))]
    right = (0, 4, 6, 7, 8)  # numbers

    def fmt(row) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    pad = " " * (widths[0] + 2)
    lines = [T_TITLE.format(n=len(rows), s="" if len(rows) == 1 else "s", tz=tz,
                            now=_clock(now_s, zone)), "", fmt(T_HEAD)]
    for row, flags in zip(table[1:], notes):
        lines.append(fmt(row))
        if flags:
            lines += textwrap.wrap("; ".join(flags), 80, initial_indent=pad,
                                   subsequent_indent=pad, break_on_hyphens=False)
    lines += ["", T_FOOT]
    if unknown:
        lines += ["", T_UNKNOWN]
        lines += [T_UNKNOWN_ROW.format(
            source=u.source, what=", ".join(f"{k} {v}" for k, v in sorted(u.rejects.items())),
            when=_clock(u.last_s, zone)) for u in unknown]
    return "\n".join(lines)


def to_json(rows: list[NodeRow], unknown: list[UnknownSource], now_s: float) -> dict:
    return {"now_s": now_s, "nodes": [dict(asdict(r), flags=list(r.flags)) for r in rows],
            "unknown_sources": [asdict(u) for u in unknown]}

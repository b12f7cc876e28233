"""`lampwatch nodes`: every node in the registry and every node heard, and what looks wrong.

`read_facts` gathers what the collector's journal knows per node (read-only, beside a
running collector); `node_rows` is pure: (registry nodes, journal facts, now_s) -> rows with
flags. Rejected frames are not journaled, only counted per source (a UDP address, a serial
port) and reason, so a rejected frame is tied to a node only through an address that node's
accepted frames came from (never an unknown_node one); other sources are listed as unknown,
with no node id: the rejects table does not keep one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

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
    rejects: list[tuple[str, str, int, float]] = field(default_factory=list)
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


def clock_step_lines(facts: JournalFacts) -> list[str]:
    """One line per host clock step the collector saw in the last week."""
    lines = []
    for ts, data in facts.clock_steps:
        step = float(data.get("step_s") or 0.0)
        when = datetime.fromtimestamp(ts).strftime("%m-%d %H:%M:%S")
        lines.append(f"Host clock stepped {'forward' if step > 0 else 'back'} by {abs(step):g} s"
                     f" at {when} (event time {'jumped' if step > 0 else 'stood still'})")
    return lines


@dataclass(frozen=True)
class NodeRow:
    node_id: int
    machine: str | None
    registered: bool
    state: str | None
    last_seen_s: float | None
    firmware: str | None
    rssi: int | None
    clock_offset_ms: float | None
    clock_uncertainty_ms: float | None
    frames_rejected: int
    frames_dropped: int | None
    commissioned: str | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class UnknownSource:
    source: str
    rejects: dict[str, int]
    last_s: float


def reject_source(source: str) -> str:
    """The name rejects are counted under for a frame source: UDP counts per address
    (`udp:ip`, as host/sources/udp.py does), not per port; serial per port as it is."""
    return source.rsplit(":", 1)[0] if source.startswith("udp:") else source


def _run_s_since(states: list[tuple[float, str]], t0: float, now_s: float) -> float:
    """Seconds in RUN between t0 and now_s, from (time, state) changes in time order."""
    total = 0.0
    for i, (ts, state) in enumerate(states):
        end = states[i + 1][0] if i + 1 < len(states) else now_s
        if state == "RUN":
            total += max(0.0, min(end, now_s) - max(ts, t0))
    return total


def _flags(cfg: Any, n: NodeFacts | None, now_s: float) -> list[str]:
    if cfg is None:
        return ["not in the registry"]
    out = [] if getattr(cfg, "commissioned", None) else ["never commissioned"]
    if n is None or n.last_rx_s is None:
        return ["never heard"] + out
    hb_s = (n.hello or {}).get("heartbeat_ms", 0) / 1000.0 or cfg.heartbeat_s
    if now_s - n.last_rx_s > SILENT_PERIODS * hb_s:
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


def node_rows(nodes: Mapping[int, Any], facts: JournalFacts,
              now_s: float) -> tuple[list[NodeRow], list[UnknownSource]]:
    """Rows for the registry's nodes and every node heard, by id; and unknown sources.

    Args:
        nodes: node id -> registry entry (host/config.Node: machine, heartbeat_s,
            ideal_cycle_s, commissioned).
        facts: read_facts of the journal. now_s: the time to judge silence and staleness at.
    """
    owner: dict[str, set[int]] = {}
    for n in facts.nodes.values():
        for s in n.sources:
            owner.setdefault(reject_source(s), set()).add(n.node_id)
    rejected: dict[int, int] = {}
    unknown: dict[str, UnknownSource] = {}
    for source, reason, count, last_s in facts.rejects:
        ids = owner.get(source, set()) if reason != "unknown_node" else set()
        # A source shared by several nodes cannot say whose frame it was; an unknown_node
        # frame is no registered node's, even from a registered node's address.
        if len(ids) == 1:
            (node_id,) = ids
            rejected[node_id] = rejected.get(node_id, 0) + count
        else:
            u = unknown.get(source) or UnknownSource(source, {}, last_s)
            u.rejects[reason] = u.rejects.get(reason, 0) + count
            unknown[source] = UnknownSource(source, u.rejects, max(u.last_s, last_s))
    rows = []
    for node_id in sorted(set(nodes) | {i for i, n in facts.nodes.items() if n.last_rx_s}):
        cfg, n = nodes.get(node_id), facts.nodes.get(node_id)
        health = (n.health if n else None) or {}
        state = n.states[-1][1] if n and n.states else None
        rows.append(NodeRow(
            node_id, cfg.machine if cfg else (n.machine if n else None), cfg is not None,
            state, n.last_rx_s if n else None, ((n.hello if n else None) or {}).get("fw"),
            health.get("rssi"), health.get("clock_offset_ms"),
            health.get("clock_uncertainty_ms"), rejected.get(node_id, 0),
            health.get("frames_dropped"), getattr(cfg, "commissioned", None),
            tuple(_flags(cfg, n, now_s))))
    return rows, sorted(unknown.values(), key=lambda u: u.source)


def _age(s: float | None, now_s: float) -> str:
    if s is None:
        return "never"
    d = max(0.0, now_s - s)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if d >= size:
            return f"{d / size:.0f} {unit} ago"
    return f"{d:.0f} s ago"


def format_table(rows: list[NodeRow], unknown: list[UnknownSource], now_s: float) -> str:
    """The plain-text table; the clock column shows when the node's boot began (offset)."""
    head = ("ID", "MACHINE", "STATE", "LAST SEEN", "FW", "RSSI", "CLOCK (boot at)", "REJ/DROP",
            "COMM.", "FLAGS")
    table = [head]
    for r in rows:
        clock = "-"
        if r.clock_offset_ms is not None:
            boot = datetime.fromtimestamp(r.clock_offset_ms / 1000).strftime("%m-%d %H:%M:%S")
            clock = f"{boot} ±{r.clock_uncertainty_ms or 0:g} ms"
        table.append((str(r.node_id), r.machine or "?", r.state or "-",
                      _age(r.last_seen_s, now_s), r.firmware or "-",
                      "-" if r.rssi is None else f"{r.rssi} dBm", clock,
                      f"{r.frames_rejected}/{'-' if r.frames_dropped is None else r.frames_dropped}",
                      "yes" if r.commissioned else "no", "; ".join(r.flags) or "ok"))
    widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1]
             for row in table]
    if unknown:
        lines += ["", "Rejected frames from sources no accepted frame came from (node unknown):"]
        lines += [f"  {u.source}: " + ", ".join(f"{k} {v}" for k, v in sorted(u.rejects.items()))
                  + f" (last {_age(u.last_s, now_s)})" for u in unknown]
    return "\n".join(line.rstrip() for line in lines)


def to_json(rows: list[NodeRow], unknown: list[UnknownSource], now_s: float) -> dict:
    return {"now_s": now_s, "nodes": [dict(asdict(r), flags=list(r.flags)) for r in rows],
            "unknown_sources": [asdict(u) for u in unknown]}

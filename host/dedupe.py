"""Dedupe: which (node, boot, seq) are stored, and whether a frame stored already is the
node's own resend (a duplicate, harmless) or a replay; the rules are in docs/protocol.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ProtocolError

if TYPE_CHECKING:
    from .journal import Journal
    from .protocol import Header

__all__ = ["RETRANSMIT_WINDOW_S", "SeenWindow", "stored_again"]

# A node resends an unACKed frame with backoff up to 16 s (firmware/outbox.py) and stops at
# its ACK. A stored frame that comes again within this long (host time) of the collector
# ACKing it is the node's resend: 10 minutes is ~37 lost ACKs in a row, and in the demo at
# 240x it still allows the collector a 2.5 s stall.
RETRANSMIT_WINDOW_S = 600.0


def stored_again(header: Header, raw: bytes, stored: tuple[bytes, float] | None,
                 pending: bool, newest: tuple[int, int], rx_s: float,
                 acks_resumed_s: float) -> ProtocolError:
    """Classify a verified frame whose (node, boot, seq) is stored (or batched) already.

    Args:
        header, raw: the frame as it arrived, at `rx_s`. stored: the kept copy's (bytes,
            receive time), None if not found. pending: that copy is in a batch not yet
            committed, so not yet ACKed. newest: (boot_id, uptime_ms) of the node's newest
            frame (its boot, the uptime of that boot's highest seq: the journal's `heard`
            row with the batch's frames). acks_resumed_s: when the collector started, or
            its commits worked again after failing (frames committed then were ACKed only
            then).
    Returns:
        ProtocolError "duplicate": the same bytes, not ACKed yet or within
        RETRANSMIT_WINDOW_S of its ACK, the node not restarted since; else "replay": other
        bytes under a valid tag, or the same bytes after the node restarted or long after
        any resend.
    """
    what = f"frame {header.boot_id:08x}/{header.seq} of node {header.node_id}"
    if stored is not None and stored[0] != raw:
        return ProtocolError("replay", f"{what} differs from the stored one under a valid tag: "
                             "the node's key is elsewhere, or it reused a seq")
    boot_id, uptime_ms = newest
    if uptime_ms < header.uptime_ms and boot_id != header.boot_id:
        # a new boot whose uptime is lower: a power-up, which empties the node's outbox
        return ProtocolError("replay", f"{what} came again after the node restarted")
    if stored is not None and not pending:
        acked_s = max(stored[1], acks_resumed_s)
        if rx_s - acked_s > RETRANSMIT_WINDOW_S:
            return ProtocolError("replay", f"{what} came again {rx_s - acked_s:.0f} s after "
                                 "its ACK, long after any resend")
    return ProtocolError("duplicate", f"{what} resent (its ACK was late or lost)")


# A boot whose numbers have no gap, in `SeenWindow._boots`: one int, low << _RUN | (high + 1)
# (seq is 32 bits, so high + 1 fits in _RUN bits). With the int key: 115 bytes a boot in all
# where a tuple key and a list of [high, low, None] took 213 (tests/test_dedupe.py).
_RUN = 33
_TOP = (1 << _RUN) - 1


def _run(low: int, high: int) -> int:
    """The packed run of every number from `low` to `high` (high = low - 1: none yet)."""
    return low << _RUN | (high + 1)


class SeenWindow:
    """Which (node, boot, seq) are stored: recent sequence numbers per boot in memory, the
    journal's UNIQUE index behind them.

    Per (node, boot) the numbers within `span` of the highest are known in memory; a miss
    below that, or on a boot not in memory (after a restart), asks the journal. A boot whose
    numbers have no gap from `low` to the highest (a node whose frames all arrived: nearly
    every boot, nearly always) keeps only those two numbers, packed in one int; a gap within
    the span brings a bitmap (bit i: highest - i, about 300 bytes at the default span),
    dropped again once the gap has left the span. Numbers accepted since the last commit
    are also kept in a set until `prune` (after the commit), so a number that leaves the
    span before its frame is stored is still known: a miss in memory is exact. Both `add`
    and `prune` cost O(1) per frame, whatever the number of boots. Node ids are 16 bits,
    boot ids and sequence numbers 32 (the protocol's): a (node, boot) is keyed by one int
    (a tuple and its boot id took ~90 bytes a node), a (node, boot, seq) by another.
    """

    def __init__(self, journal: Journal, span: int = 2048, max_boots: int = 50_000):
        self._journal, self._span, self._max_boots = journal, span, max_boots
        self._full = (1 << (span + 1)) - 1  # the bits of highest - span .. highest
        # node << 32 | boot -> a run (an int: every number from low to the highest is known;
        # see _RUN) or [highest, bitmap] (a bitmap took ~300 bytes a node at 1 frame/s, 3 MB
        # at 10,000)
        self._boots: dict[int, int | list[int]] = {}
        self._uncommitted: set[int] = set()  # node << 64 | boot << 32 | seq, since the prune

    def add(self, node_id: int, boot_id: int, seq: int) -> bool:
        """Mark as seen; False if it already was (a duplicate)."""
        key = node_id << 32 | boot_id
        boots = self._boots
        entry = boots.get(key)
        if entry is None:
            entry = boots[key] = self._seed(node_id, boot_id, seq)
        span = self._span
        if type(entry) is int:
            top = entry & _TOP
            if seq == top:  # the usual frame: the run goes on
                boots[key] = entry + 1
                self._uncommitted.add(key << 32 | seq)
                return True
            high, low = top - 1, entry >> _RUN
            if seq <= high and high - seq > span:
                return self._below(key, node_id, boot_id, seq)
            if low <= seq <= high:
                return False
            # a gap within the span (seq past the run's end, or below its start): as bits
            entry = boots[key] = [high, self._full >> max(0, span - (high - low))]
        high, bits = entry
        if seq > high:
            bits = ((bits << (seq - high)) | 1) & self._full
            if bits == self._full:  # no gap left in the span
                boots[key] = _run(seq - span, seq)
            else:
                entry[0], entry[1] = seq, bits
        elif high - seq <= span:
            bit = 1 << (high - seq)
            if bits & bit:
                return False
            bits |= bit
            if bits == self._full:
                boots[key] = _run(high - span, high)
            else:
                entry[1] = bits
        else:
            return self._below(key, node_id, boot_id, seq)
        self._uncommitted.add(key << 32 | seq)
        return True

    def _below(self, key: int, node_id: int, boot_id: int, seq: int) -> bool:
        """`add` for a number below the span: known if accepted since the prune, else the
        journal's."""
        u = key << 32 | seq
        if u in self._uncommitted or self._journal.has_frame(node_id, boot_id, seq):
            return False
        self._uncommitted.add(u)
        return True

    def _seed(self, node_id: int, boot_id: int, seq: int) -> int | list[int]:
        """A boot first seen since the start: its stored numbers near `seq`, from the journal."""
        seqs = self._journal.seqs_from(node_id, boot_id, seq - self._span)
        if not seqs:  # (seq itself is then the first): an empty run that begins at seq
            return _run(seq, seq - 1)
        high = max(seqs)
        bits = 0
        for s in seqs:
            if high - s <= self._span:
                bits |= 1 << (high - s)
        return _run(high - self._span, high) if bits == self._full else [high, bits]

    def prune(self) -> None:
        """After a commit: what was accepted is stored, and the oldest boots beyond
        `max_boots` go (the journal answers for them)."""
        self._uncommitted.clear()
        while len(self._boots) > self._max_boots:
            del self._boots[next(iter(self._boots))]

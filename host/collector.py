"""The ingest pipeline: decode + verify -> dedupe -> deriver -> journal commit -> ACK.

Sources (udp_source, serial_source) hand every received chunk to `Collector.submit`, which
never raises. Accepted frames wait in a batch; `flush()` commits the batch, with the events
the deriver made of it, in one journal transaction, and only then sends the ACKs. The clock
is read here, once per chunk, and passed down (`rx_s`): no later stage reads it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ProtocolError, SinkError
from .journal import Journal, event_row
from .protocol import decode, encode_ack

__all__ = ["Collector", "CollectorStats", "NullDeriver", "SeenWindow"]

log = logging.getLogger(__name__)

Reply = Callable[[bytes], None]
MAX_BATCH = 4096          # frames per journal transaction, at most (> a UDP burst)
REJECT_LOG_S = 10.0       # at most one reject log line per source per this many seconds
MAX_REJECT_SOURCES = 1024  # distinct sources counted by name; more are pooled as "other"


class NullDeriver:
    """A deriver that derives nothing (tests, and `--no-derive` benchmarks)."""

    def on_frame(self, frame, rx_s):
        return []

    def tick(self, now_s):
        return []


class SeenWindow:
    """Which (node, boot, seq) are stored: recent sequence numbers per boot in memory, the
    journal's UNIQUE index behind them.

    Per (node, boot) the numbers within `span` of the highest are kept; a miss below that,
    or on a boot not in memory (after a restart), asks the journal. Only committed numbers
    are ever pruned (`prune` runs after a commit), so a miss in memory is exact.
    """

    def __init__(self, journal: Journal, span: int = 2048, max_boots: int = 50_000):
        self._journal, self._span, self._max_boots = journal, span, max_boots
        self._boots: dict[tuple[int, int], list] = {}  # (node, boot) -> [high, set of seqs]

    def add(self, node_id: int, boot_id: int, seq: int) -> bool:
        """Mark as seen; False if it already was (a duplicate)."""
        entry = self._boots.get((node_id, boot_id))
        if entry is None:
            seqs = set(self._journal.seqs_from(node_id, boot_id, seq - self._span))
            entry = self._boots[(node_id, boot_id)] = [max(seqs, default=seq), seqs]
        high, seqs = entry
        if seq in seqs:
            return False
        if seq < high - self._span and self._journal.has_frame(node_id, boot_id, seq):
            return False
        seqs.add(seq)
        if seq > high:
            entry[0] = seq
        return True

    def forget(self, node_id: int, boot_id: int, seq: int) -> None:
        """Undo `add` for a frame whose commit failed."""
        entry = self._boots.get((node_id, boot_id))
        if entry is not None:
            entry[1].discard(seq)

    def prune(self) -> None:
        for entry in self._boots.values():
            if len(entry[1]) > 2 * self._span:
                low = entry[0] - self._span
                entry[1] = {s for s in entry[1] if s >= low}
        while len(self._boots) > self._max_boots:
            del self._boots[next(iter(self._boots))]


@dataclass
class CollectorStats:
    """Counters since start, for the board, the demo and tests."""

    accepted: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    ack_errors: int = 0
    commits: int = 0
    commit_failures: int = 0
    events: int = 0
    deriver_errors: int = 0
    rejects: dict[tuple[str, str], int] = field(default_factory=dict)
    last_seen_s: dict[int, float] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


class _RejectLog:
    """Counts rejects per source and logs them at most once per REJECT_LOG_S per source."""

    def __init__(self):
        self.unsaved: dict[tuple[str, str], list] = {}  # -> [count, last_s], for the journal
        self._window: dict[str, tuple[float, dict[str, int], str]] = {}

    def add(self, source: str, reason: str, message: str, now_s: float) -> None:
        unsaved = self.unsaved.get((source, reason))
        if unsaved is None:
            self.unsaved[(source, reason)] = [1, now_s]
        else:
            unsaved[0] += 1
            unsaved[1] = now_s
        start, counts, _ = self._window.get(source, (None, {}, ""))
        counts[reason] = counts.get(reason, 0) + 1
        if start is None:
            self._emit(source, counts, message)
            self._window[source] = (now_s, {}, "")
        else:
            self._window[source] = (start, counts, message)
            if now_s - start >= REJECT_LOG_S:
                self.tick(now_s)

    def tick(self, now_s: float) -> None:
        for source, (start, counts, message) in list(self._window.items()):
            if now_s - start < REJECT_LOG_S:
                continue
            if counts:
                self._emit(source, counts, message)
                self._window[source] = (now_s, {}, "")
            else:
                del self._window[source]

    @staticmethod
    def _emit(source: str, counts: dict[str, int], message: str) -> None:
        what = ", ".join(f"{r} {n}" for r, n in sorted(counts.items()))
        log.warning("rejected %d frame(s) from %s (%s): %s", sum(counts.values()), source,
                    what, message)


class Collector:
    """Decode, dedupe, journal, ACK and derive; one instance per journal, one thread.

    Args:
        config: a Config (keys from `config.key_of`, or any object with `key_of(node_id)`).
        journal: the open Journal this collector owns for writing.
        deriver: on_frame(frame, rx_s) and tick(now_s) returning events (default none).
        clock: host wall time in epoch seconds.
        rebuild: returns a deriver rebuilt from the journal. Called after a failed commit:
            the deriver has already taken the batch's frames (count maxima, states) that
            are not stored and will come again, so its memory must go back to the journal's.
    """

    def __init__(self, config: Any, journal: Journal, deriver: Any = None, *,
                 clock: Callable[[], float] = time.time, max_batch: int = MAX_BATCH,
                 rebuild: Callable[[], Any] | None = None):
        self.config, self.journal = config, journal
        self.deriver = deriver if deriver is not None else NullDeriver()
        self.clock, self.max_batch, self.rebuild = clock, max_batch, rebuild
        self.stats = CollectorStats()
        self.seen = SeenWindow(journal)
        self._key_of = config.key_of
        self._frames: list[tuple] = []  # FrameRow fields, as plain tuples (see submit)
        self._events: list[tuple] = []
        self._acks: dict[tuple[int, int, Reply], list[int]] = {}
        self._rejects = _RejectLog()
        self.on_commit: Callable[[int], None] | None = None  # e.g. Forwarder.notify

    # -- per chunk -----------------------------------------------------------------------
    def submit(self, data: bytes, source: str, reply: Reply | None,
               reject_source: str | None = None, rx_s: float | None = None) -> None:
        """One received frame (datagram or deframed serial chunk). Never raises.

        `reply` sends an ACK back over the same link; `reject_source` is the name rejects
        are counted under (defaults to `source`). `rx_s`: when it was received, if not now
        (a frame a site collector received, from the broker: sources/uns.py).
        """
        if rx_s is None:
            rx_s = self.clock()
        try:
            frame = decode(data, self._key_of)
        except ProtocolError as exc:
            self.reject(reject_source or source, exc, rx_s)
            return
        h = frame.header
        node_id, boot_id, seq = h.node_id, h.boot_id, h.seq
        self.stats.last_seen_s[node_id] = rx_s
        if reply is not None:
            seqs = self._acks.get((node_id, boot_id, reply))
            if seqs is None:
                self._acks[(node_id, boot_id, reply)] = [seq]
            else:
                seqs.append(seq)
        if not self.seen.add(node_id, boot_id, seq):
            # Stored already: the node missed our ACK, or someone replays. ACK, never apply.
            self.stats.duplicates += 1
            self.reject(reject_source or source, ProtocolError(
                "replay", f"frame {boot_id:08x}/{seq} of node {node_id} already stored"),
                rx_s)
            return
        # A FrameRow's fields as a plain tuple: the NamedTuple constructor costs ~0.2 us a
        # frame, and executemany takes any sequence.
        self._frames.append((rx_s, source, node_id, boot_id, seq, h.type, h.uptime_ms,
                             frame.raw))
        self._derived(self.deriver.on_frame, frame, rx_s)
        if len(self._frames) >= self.max_batch:
            self.flush()

    def reject(self, source: str, exc: ProtocolError, rx_s: float | None = None) -> None:
        """Count and (rate-limited) log a frame that must not be applied."""
        rx_s = self.clock() if rx_s is None else rx_s
        key = (source, exc.reason)
        if key not in self.stats.rejects and len(self.stats.rejects) >= MAX_REJECT_SOURCES:
            key = (source.split(":", 1)[0] + ":other", exc.reason)
        self.stats.rejects[key] = self.stats.rejects.get(key, 0) + 1
        self._rejects.add(key[0], exc.reason, str(exc), rx_s)

    def _derived(self, fn, *args) -> None:
        try:
            events = fn(*args)
        except Exception:  # a deriver bug must not stop ingest: frames are the truth
            self.stats.deriver_errors += 1
            if self.stats.deriver_errors <= 10 or self.stats.deriver_errors % 1000 == 0:
                log.exception("deriver failed (%d so far)", self.stats.deriver_errors)
            return
        for ev in events:
            try:
                self._events.append(event_row(ev))
            except (TypeError, ValueError, AttributeError) as exc:
                self.stats.deriver_errors += 1
                log.error("deriver made an event the journal cannot store: %s", exc)

    # -- per batch -----------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._frames) + len(self._events) + len(self._acks)

    def flush(self) -> int:
        """Commit the batch (frames, their events, reject counts), then send its ACKs.

        Returns the number of frames committed. On a journal failure nothing is ACKed (the
        nodes resend) and the error is logged; the collector carries on.
        """
        if not (self._frames or self._events or self._acks or self._rejects.unsaved):
            return 0
        frames, events, acks = self._frames, self._events, self._acks
        rejects = {k: (n, t) for k, (n, t) in self._rejects.unsaved.items()}
        self._frames, self._events, self._acks = [], [], {}
        self._rejects.unsaved = {}
        try:
            self.journal.commit(frames, events, rejects)
        except SinkError as exc:
            self.stats.commit_failures += 1
            log.error("journal commit of %d frames failed, not ACKed: %s", len(frames), exc)
            for _, _, node_id, boot_id, seq, *_ in frames:
                self.seen.forget(node_id, boot_id, seq)
            self._rebuild_deriver()
            return 0
        self.stats.commits += 1
        self.stats.accepted += len(frames)
        self.stats.events += len(events)
        self._send_acks(acks)
        self.seen.prune()
        if self.on_commit is not None and events:
            self.on_commit(len(events))
        return len(frames)

    def _rebuild_deriver(self) -> None:
        if self.rebuild is None:
            return
        try:
            self.deriver = self.rebuild()
        except Exception:  # the journal unreadable too: keep going, frames still come first
            log.exception("rebuilding the deriver from the journal failed; its counts may "
                          "miss the frames of the failed commit")

    def _send_acks(self, acks) -> None:
        for (node_id, boot_id, reply), seqs in acks.items():
            key = self._key_of(node_id)
            for ack in encode_ack(node_id, boot_id, seqs, key):
                try:
                    reply(ack)
                    self.stats.acks_sent += 1
                except OSError as exc:  # the node resends and we ACK again
                    self.stats.ack_errors += 1
                    log.debug("ACK to node %d not sent: %s", node_id, exc)

    def tick(self) -> int:
        """Once a second: the deriver's time-driven events, reject log lines, then a flush."""
        now = self.clock()
        self._derived(self.deriver.tick, now)
        self._rejects.tick(now)
        return self.flush()

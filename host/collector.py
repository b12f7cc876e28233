"""The ingest pipeline: decode + verify -> dedupe -> deriver -> journal commit -> ACK.

Sources (udp_source, serial_source) hand every received chunk to `Collector.submit`, which
never raises. Accepted frames wait in a batch; `flush()` commits the batch, with the events
the deriver made of it, in one journal transaction, and only then sends the ACKs. A commit
that fails (disk full) keeps the batch, ACKs nothing and is retried: the deriver has taken
those frames once and will not see them again. The clock is read here, once per chunk, and
passed down (`rx_s`): no later stage reads it. The runtime gives it a HostClock's `now`
(host/hostclock.py: a wall and a monotonic clock read together, an event time that never
goes back).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .dedupe import SeenWindow, stored_again
from .derive import DeriverProtocol, NullDeriver
from .errors import ProtocolError, SinkError
from .journal import Journal, event_row, heard_takes
from .protocol import decode, encode_ack
from .upkeep import JournalUpkeep

__all__ = ["Collector", "CollectorStats", "SeenWindow"]

log = logging.getLogger(__name__)

Reply = Callable[[bytes], None]
MAX_BATCH = 4096          # frames per journal transaction, at most (> a UDP burst)
REJECT_LOG_S = 10.0       # at most one reject log line per source per this many seconds
MAX_REJECT_SOURCES = 1024  # distinct sources counted by name; more are pooled as "other"
# While the journal cannot commit, the batch is kept for the retry, up to this many frames
# (a few MB); frames beyond are refused unACKed and unapplied, and the nodes resend them.
MAX_HELD = 16 * MAX_BATCH
RETRY_S = 1.0             # a failed commit is retried by the next tick, or flush this later
FAILURE_LOG_S = 60.0      # while commits keep failing, one error line this often


@dataclass
class CollectorStats:
    """Counters since start, for the board, the demo and tests."""

    accepted: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    ack_errors: int = 0
    commits: int = 0
    commit_failures: int = 0
    refused_held: int = 0  # frames refused (unACKed) while MAX_HELD frames waited for the disk
    events: int = 0
    deriver_errors: int = 0
    rejects: dict[tuple[str, str], int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


class _RejectLog:
    """Counts rejects per source, reason and node, and logs them at most once per
    REJECT_LOG_S per source (duplicates, harmless resends, are counted, never logged)."""

    def __init__(self):
        # (source, reason, node id) -> [count, last_s], for the journal
        self.unsaved: dict[tuple[str, str, int], list] = {}
        self._window: dict[str, tuple[float, dict[str, int], str]] = {}

    def add(self, source: str, reason: str, message: str, now_s: float,
            node_id: int = 0) -> None:
        unsaved = self.unsaved.get((source, reason, node_id))
        if unsaved is None:
            self.unsaved[(source, reason, node_id)] = [1, now_s]
        else:
            unsaved[0] += 1
            unsaved[1] = now_s
        if reason == "duplicate":
            log.debug("%s: %s", source, message)
            return
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
        deriver: the DeriverProtocol whose events go into the journal (default none).
        clock: host time in epoch seconds (the runtime's HostClock.now: never goes back).
    """

    def __init__(self, config: Any, journal: Journal, deriver: DeriverProtocol | None = None,
                 *, clock: Callable[[], float] = time.time, max_batch: int = MAX_BATCH,
                 upkeep: JournalUpkeep | None = None):
        self.config, self.journal = config, journal
        self.deriver: DeriverProtocol = deriver if deriver is not None else NullDeriver()
        self.clock, self.max_batch = clock, max_batch
        self.stats = CollectorStats()
        self.seen = SeenWindow(journal)
        self._key_of = config.key_of
        self._frames: list[tuple] = []  # FrameRow fields, as plain tuples (see submit)
        self._events: list[tuple] = []
        self._acks: dict[tuple[int, int, Reply], list[int]] = {}
        self._rejects = _RejectLog()
        # Built only for a duplicate, from the batch (frames not yet committed): its frames'
        # (bytes, rx_s) by (node, boot, seq), and per node the (boot, seq, uptime) the
        # journal's `heard` row will take from them (Journal.newest_frame: the rest). Kept
        # per node for every frame, (boot, uptime) took about 1.3 MB at 10,000 nodes (by
        # the objects' sizes).
        self._pending_raw: dict[tuple[int, int, int], tuple[bytes, float]] = {}
        self._pending_newest: dict[int, tuple[int, int, int]] = {}
        self._pending_indexed = 0  # how many of the batch's frames those hold
        self._retry_at: float | None = None  # set while commits fail: no retry before it
        self._failed_at = 0.0  # when the last failure was logged
        self._failures = 0  # consecutive failed commits
        self.on_commit: Callable[[int], None] | None = None  # e.g. Forwarder.notify
        self._acks_resumed_s = clock()  # since when stored frames have been ACKed
        # issue 14: the journal's rollups and retention (host/upkeep.py), run from tick
        self.upkeep: JournalUpkeep | None = upkeep

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
            self.reject(reject_source or source, exc, rx_s, exc.node_id or 0)
            return
        h = frame.header
        node_id, boot_id, seq = h.node_id, h.boot_id, h.seq
        if len(self._frames) >= MAX_HELD:  # the disk is failing: let the node resend later
            self.stats.refused_held += 1
            return
        if reply is not None:
            seqs = self._acks.get((node_id, boot_id, reply))
            if seqs is None:
                self._acks[(node_id, boot_id, reply)] = [seq]
            else:
                seqs.append(seq)
        if not self.seen.add(node_id, boot_id, seq):
            # Stored already: the node missed our ACK, or someone replays. ACK, never apply.
            exc = self._stored_again(frame, rx_s)
            if exc.reason == "duplicate":
                self.stats.duplicates += 1
            self.reject(reject_source or source, exc, rx_s, node_id)
            return
        # A FrameRow's fields as a plain tuple: the NamedTuple constructor costs ~0.2 us a
        # frame, and executemany takes any sequence.
        self._frames.append((rx_s, source, node_id, boot_id, seq, h.type, h.uptime_ms,
                             frame.raw))
        self._derived(self.deriver.on_frame, frame, rx_s)
        if len(self._frames) >= self.max_batch and self._retry_at is None:
            self.flush()

    def reject(self, source: str, exc: ProtocolError, rx_s: float | None = None,
               node_id: int = 0) -> None:
        """Count and (rate-limited) log a frame that must not be applied; `node_id` is the
        node it was verified as (0: none)."""
        rx_s = self.clock() if rx_s is None else rx_s
        key = (source, exc.reason)
        if key not in self.stats.rejects and len(self.stats.rejects) >= MAX_REJECT_SOURCES:
            key = (source.split(":", 1)[0] + ":other", exc.reason)
        self.stats.rejects[key] = self.stats.rejects.get(key, 0) + 1
        self._rejects.add(key[0], exc.reason, str(exc), rx_s, node_id)

    def _stored_again(self, frame, rx_s: float) -> ProtocolError:
        """A verified frame whose (node, boot, seq) is kept already: duplicate or replay."""
        h = frame.header
        key = (h.node_id, h.boot_id, h.seq)
        pending_newest = self._pending_newest
        for f in self._frames[self._pending_indexed:]:  # index the batch only when asked
            self._pending_raw[(f[2], f[3], f[4])] = (f[7], f[0])
            prev = pending_newest.get(f[2])
            if prev is None or heard_takes(prev[0], prev[1], f[3], f[4]):
                pending_newest[f[2]] = (f[3], f[4], f[6])
        self._pending_indexed = len(self._frames)
        stored = self._pending_raw.get(key)
        pending = stored is not None
        if not pending:
            stored = self.journal.stored_frame(*key)
        # the node's newest frame: the journal's, then the batch's by the rule of `heard`
        newest = self.journal.newest_frame(h.node_id)
        batch = pending_newest.get(h.node_id)
        if batch is not None and (newest is None or heard_takes(newest[0], newest[1],
                                                                 batch[0], batch[1])):
            newest = batch
        boot_uptime = (h.boot_id, h.uptime_ms) if newest is None else (newest[0], newest[2])
        return stored_again(h, frame.raw, stored, pending, boot_uptime, rx_s,
                            self._acks_resumed_s)

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
        """Frames, events, ACKs owed and reject counts waiting for the next commit."""
        return (len(self._frames) + len(self._events) + len(self._acks)
                + len(self._rejects.unsaved))

    def flush(self, *, retry_now: bool = False) -> int:
        """Commit the batch (frames, their events, reject counts), then send its ACKs.

        Returns the number of frames committed. On a journal failure nothing is ACKed and
        the batch is kept whole (frames, events, ACKs owed, reject counts) for the next
        try, which is not before RETRY_S unless `retry_now` (tick, stop); the collector
        carries on taking frames into it, up to MAX_HELD.
        """
        if not (self._frames or self._events or self._acks or self._rejects.unsaved):
            return 0
        if self._retry_at is not None and not retry_now and self.clock() < self._retry_at:
            return 0
        frames, events = self._frames, self._events
        rejects = {k: (n, t) for k, (n, t) in self._rejects.unsaved.items()}
        try:
            self.journal.commit(frames, events, rejects)
        except SinkError as exc:
            self._failed(exc)
            return 0
        if self._retry_at is not None:
            self._acks_resumed_s = self.clock()  # the held frames are ACKed only now
            log.warning("journal commits work again after %d failed: %d frames and %d events "
                        "held meanwhile are stored", self._failures, len(frames), len(events))
            self._retry_at, self._failures = None, 0
        acks = self._acks
        self._frames, self._events, self._acks = [], [], {}
        self._pending_raw, self._pending_newest, self._pending_indexed = {}, {}, 0
        self._rejects.unsaved = {}
        self.stats.commits += 1
        self.stats.accepted += len(frames)
        self.stats.events += len(events)
        self._send_acks(acks)
        self.seen.prune()
        if self.on_commit is not None and events:
            self.on_commit(len(events))
        return len(frames)

    def _failed(self, exc: SinkError) -> None:
        now = self.clock()
        self.stats.commit_failures += 1
        self._failures += 1
        self._retry_at = now + RETRY_S
        if self._failures == 1 or now - self._failed_at >= FAILURE_LOG_S:
            self._failed_at = now
            log.error("journal commit failed (%d time(s) in a row), %d frames held, not ACKed, "
                      "retrying: %s", self._failures, len(self._frames), exc)

    def store_now(self, events: list) -> None:
        """Commit what is pending and then `events`, now (an operator's reason: the caller
        must know it is stored). Raises SinkError, and then keeps nothing of `events`."""
        self.flush(retry_now=True)
        if self._retry_at is not None:
            raise SinkError("the journal cannot store anything now (see the log); try again")
        self.journal.commit(events=events)

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
        """Once a second: the deriver's time-driven events, reject log lines, then a flush
        (which retries a failed commit)."""
        now, started = self.clock(), time.perf_counter()
        self._derived(self.deriver.tick, now)
        self._rejects.tick(now)
        flushed = self.flush(retry_now=True)
        if self.upkeep is not None:  # issue 14: after the flush, so the rollups see its events
            self.upkeep.tick(now, spent_s=time.perf_counter() - started)
        return flushed

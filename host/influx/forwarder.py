"""Ships the journal's events to InfluxDB in order, at least once, with idempotent points."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from ..journal import StoredEvent
from .points import EventDataError, Placement, event_points, placements_from, rejects_points
from .writer import Failure, InfluxWriter, RetryPolicy, WriteError

__all__ = ["Forwarder", "ForwarderJournal", "ForwarderStats", "InfluxWriter", "RetryPolicy",
           "Step", "WriteError", "forwarder_for"]

log = logging.getLogger(__name__)

DEFAULT_CURSOR = "influxdb"


class ForwarderJournal(Protocol):
    """What the forwarder reads and writes of a journal (host/journal's Journal has it)."""

    def get_cursor(self, name: str) -> int | None: ...

    def set_cursor(self, name: str, last_id: int) -> None: ...

    def events_after(self, last_id: int, limit: int = 1000) -> list[StoredEvent]: ...

    def rejects(self) -> dict[tuple[str, str], tuple[int, float]]: ...


class LineWriter(Protocol):
    """Writes line protocol or raises WriteError (InfluxWriter)."""

    def write(self, lines: list[str]) -> None: ...


def forwarder_for(config: Any, **kwargs) -> Forwarder | None:
    """The forwarder a collector Config asks for, or None without an [influxdb] table.

    The token is read here (env var or file, see config.InfluxTarget) and handed only to the
    client. The forwarder opens its own journal connection in its own thread on `start()`;
    its only writes are its cursor, which a crash may set back (points are idempotent), so
    that connection syncs "normal" whatever the collector's journal_sync.
    Raises:
        ConfigError: the token is not set or unreadable.
    """
    target = config.influxdb
    if target is None:
        return None
    from ..journal import Journal

    writer = InfluxWriter(target.url, target.token(), target.org, target.bucket)
    path = config.journal_path
    return Forwarder(lambda: Journal(path, sync="normal"), writer,
                     placements_from(config.nodes.values()), **kwargs)


@dataclass
class ForwarderStats:
    """Counters since start; `write_failures` counts every failed write attempt."""

    events_forwarded: int = 0
    points_written: int = 0
    writes: int = 0
    write_failures: int = 0
    consecutive_failures: int = 0
    events_skipped: int = 0
    batches_split: int = 0
    last_error: str | None = None


class Step(NamedTuple):
    """What one `run_once` did: events consumed, points written, failure, full batch."""

    events: int
    points: int
    failed: bool
    more: bool
    error: WriteError | None = None


_Rows = Sequence[tuple[StoredEvent, list[str]]]  # each event with its line protocol


class Forwarder:
    """Journal `events` -> InfluxDB, in id order, tracking its position in `cursors`.

    Args:
        journal: a ForwarderJournal, or a callable that opens one; with `start()` pass the
            callable, so the connection belongs to the forwarder's own thread and never to
            the ingest path.
        writer: a LineWriter (InfluxWriter).
        placements: machine name -> Placement, for the plant and line tags.
        batch_size: events per write.
        retry: waits between failed attempts in the background runner.
        cursor: name of this forwarder's row in the journal's `cursors` table.
        poll_interval_s: idle wait between looks at the journal (cut short by `notify()`).
    """

    def __init__(self, journal: ForwarderJournal | Callable[[], ForwarderJournal],
                 writer: LineWriter, placements: Mapping[str, Placement], *,
                 batch_size: int = 500, retry: RetryPolicy | None = None,
                 cursor: str = DEFAULT_CURSOR, poll_interval_s: float = 1.0,
                 flush_timeout_s: float = 5.0, rand: Callable[[], float] = random.random):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._open = journal if callable(journal) else None
        self._journal: Any = None if callable(journal) else journal
        self.writer = writer
        self.placements = placements
        self.batch_size = batch_size
        self.retry = retry or RetryPolicy()
        self.cursor = cursor
        self.poll_interval_s = poll_interval_s
        self.flush_timeout_s = flush_timeout_s
        self._rand = rand
        self.stats = ForwarderStats()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._rejects_sent: dict = {}

    # -- one step -------------------------------------------------------------------------
    def _journal_now(self) -> ForwarderJournal:
        if self._journal is None:
            self._journal = self._open()
        return self._journal

    def _skip(self, row: StoredEvent, why: str) -> None:
        self.stats.events_skipped += 1
        log.error("InfluxDB forwarder skips event %s (%s): %s", row.id, row.kind, why)

    def _write(self, lines: list[str]) -> None:
        try:
            self.writer.write(lines)
        except WriteError as exc:
            self.stats.write_failures += 1
            self.stats.consecutive_failures += 1
            self.stats.last_error = str(exc)
            log.warning("InfluxDB write of %d points failed (%d in a row, %s): %s",
                        len(lines), self.stats.consecutive_failures, exc.failure.value, exc)
            raise
        if self.stats.consecutive_failures:
            log.info("InfluxDB write succeeded again after %d failed attempts",
                     self.stats.consecutive_failures)
        self.stats.consecutive_failures = 0
        self.stats.writes += 1
        self.stats.points_written += len(lines)

    def run_once(self) -> Step:
        """Read one batch after the cursor, write it, and advance the cursor on success.

        A write to retry leaves the cursor after the last event that did go in (the rest
        is retried later; rewriting points that did arrive is harmless). Events that can
        never be written (malformed, or refused by the server on their own) are logged,
        counted and passed; a batch too large is split. Once caught up, the rejects table is
        written too if it changed.
        """
        journal = self._journal_now()
        step = self._events_step(journal)
        if step.failed or step.more:
            return step
        extra = self._ship_rejects(journal)
        return step._replace(points=step.points + extra.points, failed=extra.failed,
                             error=extra.error)

    def _events_step(self, journal: ForwarderJournal) -> Step:
        last_id = journal.get_cursor(self.cursor) or 0
        rows = journal.events_after(last_id, self.batch_size)
        if not rows:
            return Step(0, 0, False, False)
        per_row: list[tuple[StoredEvent, list[str]]] = []
        for row in rows:
            try:
                per_row.append((row, [p.to_line_protocol()
                                      for p in event_points(row, self.placements)]))
            except EventDataError as exc:
                self._skip(row, str(exc))
        more = len(rows) == self.batch_size
        done, points, error = self._send(journal, per_row)
        if error is not None:
            return Step(done, points, True, more, error)
        journal.set_cursor(self.cursor, rows[-1].id)
        return Step(len(rows), points, False, more)

    def _send(self, journal: ForwarderJournal, rows: _Rows) -> tuple[int, int, WriteError | None]:
        """Write `rows` as one batch, or as the failure class says; (events done, points
        written, the error to retry on). The cursor follows every part that is done."""
        if not rows:
            return 0, 0, None
        lines = [line for _, row_lines in rows for line in row_lines]
        try:
            if lines:
                self._write(lines)
        except WriteError as exc:
            if exc.failure is Failure.RETRY:
                return 0, 0, exc
            if len(rows) == 1:
                self._skip(rows[0][0], str(exc))
                journal.set_cursor(self.cursor, rows[0][0].id)
                return 1, 0, None
            if exc.failure is Failure.TOO_LARGE:
                self.stats.batches_split += 1
                mid = len(rows) // 2
                parts = [rows[:mid], rows[mid:]]
            else:  # REJECTED: find the culprits one by one, write the rest
                parts = [rows[i:i + 1] for i in range(len(rows))]
            done = points = 0
            for part in parts:
                n, p, err = self._send(journal, part)
                done, points = done + n, points + p
                if err is not None:
                    return done, points, err
            return done, points, None
        self.stats.events_forwarded += len(rows)
        journal.set_cursor(self.cursor, rows[-1][0].id)
        return len(rows), len(lines), None

    def _ship_rejects(self, journal: ForwarderJournal) -> Step:
        """Write the rejects table when it changed since the last successful write."""
        snapshot = journal.rejects()
        if not snapshot or snapshot == self._rejects_sent:
            return Step(0, 0, False, False)
        try:
            lines = [p.to_line_protocol() for p in rejects_points(snapshot)]
        except EventDataError as exc:
            log.error("InfluxDB forwarder cannot write the rejects table: %s", exc)
            self._rejects_sent = snapshot
            return Step(0, 0, False, False)
        try:
            self._write(lines)
        except WriteError as exc:
            if exc.failure is Failure.RETRY:
                return Step(0, 0, True, False, exc)
            log.error("InfluxDB refused the rejects table (%s): %s", exc.failure.value, exc)
            self._rejects_sent = snapshot
            return Step(0, 0, False, False)
        self._rejects_sent = snapshot
        return Step(0, len(lines), False, False)

    def drain(self, max_batches: int = 1_000_000) -> Step:
        """run_once until the journal is caught up, a write fails, or max_batches ran.

        Returns the totals as one Step (failed/error from the last attempt).
        """
        events = points = 0
        for _ in range(max_batches):
            step = self.run_once()
            events, points = events + step.events, points + step.points
            if step.failed or not step.more:
                return Step(events, points, step.failed, step.more, step.error)
        return Step(events, points, False, True)

    # -- background runner ----------------------------------------------------------------
    def start(self) -> None:
        """Run in a daemon thread until `stop()`; the caller's loop is never blocked."""
        if self._thread is not None:
            raise RuntimeError("forwarder already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="influx-forwarder",
                                        daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New events are in the journal: look now instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the runner after a last bounded flush; the journal keeps anything unsent."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            wait = self.flush_timeout_s + 15.0 if timeout_s is None else timeout_s
            self._thread.join(wait)
            if self._thread.is_alive():
                log.warning("InfluxDB forwarder still busy after %.1f s; left behind", wait)
            self._thread = None

    async def run(self, stop: asyncio.Event) -> None:
        """The asyncio face: start the thread runner, wait for `stop`, stop it off-loop."""
        self.start()
        try:
            await stop.wait()
        finally:
            await asyncio.to_thread(self.stop)

    def _guarded_step(self) -> Step:
        try:
            return self.run_once()
        except WriteError as exc:
            return Step(0, 0, True, False, exc)
        except Exception as exc:  # a dying thread must not be silent, nor end forwarding
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("InfluxDB forwarder step failed")
            return Step(0, 0, True, False, None)

    def _loop(self) -> None:
        try:
            failures = 0
            while not self._stop.is_set():
                step = self._guarded_step()
                if step.failed:
                    failures += 1
                    after = step.error.retry_after_s if step.error is not None else None
                    self._stop.wait(self.retry.delay_s(failures, self._rand, after))
                    continue
                failures = 0
                if not step.more:
                    self._wake.wait(self.poll_interval_s)
                    self._wake.clear()
            if failures == 0:
                self._flush()
        finally:
            self.close_journal()

    def _flush(self) -> None:
        deadline = time.monotonic() + self.flush_timeout_s
        while time.monotonic() < deadline:
            step = self._guarded_step()
            if step.failed or not step.more:
                return

    def close_journal(self) -> None:
        """Close the journal if this forwarder opened it."""
        if self._open is not None and self._journal is not None:
            self._journal.close()
            self._journal = None

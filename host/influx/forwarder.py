"""Ships the journal's events to InfluxDB in order, at least once, with idempotent points."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import urllib3
from influxdb_client import InfluxDBClient, WritePrecision
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.write_api import SYNCHRONOUS

from ..errors import SinkError
from .points import EventDataError, Placement, event_points, placements_from, rejects_points

__all__ = ["Forwarder", "ForwarderStats", "InfluxWriter", "RetryPolicy", "Step", "WriteError"]

log = logging.getLogger(__name__)

DEFAULT_CURSOR = "influxdb"
# HTTP statuses meaning "this data will never be accepted": isolate and skip the culprit.
_REJECTED = frozenset({400, 413, 422})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped: how long to wait before write attempt n+1.

    Attributes:
        initial_s: wait after the first failure, seconds.
        multiplier: growth factor per further failure.
        max_s: cap on any wait, seconds (jitter never exceeds it).
        jitter: fraction (0..1) by which a wait is randomly shortened, so many collectors
            recovering together do not hit the server in step.
    """

    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 60.0
    jitter: float = 0.2

    def __post_init__(self):
        if not (0 < self.initial_s <= self.max_s) or self.multiplier < 1:
            raise ValueError("RetryPolicy needs 0 < initial_s <= max_s and multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy jitter must be in range 0-1")

    def delay_s(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Wait in seconds after `failures` consecutive failed attempts (>= 1)."""
        exponent = min(max(failures, 1) - 1, 64)  # no float overflow after a long outage
        base = min(self.max_s, self.initial_s * self.multiplier ** exponent)
        return base * (1.0 - self.jitter * rand())


class WriteError(SinkError):
    """A write InfluxDB did not confirm. `status` is the HTTP status (None: no response)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status

    @property
    def rejected(self) -> bool:
        """The server refuses this data for good (bad line protocol, too large)."""
        return self.status in _REJECTED


class InfluxWriter:
    """Synchronous writes through influxdb-client's /api/v2/write; every failure raises.

    Works with InfluxDB 2.x, 3.x, Cloud, and 1.8+ (use `for_influxdb1`). The token is kept
    only inside the client and never appears in repr or log output.
    """

    def __init__(self, url: str, token: str, org: str, bucket: str, *, timeout_ms: int = 10_000,
                 verify_ssl: bool = True):
        self.url, self.org, self.bucket = url, org, bucket
        # retries=False: the forwarder owns the retry policy, a write call never hides one.
        self._client = InfluxDBClient(url=url, token=token, org=org, timeout=timeout_ms,
                                      verify_ssl=verify_ssl, retries=False)
        self._api = self._client.write_api(write_options=SYNCHRONOUS)

    @classmethod
    def for_influxdb1(cls, url: str, database: str, retention_policy: str = "autogen",
                      username: str = "", password: str = "", **kwargs) -> InfluxWriter:
        """InfluxDB 1.8+ through its 2.x-compatible API: bucket "db/rp", token "user:pass"."""
        return cls(url, f"{username}:{password}", "-", f"{database}/{retention_policy}",
                   **kwargs)

    def __repr__(self):
        return f"InfluxWriter(url={self.url!r}, org={self.org!r}, bucket={self.bucket!r})"

    def write(self, lines: list[str]) -> None:
        """Write line protocol (ns precision) and return only once the server accepted it.

        Raises:
            WriteError: no response (refused, timeout, DNS) or a non-2xx status.
        """
        try:
            self._api.write(bucket=self.bucket, org=self.org, record=lines,
                            write_precision=WritePrecision.NS)
        except InfluxDBError as exc:
            status = getattr(exc, "status", None) or getattr(exc.response, "status", None)
            raise WriteError(f"InfluxDB {self.url} answered {status}: {exc.message}",
                             status) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise WriteError(f"InfluxDB {self.url} unreachable: {type(exc).__name__}") from None

    def close(self) -> None:
        self._client.close()


@dataclass
class ForwarderStats:
    """Counters since start; `write_failures` counts every failed write attempt."""

    events_forwarded: int = 0
    points_written: int = 0
    writes: int = 0
    write_failures: int = 0
    consecutive_failures: int = 0
    events_skipped: int = 0
    last_error: str | None = None


class Step(NamedTuple):
    """What one `run_once` did: events consumed, points written, failure, full batch."""

    events: int
    points: int
    failed: bool
    more: bool
    error: WriteError | None = None


class Forwarder:
    """Journal `events` -> InfluxDB, in id order, tracking its position in `cursors`.

    Args:
        journal: a Journal (events_after, get_cursor, set_cursor) or a callable that opens
            one; with `start()` pass the callable, so the connection belongs to the
            forwarder's own thread and never to the ingest path.
        writer: anything with `write(lines)` raising WriteError (InfluxWriter).
        placements: machine name -> Placement, for the plant and line tags.
        batch_size: events per write.
        retry: waits between failed attempts in the background runner.
        cursor: name of this forwarder's row in the journal's `cursors` table.
        poll_interval_s: idle wait between looks at the journal (cut short by `notify()`).
    """

    def __init__(self, journal: Any, writer: Any, placements: Mapping[str, Placement], *,
                 batch_size: int = 500, retry: RetryPolicy | None = None,
                 cursor: str = DEFAULT_CURSOR, poll_interval_s: float = 1.0,
                 flush_timeout_s: float = 5.0, rand: Callable[[], float] = random.random):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._journal_arg = journal
        self._journal = None if callable(journal) else journal
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

    @classmethod
    def from_config(cls, config: Any, **kwargs) -> Forwarder | None:
        """The forwarder a collector Config asks for, or None without an [influxdb] section.

        The token is read here (env var or file, see config.InfluxTarget) and handed only to
        the client. The journal is opened by the forwarder's own thread on `start()`.
        Raises:
            ConfigError: the token is not set or unreadable.
        """
        target = config.influxdb
        if target is None:
            return None
        from ..journal import Journal

        writer = InfluxWriter(target.url, target.token(), target.org, target.bucket)
        path = config.journal_path
        return cls(lambda: Journal(path, sync="normal"), writer,
                   placements_from(config.nodes.values()), **kwargs)

    # -- one step -------------------------------------------------------------------------
    def _journal_now(self):
        if self._journal is None:
            self._journal = self._journal_arg()
        return self._journal

    def _skip(self, row: Any, why: str) -> None:
        self.stats.events_skipped += 1
        log.error("InfluxDB forwarder skips event %s (%s): %s", _row_id(row), _kind(row), why)

    def _write(self, lines: list[str]) -> None:
        try:
            self.writer.write(lines)
        except WriteError as exc:
            self.stats.write_failures += 1
            self.stats.consecutive_failures += 1
            self.stats.last_error = str(exc)
            log.warning("InfluxDB write of %d points failed (%d in a row): %s",
                        len(lines), self.stats.consecutive_failures, exc)
            raise
        if self.stats.consecutive_failures:
            log.info("InfluxDB write succeeded again after %d failed attempts",
                     self.stats.consecutive_failures)
        self.stats.consecutive_failures = 0
        self.stats.writes += 1
        self.stats.points_written += len(lines)

    def run_once(self) -> Step:
        """Read one batch after the cursor, write it, and advance the cursor on success.

        A failed write leaves the cursor where it was (the batch is retried later, and
        rewriting points that did arrive is harmless). Events that can never be written
        (malformed data, refused by the server on their own) are logged, counted and passed.
        Once caught up, the rejects table is written too if it changed.
        """
        journal = self._journal_now()
        step = self._events_step(journal)
        if step.failed or step.more:
            return step
        extra = self._ship_rejects(journal)
        return step._replace(points=step.points + extra.points, failed=extra.failed,
                             error=extra.error)

    def _events_step(self, journal) -> Step:
        last_id = journal.get_cursor(self.cursor) or 0
        rows = list(journal.events_after(last_id, self.batch_size))
        if not rows:
            return Step(0, 0, False, False)
        per_row: list[tuple[Any, list[str]]] = []
        for row in rows:
            try:
                per_row.append((row, [p.to_line_protocol()
                                      for p in event_points(row, self.placements)]))
            except EventDataError as exc:
                self._skip(row, str(exc))
        lines = [line for _, row_lines in per_row for line in row_lines]
        more = len(rows) == self.batch_size
        try:
            if lines:
                self._write(lines)
        except WriteError as exc:
            if not exc.rejected or len(per_row) == 1:
                if exc.rejected:
                    self._skip(per_row[0][0], str(exc))
                    journal.set_cursor(self.cursor, _row_id(rows[-1]))
                    return Step(len(rows), 0, False, more)
                return Step(0, 0, True, more, exc)
            return self._one_by_one(journal, rows, per_row, more)
        journal.set_cursor(self.cursor, _row_id(rows[-1]))
        self.stats.events_forwarded += len(per_row)
        return Step(len(rows), len(lines), False, more)

    def _ship_rejects(self, journal) -> Step:
        """Write the rejects table when it changed since the last successful write."""
        snapshot = journal.rejects() if hasattr(journal, "rejects") else {}
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
            return Step(0, 0, True, False, exc)
        self._rejects_sent = snapshot
        return Step(0, len(lines), False, False)

    def _one_by_one(self, journal, rows, per_row, more) -> Step:
        """After the server refused a batch: find the culprits, keep the cursor exact."""
        written = 0
        for row, lines in per_row:
            try:
                if lines:
                    self._write(lines)
            except WriteError as exc:
                if not exc.rejected:
                    return Step(0, written, True, more, exc)
                self._skip(row, str(exc))
            else:
                written += len(lines)
                self.stats.events_forwarded += 1
            journal.set_cursor(self.cursor, _row_id(row))
        journal.set_cursor(self.cursor, _row_id(rows[-1]))
        return Step(len(rows), written, False, more)

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
                    self._stop.wait(self.retry.delay_s(failures, self._rand))
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
        if self._journal is not None and self._journal is not self._journal_arg:
            close = getattr(self._journal, "close", None)
            if close is not None:
                close()
            self._journal = None


def _row_id(row: Any) -> int:
    return row["id"] if isinstance(row, Mapping) else getattr(row, "id", None) or row["id"]


def _kind(row: Any) -> str:
    return row["kind"] if isinstance(row, Mapping) else getattr(row, "kind", None) or row["kind"]

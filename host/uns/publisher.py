"""Publishes the journal to the UNS: frames as `_raw`, events as state / count / oee / reason.

Store and forward, like the InfluxDB forwarder: each lane reads its journal table after its
cursor, hands one batch to its sink, and moves the cursor only once the broker stored all of
it. While a broker is away the journal is the queue; when it is back the backlog goes out in
order. Runs in a process of its own (process.py), so publishing never takes CPU from ingest.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SinkError
from .settings import UnsConfig
from .sinks import PublishError, Sink
from .topics import EVENT_KINDS, Message, Places, event_message, raw_message, subject

__all__ = ["Lane", "LaneStats", "Publisher", "build_publisher"]

log = logging.getLogger(__name__)

CURSOR_RAW, CURSOR_EVENTS = "uns_raw", "uns_events"
# A step only looks whether its batch was acknowledged: waiting here would hold the other
# lane up (raw frames behind a slow retained-state store); the run loop polls instead.
_WAIT_SLICE_S = 0.0
_FLUSH_S = 5.0
# A lane writes its cursor at most this often (and whenever it has caught up): each write
# takes the journal's write lock, which ingest's commits need. After a crash at most this
# much is published again, copies a subscriber drops (JetStream: none, see _reposition).
_CURSOR_SAVE_S = 1.0


@dataclass
class LaneStats:
    published: int = 0
    skipped: int = 0
    failures: int = 0
    last_error: str | None = None


class Lane:
    """One journal table -> one sink, in id order; its position is the cursor `cursor`.

    Args:
        name: for log lines ("raw", "events").
        read: (journal, after_id, limit) -> rows with `.id`, oldest first.
        build: rows -> messages (rows it cannot or need not publish give none).
        sink: a Sink. batch: rows per batch. retry_max_s: cap of the backoff after failures.
    """

    def __init__(self, name: str, cursor: str, read: Callable, build: Callable, sink: Sink, *,
                 batch: int = 500, retry_max_s: float = 30.0,
                 rand: Callable[[], float] = random.random):
        self.name, self.cursor, self.read, self.build, self.sink = name, cursor, read, build, sink
        self.batch, self.retry_max_s, self._rand = batch, retry_max_s, rand
        self.stats = LaneStats()
        self._pending: tuple[int, int, Any] | None = None  # last row id, messages, handle
        self._failures = 0
        self._retry_at = 0.0
        self._cursor: int | None = None  # in memory; read from the journal on first use
        self._saved: int | None = None
        self._saved_at = float("-inf")

    def backoff_s(self, failures: int) -> float:
        """Exponential from 1 s, capped at retry_max_s, shortened by up to 20 % (jitter)."""
        return min(self.retry_max_s, 2.0 ** min(failures - 1, 16)) * (1 - 0.2 * self._rand())

    def step(self, journal: Any, now_s: float) -> bool:
        """Publish (or go on waiting for) one batch; True if the cursor moved."""
        if now_s < self._retry_at:
            return False
        try:
            if self._pending is None:
                moved = self._next(journal, now_s)
                if self._pending is None:
                    return moved  # nothing to read, or nothing in it to publish
            last_id, n, handle = self._pending
            if not self.sink.wait(handle, _WAIT_SLICE_S):
                return False  # not yet acknowledged: the broker is slow or away
        except PublishError as exc:
            self._pending = None  # read again from the journal, after the broker's copy
            self._failures += 1
            self.stats.failures += 1
            self.stats.last_error = str(exc)
            delay = self.backoff_s(self._failures)
            self._retry_at = now_s + delay
            if self._failures == 1 or self._failures % 10 == 0:
                log.warning("UNS %s: %s (%d failed attempts; next in %.0f s; the journal keeps "
                            "everything)", self.name, exc, self._failures, delay)
            return False
        self._move(journal, last_id, now_s)
        self._pending = None
        self.stats.published += n
        if self._failures:
            log.info("UNS %s: publishing again after %d failed attempts", self.name,
                     self._failures)
            self._failures = 0
        return True

    def _next(self, journal: Any, now_s: float) -> bool:
        """Read the next batch and hand it to the sink (now pending); True if the cursor
        moved past rows with nothing to publish instead."""
        if self.sink.needs_position:
            self._reposition(journal, self.sink.position())
        rows = self.read(journal, self.position(journal), self.batch)
        if not rows:
            self.save(journal, now_s)  # caught up: the journal may as well know
            return False
        messages = self.build(rows)
        self.stats.skipped += len(rows) - len(messages)
        if messages:
            self._pending = (rows[-1].id, len(messages), self.sink.send(messages))
            return False
        self._move(journal, rows[-1].id, now_s)
        return True

    def position(self, journal: Any) -> int:
        """The id of the last row published (the cursor, as this lane knows it)."""
        if self._cursor is None:
            self._cursor = self._saved = journal.get_cursor(self.cursor) or 0
        return self._cursor

    def _move(self, journal: Any, last_id: int, now_s: float) -> None:
        self._cursor = last_id
        if now_s - self._saved_at >= _CURSOR_SAVE_S:
            self.save(journal, now_s)

    def save(self, journal: Any, now_s: float | None = None) -> None:
        """Write the cursor to the journal if it moved since the last write."""
        if self._cursor is not None and self._cursor != self._saved:
            journal.set_cursor(self.cursor, self._cursor)
            self._saved = self._cursor
        self._saved_at = time.monotonic() if now_s is None else now_s

    def _reposition(self, journal: Any, keys: list[str]) -> None:
        """Resume right after the newest of our frames the broker holds (ids node.boot.seq);
        messages someone else put after it are passed over."""
        for key in keys:
            try:
                node_id, boot_id, seq = (int(x) for x in key.split("."))
            except ValueError:
                continue
            frame_id = journal.frame_id(node_id, boot_id, seq)
            if frame_id is None:
                continue
            if key != keys[0]:
                log.error("UNS %s: the stream holds messages that are not frames of this "
                          "journal after frame %d: does another collector publish into it?",
                          self.name, frame_id)
            cursor = self.position(journal)
            if frame_id != cursor:
                log.info("UNS %s: the stream ends at frame %d (cursor %d): resuming after it",
                         self.name, frame_id, cursor)
                self._cursor = frame_id
                self.save(journal)
            return
        if keys:
            log.error("UNS %s: the stream's last %d messages are not frames of this journal: "
                      "does another collector publish into it? Going on from the cursor",
                      self.name, len(keys))

    def close(self) -> None:
        self.sink.close()


class Publisher:
    """Its lanes, stepped in turn on one journal connection (the publisher process's own)."""

    def __init__(self, journal: Any, lanes: list[Lane], *,
                 clock: Callable[[], float] = time.monotonic):
        self.journal, self.lanes, self.clock = journal, lanes, clock

    def run_once(self) -> bool:
        """One step of every lane; True if any moved (there may be more at once)."""
        now = self.clock()
        moved = [lane.step(self.journal, now) for lane in self.lanes]  # every lane, each time
        return any(moved)

    def run(self, stop: Any, poll_s: float = 0.02) -> None:
        """Until `stop` (an Event) is set: publish what the journal gets, polling every
        poll_s when idle; then a last bounded flush."""
        while not stop.is_set():
            try:
                moved = self.run_once()
            except Exception:  # a journal error, a bug: never silent, never the end of it
                log.exception("UNS publisher step failed; trying again in 1 s")
                stop.wait(1.0)
                continue
            if not moved:
                stop.wait(poll_s)
        deadline = self.clock() + _FLUSH_S
        while self.clock() < deadline and self.run_once():
            pass

    def close(self) -> None:
        """Write the cursors, close the sinks."""
        closed = set()
        for lane in self.lanes:
            try:
                lane.save(self.journal)
            except SinkError as exc:
                log.error("UNS %s: cursor not written (published again next time): %s",
                          lane.name, exc)
            if id(lane.sink) not in closed:
                closed.add(id(lane.sink))
                lane.close()


def _frames(root: str, places: Places) -> Callable[[list], list[Message]]:
    def build(rows):
        out = []
        for r in rows:
            plant = places.plants.get(r.node_id)
            if plant is None:
                log.warning("UNS raw: frame %d of node %d not published: the node is not in "
                            "the registry", r.id, r.node_id)
                continue
            out.append(raw_message(root, plant, r.node_id, r.boot_id, r.seq, r.type, r.rx_s,
                                   r.source, r.raw))
        return out
    return build


def _events(root: str, places: Places) -> Callable[[list], list[Message]]:
    def build(rows):
        out = []
        for r in rows:
            if r.kind not in EVENT_KINDS:
                continue
            try:
                msg = event_message(root, places, r.id, r.ts_s, r.kind, r.node_id, r.machine,
                                    json.loads(r.data))
            except (ValueError, TypeError, KeyError) as exc:
                log.error("UNS events: event %d (%s) not published: %s", r.id, r.kind, exc)
                continue
            if msg is not None:
                out.append(msg)
        return out
    return build


def build_publisher(cfg: UnsConfig, places: Places, journal: Any) -> Publisher:
    """The Publisher a [uns] table asks for: events (and `_raw`, unless raw = false) to the
    MQTT broker, or `_raw` to a JetStream stream when raw_url is set."""
    from .mqtt import MqttSink

    mqtt = MqttSink(cfg.broker, cfg.auth, cfg.client_id, retry_max_s=cfg.retry_max_s)
    opts = {"batch": cfg.batch, "retry_max_s": cfg.retry_max_s}
    lanes = [Lane("events", CURSOR_EVENTS, lambda j, a, n: j.events_after(a, n),
                  _events(cfg.topic_root, places), mqtt, **opts)]
    if cfg.raw:
        raw_sink: Sink = mqtt
        if cfg.raw_broker is not None:
            from .jetstream import JetStreamSink

            plants = sorted(set(places.plants.values()))
            raw_sink = JetStreamSink(
                cfg.raw_broker, cfg.auth, cfg.raw_stream,
                [f"{subject(cfg.topic_root)}.{p}._raw.>" for p in plants],
                replicas=cfg.raw_replicas, max_age_s=cfg.raw_max_age_days * 86400.0,
                name=cfg.client_id)
        lanes.insert(0, Lane("raw", CURSOR_RAW, lambda j, a, n: j.frames_after(a, n),
                             _frames(cfg.topic_root, places), raw_sink, **opts))
    return Publisher(journal, lanes)

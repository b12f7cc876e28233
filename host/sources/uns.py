"""Frames from a broker ([[uns_source]]): a site's `_raw` messages, re-verified with this
collector's own registry and fed to Collector.submit with the time the site received them.

A central collector built this way journals and derives exactly what the site did: the
same frames, in the same order, at the same receive times. Its clock is that time too
(StreamClock), so a site catching up after an outage is not taken for a silent one.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ProtocolError
from ..uns.settings import UnsSourceConfig
from ..uns.sinks import PublishError
from ..uns.topics import RawMessage, parse_raw, raw_topic, subject

__all__ = ["StreamClock", "UnsSource"]

log = logging.getLogger(__name__)

TICK_S = 1.0  # as the runtime's ticker: silence and OEE are looked at once a second
# A pull that found the stream empty waits for new messages until this timeout (nats-py then
# keeps collecting until it too): the longest a frame waits here once in the stream.
_FETCH_TIMEOUT_S = 0.05
_RETRY_S = (1.0, 30.0)
_IDS = struct.Struct(">HIBH")  # a frame's node id, boot id and seq (hi, lo) after its type


class StreamClock:
    """A broker-fed collector's clock: the time its sites received their frames.

    Per plant the newest receive time seen; the clock reads the slowest plant's, so one site
    still catching up never makes another site's machines look silent. Before any frame it
    reads the journal's newest (after a restart), or `fallback` for an empty journal.

    Args:
        journal_path: the collector's journal. plants: node id -> plant (the registry).
    """

    def __init__(self, journal_path: str | Path, plants: Mapping[int, str], *,
                 fallback: Callable[[], float] = time.time):
        self._path, self._plants, self._fallback = journal_path, plants, fallback
        self._seen: dict[str, float] = {}
        self._start: float | None = None
        self._last_tick = float("-inf")

    def __call__(self) -> float:
        if self._seen:
            return min(self._seen.values())
        if self._start is None:
            from ..journal.uns import UnsJournal

            with UnsJournal(self._path) as journal:
                self._start = journal.last_rx_s()
            if self._start is None:
                return self._fallback()
        return self._start

    def observe(self, node_id: int, rx_s: float) -> bool:
        """A frame of `node_id` received at `rx_s`; True when a tick is due (at `self()`)."""
        plant = self._plants.get(node_id)
        if plant is None:
            return False  # not in the registry: the frame will be refused anyway
        if rx_s > self._seen.get(plant, float("-inf")):
            self._seen[plant] = rx_s
        now = self()
        if now - self._last_tick >= TICK_S:
            self._last_tick = now
            return True
        return False


class UnsSource:
    """One [[uns_source]]: an MQTT persistent session or a JetStream durable consumer.

    Args:
        collector: the Collector (submit, reject, flush, tick, stats).
        cfg: the table. clock: the runtime's StreamClock (ticks are driven from here).
    """

    def __init__(self, collector: Any, cfg: UnsSourceConfig, clock: StreamClock | None = None):
        self.collector, self.cfg, self.clock = collector, cfg, clock
        self.label = cfg.label
        self.batches = self.frames = 0  # delivered, for tests and the log
        self._feed: Any = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        cfg = self.cfg
        topic = raw_topic(cfg.topic_root, cfg.plant, "+")
        if cfg.broker.is_nats:
            from ..uns.jetstream import JetStreamFeed

            filt = subject(topic).replace(".+.", ".*.").replace(".+", ".*")
            self._feed = JetStreamFeed(cfg.broker, cfg.auth, cfg.stream, cfg.name, filt,
                                       what=f"UNS source {self.label}")
            self._task = asyncio.get_running_loop().create_task(self._pull())
        else:
            from ..uns.mqtt import MqttFeed

            self._feed = MqttFeed(cfg.broker, cfg.auth, cfg.name, topic, self.deliver,
                                  asyncio.get_running_loop(), what=f"UNS source {self.label}")
            self._feed.start()
        log.info("taking frames from %s (%s)", cfg.broker.url, cfg.stream or topic)

    def deliver(self, payloads: list[bytes]) -> bool:
        """Submit a batch of `_raw` payloads, then commit. True if the journal took it (the
        broker may forget it now); False: keep it and deliver it again later, in order."""
        c = self.collector
        failures = c.stats.commit_failures
        for payload in payloads:
            try:
                m = _checked(parse_raw(payload))
            except ProtocolError as exc:
                c.reject(self.label, exc)
                continue
            if self.clock is not None and self.clock.observe(m.node, m.rx_s):
                c.tick()  # the site's second has passed: silence and OEE, as the site did
            c.submit(m.frame, f"{self.label}/{m.source}", None, self.label, rx_s=m.rx_s)
        c.flush()
        if c.stats.commit_failures != failures:
            return False
        self.batches += 1
        self.frames += len(payloads)
        return True

    async def _pull(self) -> None:
        feed, failures = self._feed, 0
        while True:
            try:
                msgs = await feed.fetch(self.cfg.batch, _FETCH_TIMEOUT_S)
            except PublishError as exc:
                failures += 1
                delay = min(_RETRY_S[1], _RETRY_S[0] * 2 ** min(failures - 1, 8))
                if failures == 1 or failures % 10 == 0:
                    log.warning("UNS source %s: %s (%d failed attempts; next in %.0f s)",
                                self.label, exc, failures, delay)
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("UNS source %s: receiving again after %d failed attempts",
                         self.label, failures)
                failures = 0
            if not msgs:
                continue
            payloads = [m.data for m in msgs]
            # AckAll acknowledges everything up to the last: never fetch past a batch the
            # journal did not take, or it would be acknowledged unstored.
            while not self.deliver(payloads):
                await asyncio.sleep(_RETRY_S[0])
            await feed.ack(msgs[-1])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
            await self._feed.close()
        elif self._feed is not None:
            await asyncio.to_thread(self._feed.stop)
        self._feed = None


def _checked(m: RawMessage) -> RawMessage:
    """The message's node, boot and seq must be its frame's (which submit authenticates)."""
    if len(m.frame) >= 1 + _IDS.size:
        node, boot, hi, lo = _IDS.unpack_from(m.frame, 1)
        if (node, boot, (hi << 16) | lo) == (m.node, m.boot, m.seq):
            return m
    raise ProtocolError("bad_message", f"_raw message {m.node}.{m.boot}.{m.seq} does not "
                        "match its frame")

"""Runs a collector: journal, deriver (rebuilt from the journal), sources, 1 s tick, clean stop.

`CollectorRuntime` is the asyncio face (`lampwatch collect` awaits `run(stop)`);
`CollectorThread` runs one on its own loop in a background thread for the demo and the
Andon board, and hands out live state safely across the thread boundary.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .boot_counts import BOOTS_KEPT
from .collector import Collector
from .derive import Deriver, DeriverProtocol
from .errors import ProtocolError, SinkError
from .events import Event
from .hostclock import HostClock
from .journal import Journal
from .journal.history import HistoryJournal
from .protocol import Frame, Header, decode_body, decode_header
from .sources.udp import UdpSource
from .upkeep import JournalUpkeep

if TYPE_CHECKING:
    from .sources.serial import SerialSource

__all__ = ["CollectorRuntime", "CollectorThread", "replay"]

log = logging.getLogger(__name__)

TICK_S = 1.0
_REPLAY_MIN_S = 600.0
# No shift to rebuild: the state changes a shift starting now would read (host/live_oee.py
# keeps about the last hour's between shifts); the rest comes from each machine's last state
# and each boot's last count. (A day was read: 5 h of a 1,000-node plant took 17.8 s.)
_IDLE_REPLAY_S = 3600.0
# Per node, its last frames before it was last heard (> 30 min of heartbeats at 5 s): they
# rebuild its clock anchor, lamps and last heard however long ago that was.
_TAIL_FRAMES = 512
# Of a node's frames of the boot it was last heard from, those before its last
# _FULL_FRAMES (by seq) only feed its clock anchor, their bodies not read (Deriver.replay):
# their lamps, counts and last heard are superseded by the newer frames' (a stale lamp byte
# is ignored, counts are per-boot totals). The rest go through the whole derivation: those
# newer frames and the frames of other boots. Except a node that may have come back from
# silence within its last _BACK_S (its frame _FULL_FRAMES before its last received since,
# or not stored): the deriver holds such a node's lamp information for 20 s
# (host/derive.py), so the frames from before its silence are not superseded yet, and all
# of its frames go whole. A restart of 1,000 nodes spent ~85 % of its 8.2 s on the 513,000
# frames of their tails (cProfile, ad hoc, 2026-12-02); without shifts a restart now takes
# about half as long (bench/live.py, README).
_FULL_FRAMES = 64
_BACK_S = 25.0


def _row_id(row: Any) -> int:
    return row.id


def replay(deriver: DeriverProtocol, journal: Journal, config: Any, now_s: float) -> int:
    """Rebuild the deriver's memory from the journal after a restart; returns the frames the
    deriver took. Both go to it as streams, decoded as it reads them (deriver.replay).

    Frames: each node's last frames before it was last heard (the journal's `heard` table:
    clock anchor, lamps, last heard, whatever the outage's length), and every frame of the
    last few heartbeat periods. Events: the last count of each node's newest boots (so
    per-boot totals never count twice), each machine's last state and hello from before the
    shifts it rebuilds (the running one and any that may still owe its final point; else
    the last hour), then everything since (with the shifts' final points).
    """
    periods = [3 * n.heartbeat_s for n in config.nodes.values()] or [0.0]
    replayed = [0]

    def frames() -> Iterator[tuple[Frame | Header, float]]:
        """Read and decoded as the deriver takes them (512 frames a node add up: as rows
        ~130 MB at 1,000 nodes, decoded 1.2 KB a frame); those only the clock anchor takes
        (_FULL_FRAMES) as their authenticated headers."""
        heard = journal.heard()
        rx_k = journal.received_at([(h.node_id, h.boot_id, h.seq - _FULL_FRAMES)
                                    for h in heard])
        full_from = {(h.node_id, h.boot_id): h.seq - _FULL_FRAMES for h in heard
                     if rx_k.get((h.node_id, h.boot_id, h.seq - _FULL_FRAMES), h.rx_s)
                     < h.rx_s - _BACK_S}
        key_of = config.key_of
        for rx_s, raw in journal.replay_frames(heard, _TAIL_FRAMES,
                                               now_s - max(_REPLAY_MIN_S, 3 * max(periods))):
            try:
                header = decode_header(raw, key_of)
                if header.seq < full_from.get((header.node_id, header.boot_id), -1):
                    replayed[0] += 1
                    yield header, rx_s
                    continue
                frame = decode_body(header, raw)
            except ProtocolError:
                continue  # a node removed from the registry, or its key changed
            replayed[0] += 1
            yield frame, rx_s

    # From the start of every shift the deriver evaluates after the replay: the one running
    # now, and those at the journal's latest time and a few heartbeat periods before it,
    # whose final point may be owed (ShiftOEE.resume: one period and a second). After an outage across a shift's end these
    # differ: read from the running shift's start only, the ended shift's final point was
    # made from its last state and one count.
    cal = config.calendar
    latest_s = journal.last_time()
    times = [now_s] + ([] if latest_s is None else [latest_s, latest_s - max(periods) - 1.0])
    starts = [i.start for i in map(cal.shift_at, times) if i is not None] if cal.shifts else []
    since = min(starts) if starts else now_s - _IDLE_REPLAY_S
    # (each node's newest boots only: live, its count maxima keep no more; a node that is
    # powered up every day has hundreds in a year's journal)
    latest = {r.id: r for r in journal.last_counts(per_node=BOOTS_KEPT)}
    # A machine that has not changed state since before the shift began still needs that
    # state (and its start) to rebuild the shift's timeline.
    latest.update((r.id, r) for r in journal.last_before("state", since))
    # and a node's heartbeat period is what its last hello said, however long ago
    latest.update((r.id, r) for r in journal.last_before("hello", since))
    read = [0]

    def events() -> Iterator[Event]:
        """The few rows above and the shift's events (streamed: a million or more), merged
        in id order, each once. (By hand: heapq.merge cost ~0.1 s a million rows more.)"""
        extra = sorted(latest.values(), key=_row_id)
        k, n = 0, len(extra)
        from_row = Event.from_row
        for r in journal.replay_events(since):
            rid = r.id
            while k < n and extra[k].id <= rid:
                x = extra[k]
                k += 1
                if x.id < rid:  # (one of the same id comes from the stream)
                    read[0] += 1
                    yield from_row(x.ts_s, x.kind, x.node_id, x.machine, x.data)
            read[0] += 1
            yield from_row(r.ts_s, r.kind, r.node_id, r.machine, r.data)
        for x in extra[k:]:
            read[0] += 1
            yield from_row(x.ts_s, x.kind, x.node_id, x.machine, x.data)

    deriver.replay(frames(), events())
    log.info("rebuilt state from the journal: %d frames, %d events", replayed[0], read[0])
    return replayed[0]


class CollectorRuntime:
    """Everything `lampwatch collect` runs, for one config.

    Args:
        config: a validated Config.
        deriver: default a Deriver of `config` (any DeriverProtocol).
        clock: host wall time (epoch s). mono: a monotonic clock (s). Both default to the
            system's; given a clock but no mono (the demo's accelerated clock, a test's),
            that one clock is both. `self.clock` is then the HostClock's event time, which
            never goes back (host/hostclock.py): what the collector, board and reasons use.
        forward: start the InfluxDB forwarder when the config has an [influxdb] table.
    """

    def __init__(self, config: Any, *, deriver: DeriverProtocol | None = None,
                 clock: Callable[[], float] | None = None,
                 mono: Callable[[], float] | None = None, forward: bool = True,
                 serial_backoff_s: tuple[float, float] = (0.5, 10.0)):
        self.stream_clock = None
        if getattr(config, "uns_sources", ()):  # UNS (issue 16): runs on its sites' time
            from .sources.uns import StreamClock

            # One clock as wall and monotonic: event time is the sites' receive time.
            clock = mono = self.stream_clock = StreamClock(
                config.journal_path, {n.node_id: n.plant for n in config.nodes.values()})
        if clock is None:
            clock, mono = time.time, mono or time.monotonic
        self.host = HostClock(clock, mono or clock)
        self.config, self.clock, self.forward = config, self.host.now, forward
        self._own_deriver = deriver is None
        self.deriver: DeriverProtocol = (deriver if deriver is not None
                                         else Deriver(config, host=self.host))
        self.serial_backoff_s = serial_backoff_s
        self.journal: Journal | None = None
        self.collector: Collector | None = None
        self.udp: UdpSource | None = None
        self.serial: list[SerialSource] = []
        self.forwarder = None
        self.board = None
        self._tick_task: asyncio.Task | None = None
        self.uns_publisher = None  # UNS (issue 16): a uns.process.PublisherProcess
        self.uns_sources: list = []
        self._uns_task: asyncio.Task | None = None

    @property
    def udp_address(self) -> tuple[str, int] | None:
        return self.udp.address if self.udp is not None else None

    @property
    def board_url(self) -> str | None:
        """The Andon board's address (the real port when configured with port 0), or None."""
        return self.board.url if self.board is not None else None

    async def start(self) -> None:
        cfg = self.config
        self.journal = HistoryJournal(cfg.journal_path, sync=cfg.journal_sync)
        try:
            last = self.journal.last_time()
            if last is not None:
                self.host.hold_from(last)  # event time never before what is journaled
            from .history.versions import record_config  # issue 14: the config in force

            record_config(self.journal, cfg, self.clock())
            replay(self.deriver, self.journal, cfg, self.clock())
            upkeep = JournalUpkeep(self.journal, retention_days=cfg.retention_days,
                                   short_stop_s=cfg.short_stop_s,
                                   pm_policy=cfg.planned_maintenance)  # issue 14
            self.collector = Collector(cfg, self.journal, self.deriver, clock=self.clock,
                                       upkeep=upkeep)
            if cfg.udp_listen is not None:
                self.udp = UdpSource(self.collector, *cfg.udp_listen)
                await self.udp.start()
            for sp in cfg.serial:
                # pyserial is imported only where a serial link is configured (0.4 MB RSS)
                from .sources.serial import SerialSource
                src = SerialSource(self.collector, sp.port, sp.baud, backoff_s=self.serial_backoff_s)
                await src.start()
                self.serial.append(src)
            if self.forward and cfg.influxdb is not None:
                self._start_forwarder()
            await self._start_uns()
            if cfg.board_listen is not None:
                from .board.server import BoardServer

                pin = cfg.board_pin.value() if cfg.board_pin is not None else None
                self.board = BoardServer(self, *cfg.board_listen, pin=pin,
                                         hosts=cfg.board_hosts, sse_slots=cfg.board_sse_slots,
                                         lang=cfg.board_lang)
                await self.board.start()
        except BaseException:
            await self.stop()
            raise
        if not self.uns_sources:  # a broker-fed collector ticks on its sites' time (sources/uns.py)
            self._tick_task = asyncio.get_running_loop().create_task(self._ticker())
        log.info("collector running: %d node(s), journal %s", len(cfg.nodes), cfg.journal_path)

    def _start_forwarder(self) -> None:
        from .influx.forwarder import forwarder_for

        self.forwarder = forwarder_for(self.config)
        self.forwarder.start()
        self.collector.on_commit = lambda n: self.forwarder.notify()
        target = self.config.influxdb
        log.info("forwarding to InfluxDB %s bucket %s", target.url, target.bucket)

    # -- UNS wiring (issue 16): the publisher process and the broker sources -------------------
    async def _start_uns(self) -> None:
        cfg = self.config
        if self.forward and getattr(cfg, "uns", None) is not None:
            from .uns.process import PublisherProcess

            self.uns_publisher = PublisherProcess(cfg)
            self.uns_publisher.start()
            self._uns_task = asyncio.get_running_loop().create_task(
                self.uns_publisher.supervise())
        for sc in getattr(cfg, "uns_sources", ()):
            from .sources.uns import UnsSource

            src = UnsSource(self.collector, sc, self.stream_clock)
            self.uns_sources.append(src)
            await src.start()

    async def _stop_uns_sources(self) -> None:
        for src in self.uns_sources:
            await src.stop()

    async def _stop_uns_publisher(self) -> None:
        """After the last commit, so the publisher's final flush takes it along."""
        if self._uns_task is not None:
            self._uns_task.cancel()
            self._uns_task = None
        if self.uns_publisher is not None:
            await asyncio.to_thread(self.uns_publisher.stop)
            self.uns_publisher = None
    # -- end of the UNS wiring ----------------------------------------------------------------

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.collector.tick()
            except Exception:  # a dying tick task must not be silent, nor stop ticking
                log.exception("collector tick failed")

    async def stop(self) -> None:
        """Stop listening, commit what is pending, stop the forwarder, close the journal."""
        if self.board is not None:
            await self.board.stop()
            self.board = None
        if self._tick_task is not None:
            self._tick_task.cancel()
            self._tick_task = None
        if self.udp is not None:
            self.udp.stop()
        for src in self.serial:
            await asyncio.to_thread(src.stop)
        await self._stop_uns_sources()
        if self.collector is not None:
            self.collector.tick()  # pending frames (and their ACKs) and the last events
            try:  # what the deriver held back for its order, journaled before we go
                self.journal.commit(events=self.deriver.drain(self.clock()))
            except SinkError as exc:
                log.error("the deriver's held events were not journaled: %s", exc)
            log.info("collector stopped: %d frames accepted, %d rejected",
                     self.collector.stats.accepted, self.collector.stats.rejected)
        if self.forwarder is not None:
            await asyncio.to_thread(self.forwarder.stop)
            self.forwarder = None
        await self._stop_uns_publisher()
        if self.journal is not None:
            self.journal.close()
            self.journal = None

    def add_reason(self, machine: str, reason: str, start_s: float, end_s: float | None = None,
                   by: str = "board"):
        """An operator's stop reason: journaled as a `reason` event, then taken into the
        running shift's OEE. Call on the collector's loop; arguments already validated.

        Returns the Event. Raises SinkError if the journal cannot store it.
        """
        node = next((n for n in self.config.nodes.values() if n.machine == machine), None)
        ev = Event(self.clock(), "reason", node.node_id if node else None, machine,
                   {"reason": reason, "start_s": start_s, "end_s": end_s, "by": by})
        self.collector.store_now([ev])  # after what was derived before it
        self.deriver.add_reason(ev)
        if self.board is not None:
            self.board.reason_added(machine, reason, start_s, end_s)
        if self.collector.on_commit is not None:
            self.collector.on_commit(1)
        return ev

    async def run(self, stop: asyncio.Event) -> None:
        """Start, wait for `stop`, stop cleanly."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


class CollectorThread:
    """A CollectorRuntime on its own event loop in a daemon thread.

        ct = CollectorThread(config).start()   # returns once listening (or raises)
        ct.udp_address; ct.snapshot(); ct.stats(); ct.call(fn, ...)
        ct.stop()
    """

    def __init__(self, config: Any, **runtime_kwargs):
        self.runtime = CollectorRuntime(config, **runtime_kwargs)
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started: concurrent.futures.Future = concurrent.futures.Future()

    def start(self, timeout_s: float = 30.0) -> CollectorThread:
        self._thread = threading.Thread(target=self._main, name="collector", daemon=True)
        self._thread.start()
        self._started.result(timeout_s)  # re-raises a startup error here
        return self

    def _main(self) -> None:
        async def main():
            self._stop = asyncio.Event()
            try:
                await self.runtime.start()
            except Exception as exc:  # noqa: BLE001 - start() re-raises it in the caller
                self._started.set_exception(exc)
                return
            self._started.set_result(True)
            try:
                await self._stop.wait()
            finally:
                await self.runtime.stop()
        self._loop.run_until_complete(main())
        self._loop.close()

    @property
    def udp_address(self) -> tuple[str, int] | None:
        return self.runtime.udp_address

    def call(self, fn: Callable, *args, timeout_s: float = 10.0):
        """Run fn(*args) on the collector's loop and return its result (thread-safe)."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_s)

    def snapshot(self) -> dict:
        """The deriver's live view per machine."""
        return self.call(lambda: self.runtime.deriver.snapshot(self.runtime.clock()))

    def stats(self):
        """A copy of the collector's counters."""
        return self.call(lambda: dataclasses.replace(
            self.runtime.collector.stats, rejects=dict(self.runtime.collector.stats.rejects)))

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._thread is None:
            return
        if self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
        self._thread = None

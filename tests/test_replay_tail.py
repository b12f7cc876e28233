"""A restart's older frames of each node's tail feed only its clock anchor (runtime.replay,
_FULL_FRAMES): the deriver it rebuilds must be the one that took every frame whole.

Real frames go through a real collector (HMAC check, dedupe, journal) on a scripted clock:
jittered and delayed arrivals, a crystal that drifts, lamp changes and parts, a watchdog
reset (a HELLO mid-boot), a reboot, outages after which a node resends its ring (one 20 s
before the restart: the deriver still holds its lamps), a node with a 10 s period whose tail
spans more than the anchor's 30-minute window. Then two
derivers are rebuilt from that journal, one the new way and one with every frame whole (the
way before), and must agree on every clock figure, each machine's view, and every event
they derive from the same frames and ticks afterwards.
"""

import asyncio
import random
import sys

import pytest
from lampwatch import runtime
from lampwatch.config import load_config
from lampwatch.derive import Deriver
from lampwatch.journal import Journal
from lampwatch.node_files import firmware_dir
from lampwatch.protocol import Header, decode
from lampwatch.runtime import CollectorRuntime

sys.path.insert(0, str(firmware_dir()))
import lwproto

T0 = 1_780_041_600.0  # 2026-05-29 08:00 UTC
RUN, STOP = [1, 0, 0, 0, 0], [0, 0, 1, 0, 0]
DOWN = {1: [(2100, 2160)], 3: [(1950, 2010), (2280, 2380)]}  # node: its links' outages (s)


def key(n: int) -> bytes:
    return n.to_bytes(2, "big") * 8


class Node:
    """A simulated node: its own uptime (drifting `ppm` against host time), seq and parts."""

    def __init__(self, n: int, boot: int, period_s: float, ppm: float):
        self.codec, self.n, self.boot = lwproto.Codec(n, key(n)), n, boot
        self.period_s, self.ppm = period_s, ppm
        self.seq, self.good, self.lamps, self.booted = 0, 0, RUN, None

    def uptime(self, t: float) -> int:
        return int((t - self.booted) * (1 + self.ppm * 1e-6) * 1000)

    def hello(self, t: float) -> bytes:
        if self.booted is None:
            self.booted = t - 0.3
        self.seq += 1 if self.seq or self.good else 0
        return self.codec.hello(self.boot, self.seq, self.uptime(t), (0, 3, 0), 0,
                                b"\x00" * 4, 0, 0b111, int(self.period_s * 1000))

    def heartbeat(self, t: float) -> bytes:
        self.seq += 1
        self.good += 1 if self.lamps == RUN else 0
        return self.codec.heartbeat(self.boot, self.seq, self.uptime(t), self.good, 0,
                                    self.lamps)

    def lamp(self, t: float, lamps: list[int]) -> bytes:
        self.seq += 1
        changes = [(ch, st, self.uptime(t) - 5) for ch, (st, was) in
                   enumerate(zip(lamps, self.lamps)) if st != was]
        self.lamps = lamps
        return self.codec.lamp(self.boot, self.seq, self.uptime(t), changes)

    def health(self, t: float) -> bytes:
        self.seq += 1
        return self.codec.health(self.boot, self.seq, self.uptime(t), -60, 90_000, 0, 0, 0,
                                 0, 0)

    def reboot(self, t: float, boot: int) -> bytes:
        self.boot, self.seq, self.good, self.booted = boot, 0, 0, t - 0.3
        return self.hello(t)


class Plant:
    """Four nodes and their link; `run` gives (arrival time, frame) sorted by arrival.

    The restart comes at 2,400 s. Each tail is a node's last 512 frames: node 2's HELLO, node
    1's outage and node 3's reboot lie in the part only the clocks take; node 3 comes back
    from its second outage 20 s before the restart, its resends arriving after frames newer
    than them (in the last minute: taken whole); node 4's tail spans the 40 minutes."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.nodes = [Node(1, 0x100, 1.0, 35.0), Node(2, 0x200, 1.0, -20.0),
                      Node(3, 0x300, 1.0, 10.0), Node(4, 0x400, 10.0, 48.0)]
        self.next = {node.n: T0 + node.period_s for node in self.nodes}

    def run(self, until_s: float) -> list[tuple[float, bytes]]:
        rng, out = self.rng, []

        def send(t: float, frame: bytes, delay: float | None = None) -> None:
            if delay is None:  # a LAN: a few ms, now and then a frame queued up to a second
                delay = rng.expovariate(1 / 0.004) + (rng.random() < 0.03) * rng.random()
            out.append((t + delay, frame))

        for node in self.nodes:
            if node.booted is None:
                send(T0, node.hello(T0))
        for node in self.nodes:
            t, buffered = self.next[node.n], []
            while t < T0 + until_s:
                s = t - T0
                down = DOWN.get(node.n, ())
                if node.n == 2 and abs(s - 2000) < 0.5:  # a watchdog reset: a HELLO mid-boot
                    send(t, node.hello(t))
                elif node.n == 3 and abs(s - 2200) < 0.5:  # a reboot
                    send(t, node.reboot(t, 0x301))
                elif round(s) % 97 == 0:  # the lamps change now and then
                    send(t, node.lamp(t, STOP if node.lamps == RUN else RUN))
                elif round(s) % 60 == 30:
                    send(t, node.health(t))
                else:
                    frame = node.heartbeat(t)
                    if any(a <= s < b for a, b in down):  # its link down: kept in its ring
                        buffered.append(frame)
                    elif buffered:  # back: the fresh frame, then the ring's
                        send(t, frame, 0.002)
                        for k, old in enumerate(buffered):
                            send(t, old, 0.5 + 0.05 * k)
                        buffered = []
                    else:
                        send(t, frame)
                t += node.period_s
            self.next[node.n] = t
        out.sort(key=lambda x: x[0])
        return out


def write_config(tmp_path) -> None:
    lines = ["[collector]", "udp_listen = false", 'journal = "journal.sqlite"',
             'journal_sync = "normal"', "", "[board]", "listen = false", "",
             "[calendar]", 'time_zone = "UTC"', "[[calendar.shifts]]", 'name = "B"',
             'start = "08:00"', 'end = "16:00"', ""]
    for n in range(1, 5):
        lines += ["[[nodes]]", f"id = {n}", 'plant = "p"', 'line = "l"', f'machine = "m{n}"',
                  f'key = "{key(n).hex()}"', "ideal_cycle_s = 1.0", ""]
    (tmp_path / "collector.toml").write_text("\n".join(lines))


def collect(cfg, frames: list[tuple[float, bytes]]) -> None:
    """Every frame through a real collector at its arrival time; a tick each second."""
    now = [T0]

    async def run() -> None:
        rt = CollectorRuntime(cfg, clock=lambda: now[0], forward=False)
        await rt.start()
        try:
            next_tick = T0 + 1.0
            for rx, frame in frames:
                while next_tick <= rx:
                    now[0] = next_tick
                    rt.collector.flush()
                    rt.collector.tick()
                    next_tick += 1.0
                now[0] = rx
                rt.collector.submit(frame, "udp:127.0.0.1:1", None)
            rt.collector.flush()
        finally:
            await rt.stop()

    asyncio.run(run())


class Counting(Deriver):
    """A Deriver that counts what replay gave it whole and as headers."""

    def replay(self, frames, events=()):
        self.kinds = {"whole": 0, "header": 0}

        def seen():
            for item, rx_s in frames:
                self.kinds["header" if type(item) is Header else "whole"] += 1
                yield item, rx_s
        super().replay(seen(), events)


def rebuilt(cfg, now_s: float, full_frames: int, monkeypatch) -> Counting:
    monkeypatch.setattr(runtime, "_FULL_FRAMES", full_frames)
    d = Counting(cfg)
    runtime.replay(d, Journal(cfg.journal_path, sync="normal"), cfg, now_s)
    return d


def sent_from(frames: list[tuple[float, bytes]]) -> set[tuple[int, int, int]]:
    """(node, boot, seq) of every frame: each anchor (boot and epoch) is found by these."""
    return {(int.from_bytes(raw[1:3], "big"), int.from_bytes(raw[3:7], "big"),
             int.from_bytes(raw[7:10], "big")) for _, raw in frames}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_older_frames_only_for_the_clock_rebuild_the_same_deriver(tmp_path, monkeypatch, seed):
    plant = Plant(random.Random(seed))
    write_config(tmp_path)
    cfg = load_config(tmp_path / "collector.toml")
    frames = plant.run(2_400.0)  # 40 minutes: node 4's tail (512 x 10 s) spans them all
    collect(cfg, frames)
    restart_s = frames[-1][0] + 0.5

    new = rebuilt(cfg, restart_s, runtime._FULL_FRAMES, monkeypatch)
    whole = rebuilt(cfg, restart_s, 10**9, monkeypatch)
    # most of the tails' frames went as headers; the way before, none did
    assert whole.kinds["header"] == 0
    assert new.kinds["header"] > 0.6 * sum(new.kinds.values())
    assert sum(new.kinds.values()) == sum(whole.kinds.values())

    # the same clock anchors, of every boot and epoch the nodes sent from
    for n, boot, seq in sorted(sent_from(frames)):
        a_new, a_whole = new._nodes[n].clock.anchor(boot, seq), whole._nodes[n].clock.anchor(
            boot, seq)
        assert a_new.ready == a_whole.ready
        if a_whole.ready:
            assert a_new.figures() == a_whole.figures()
            assert a_new.to_wall(seq * 1_000) == a_whole.to_wall(seq * 1_000)
    assert new.snapshot(restart_s) == whole.snapshot(restart_s)

    # and the same events from the same next five minutes of frames and ticks
    after = plant.run(2_700.0)
    events = {id(new): [], id(whole): []}
    for d in (new, whole):
        next_tick = restart_s + 1.0
        for rx, raw in after:
            while next_tick <= rx:
                events[id(d)] += d.tick(next_tick)
                next_tick += 1.0
            events[id(d)] += d.on_frame(decode(raw, cfg.key_of), rx)
    assert events[id(new)] == events[id(whole)]
    kinds = {e.kind for e in events[id(new)]}
    assert {"count", "state", "health"} <= kinds  # the comparison saw what derivation makes

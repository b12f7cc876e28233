"""Done-when scenario of issue 3: a one-hour shift with flicker, blinking, 10,000 GOOD and 300 NG
pulses, a 5-minute Wi-Fi outage and one watchdog reset, sent by the unmodified firmware on the
virtual node to a real UDP socket on loopback, where a small collector decodes, dedupes and ACKs
every frame. Every lamp change and every count must be accounted for."""

import socket
import threading
import time

import pytest
from lampwatch import protocol
from lampwatch.node_files import example_config
from lampwatch.vnode import Scenario, VirtualNode

# 20 ms passes keep an hour at a few seconds; edges are stamped by IRQ
CONFIG = dict(example_config(), poll_ms=20)
KEY = bytes.fromhex(CONFIG["key"])
NODE = CONFIG["node_id"]
GREEN, YELLOW, RED = 0, 1, 2
OFF, ON, BLINK = 0, 1, 2


class LoopbackCollector:
    """Receives datagrams on 127.0.0.1, keeps each (boot, seq) once, ACKs it."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.address = self.sock.getsockname()
        self.frames: dict[tuple[int, int], protocol.Frame] = {}
        self.duplicates = 0
        self.rejects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            try:
                fr = protocol.decode(data, {NODE: KEY})
            except protocol.ProtocolError:
                self.rejects += 1
                continue
            key = (fr.header.boot_id, fr.header.seq)
            if key in self.frames:
                self.duplicates += 1
            self.frames.setdefault(key, fr)
            for ack in protocol.encode_ack(NODE, fr.header.boot_id, [fr.header.seq], KEY):
                self.sock.sendto(ack, peer)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


def shift() -> Scenario:
    sc = Scenario(duration_s=3600)
    # run A: green lit by a 100 Hz flickering LED driver for two minutes, then steady
    sc.lamp("green", 10, "on", flicker_hz=100).lamp("green", 130, "on")
    sc.pulses("good", 12, n=4500, every_s=0.3, width_s=0.06)
    sc.pulses("ng", 15, n=140, every_s=10, width_s=0.08)
    sc.glitch("yellow", 700, 0.008).glitch("red", 900.5, 0.003)
    # changeover: yellow flashes 1 Hz
    sc.lamp("green", 1500, "off").lamp("yellow", 1500, "blink", hz=1)
    sc.lamp("yellow", 1600, "off").lamp("green", 1600, "on")
    # run B, with a 5-minute Wi-Fi outage; yellow flashes 0.5 Hz during it
    sc.pulses("good", 1605, n=2600, every_s=0.3, width_s=0.06)
    sc.pulses("ng", 1607, n=80, every_s=9.5, width_s=0.08)
    sc.fault("wifi_down", 1700, duration_s=300)
    sc.lamp("yellow", 1800, "blink", hz=0.5).lamp("yellow", 1830, "off")
    # breakdown: red on 120 Hz AC; the node hangs and the watchdog resets it
    sc.lamp("green", 2400, "off").lamp("red", 2400, "on", flicker_hz=120)
    sc.lamp("red", 2500, "on")
    sc.fault("stall", 2450, duration_s=10)
    # run C
    sc.lamp("red", 2600, "off").lamp("green", 2600, "on")
    sc.pulses("good", 2605, n=2900, every_s=0.3, width_s=0.06)
    sc.pulses("ng", 2610, n=80, every_s=10.5, width_s=0.08)
    sc.lamp("green", 3500, "off")
    return sc


# (channel, state, began in simulated ms), in the order they are classified: a blink is
# certain after one period, a steady state after max_phase_ms (1.5 s)
EXPECTED = [
    (GREEN, ON, 10_000), (YELLOW, BLINK, 1_500_000), (GREEN, OFF, 1_500_000),
    (YELLOW, OFF, 1_599_500), (GREEN, ON, 1_600_000), (YELLOW, BLINK, 1_800_000),
    (YELLOW, OFF, 1_829_000), (GREEN, OFF, 2_400_000), (RED, ON, 2_400_000),
    (GREEN, ON, 2_600_000), (RED, OFF, 2_600_000), (GREEN, OFF, 3_500_000),
]


@pytest.fixture
def collector():
    c = LoopbackCollector()
    yield c
    c.close()


def test_one_hour_shift_arrives_complete_at_a_loopback_socket(collector):
    sc = shift()
    assert (sc.expected_pulses("good"), sc.expected_pulses("ng")) == (10_000, 300)
    node = VirtualNode(CONFIG, sc, collector=collector.address, seed=2024)
    t0 = time.monotonic()
    try:
        node.run_until(3600)
        assert node.app.outbox.items == []  # everything acknowledged
    finally:
        node.close()
    wall = time.monotonic() - t0
    print(f"\none simulated hour in {wall:.1f} s wall time "
          f"({3600 / wall:.0f}x real time); {len(node.frames)} datagrams, "
          f"{len(collector.frames)} distinct frames")
    assert wall < 60

    frames = sorted(collector.frames.values(), key=lambda f: f.header.seq)
    assert collector.rejects == 0
    boots = {f.header.boot_id for f in frames}
    assert len(boots) == 1  # the watchdog reset continued the boot
    hellos = [f for f in frames if f.header.type == protocol.T_HELLO]
    assert [h.body.reset_cause for h in hellos] == ["power_on", "watchdog"]

    # uptime = simulated time until the reset; after it, uptime resumed from the last value
    # saved in RTC memory, so it lags by a constant: the 8 s hang until the watchdog bit,
    # the 0.6 s reboot and up to 1 s of staleness. The host re-anchors at each HELLO.
    boot2_us = node.stats()["boots"][1][0]
    lag = boot2_us // 1000 - hellos[1].header.uptime_ms
    assert 8000 + 600 <= lag <= 8000 + 600 + 1000

    events = [(e.channel, e.state, e.uptime_ms) for f in frames
              if f.header.type == protocol.T_LAMP for e in f.body.events]
    expected = [(c, s, t if t < boot2_us // 1000 else t - lag) for c, s, t in EXPECTED]
    assert events == expected

    heartbeats = [f for f in frames if f.header.type == protocol.T_HEARTBEAT]
    assert (heartbeats[-1].body.good, heartbeats[-1].body.ng) == (10_000, 300)
    goods = [h.body.good for h in heartbeats]
    assert goods == sorted(goods)  # cumulative across the reset

    # frames the collector never got are exactly those the node reported dropping
    seqs = [f.header.seq for f in frames]
    missing = set(range(seqs[-1] + 1)) - set(seqs)
    health = [f for f in frames if f.header.type == protocol.T_HEALTH][-1].body
    assert len(missing) == health.frames_dropped > 0
    assert all(collector.frames.get((hellos[0].header.boot_id, s)) is None for s in missing)
    assert health.reconnects == 1
    assert node.app.outbox.dropped_lamp == 0

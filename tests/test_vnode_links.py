"""The virtual node's transports with real OS endpoints: a pty opened like a USB serial port,
and real-time pacing."""

import os
import select
import time

from lampwatch import protocol
from lampwatch.node_files import example_config
from lampwatch.vnode import Scenario, VirtualNode

CONFIG = example_config()
KEY = bytes.fromhex(CONFIG["key"])
NODE = CONFIG["node_id"]


class PtyCollector:
    """Reads frames from the pty's device side and writes ACKs back, as a serial source
    would; driven from the test thread between simulation slices."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        self.deframer = protocol.SerialDeframer()
        self.frames = {}
        self.bad = []

    def pump(self):
        while select.select([self.fd], [], [], 0)[0]:
            data = os.read(self.fd, 4096)
            for chunk in self.deframer.feed(data):
                if isinstance(chunk, protocol.ProtocolError):
                    self.bad.append(chunk.reason)
                    continue
                fr = protocol.decode(chunk, {NODE: KEY})
                self.frames[(fr.header.boot_id, fr.header.seq)] = fr
                for ack in protocol.encode_ack(NODE, fr.header.boot_id, [fr.header.seq], KEY):
                    os.write(self.fd, protocol.serial_frame(ack))

    def close(self):
        os.close(self.fd)


def run_with_collector(node, until_s):
    """Run the node in slices, the collector reading and ACKing its pty between them."""
    col = PtyCollector(node.serial_port)
    try:
        t = 0.0
        while t < until_s:
            t += 0.25
            node.run_until(t)
            col.pump()
    finally:
        col.close()
        node.close()
    return col


def test_serial_transport_over_a_pty_with_acks():
    sc = (Scenario(duration_s=30)
          .lamp("red", 2.0, "on")
          .pulses("good", 1.0, n=20, every_s=0.5))
    node = VirtualNode(CONFIG, sc, serial=True, ack_wait_s=0)  # the collector is this thread
    col = run_with_collector(node, 30)
    frames = sorted(col.frames.values(), key=lambda f: f.header.seq)
    assert col.bad == []
    hello = frames[0]
    assert hello.header.type == protocol.T_HELLO and hello.body.transport_serial
    lamps = [(e.channel, e.state, e.uptime_ms) for f in frames
             if f.header.type == protocol.T_LAMP for e in f.body.events]
    assert lamps == [(2, 1, 2000)]
    hb = [f for f in frames if f.header.type == protocol.T_HEARTBEAT][-1]
    assert hb.body.good == 20
    # ACKs made it back through the pty: nothing left to retransmit but the newest frames
    assert len(node.app.outbox) <= 1
    assert len(node.frames) == len(col.frames)  # and nothing was sent twice


def test_real_time_pacing():
    sc = Scenario(duration_s=3).pulses("good", 0.5, n=2, every_s=0.5)
    node = VirtualNode(CONFIG, sc, speed=10.0)  # ten simulated seconds per real second
    t0 = time.monotonic()
    node.run_until(3.0)
    wall = time.monotonic() - t0
    assert 0.2 <= wall <= 1.5  # paced from the first loop pass (after the 0.6 s boot)


def test_serial_frames_never_mix_with_console_output():
    # the firmware prints at every boot while frames flow; UART0 (the console) carries the
    # text, the frame UART only frames: not one chunk on the pty fails to decode
    sc = (Scenario(duration_s=20)
          .pulses("good", 1.0, n=15, every_s=1.0)
          .fault("soft_reset", 8.2))  # reboots in 0.6 s, between two pulses
    node = VirtualNode(CONFIG, sc, serial=True, ack_wait_s=0)
    col = run_with_collector(node, 20)
    banner = "lampwatch: frames on UART2 (tx GPIO 17, rx GPIO 16, 115200 baud)"
    assert node.console.count(banner) == 2  # one per boot, on the console
    assert node.sim.uart0 == b""  # no frame bytes were written to the console UART
    assert col.bad == []
    frames = sorted(col.frames.values(), key=lambda f: f.header.seq)
    assert [f.body.reset_cause for f in frames if f.header.type == protocol.T_HELLO] == [
        "power_on", "soft"]
    assert [f for f in frames if f.header.type == protocol.T_HEARTBEAT][-1].body.good == 15

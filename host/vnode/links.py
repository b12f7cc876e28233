"""Where a virtual node's frames go: memory (with automatic ACKs), a real UDP socket on
loopback, or a pty that a serial collector opens like a USB serial port."""

from __future__ import annotations

import os
import select
import socket
import time
from dataclasses import dataclass

from .. import protocol
from ..errors import ProtocolError


@dataclass(frozen=True)
class SentFrame:
    """A frame as it left the node: simulated time (s since the first power-up) and bytes."""

    t_s: float
    data: bytes


class Link:
    """Base: records every frame; subclasses deliver it somewhere."""

    def __init__(self, speed: float | None = None):
        self.frames: list[SentFrame] = []
        self.speed = speed  # simulated seconds per real second; None: as fast as possible
        self._t0_real: float | None = None
        self._t0_sim = 0

    def _record(self, sim, data: bytes) -> None:
        self.frames.append(SentFrame(sim.now / 1e6, data))

    def on_sleep(self, sim) -> None:
        if self.speed:
            if self._t0_real is None:
                self._t0_real, self._t0_sim = time.monotonic(), sim.now
            ahead = (sim.now - self._t0_sim) / 1e6 / self.speed - (time.monotonic()
                                                                     - self._t0_real)
            if ahead > 0:
                time.sleep(min(ahead, 0.5))

    def transmit(self, sim, data: bytes) -> None:
        self._record(sim, data)

    def receive(self, sim) -> bytes | None:
        return None

    def serial_out(self, sim, data: bytes) -> None:
        pass

    def serial_in(self, sim, n: int) -> bytes:
        return b""

    def serial_waiting(self, sim) -> bool:
        return False

    def close(self) -> None:
        pass


class MemoryLink(Link):
    """Frames stay in memory; with a key, each is ACKed at once, as a collector would."""

    def __init__(self, node_id: int, key: bytes | None, speed: float | None = None,
                 ack: bool = True):
        super().__init__(speed)
        self.node_id = node_id
        self.key = key
        self.ack = ack and key is not None
        self._acks: list[bytes] = []

    def transmit(self, sim, data: bytes) -> None:
        self._record(sim, data)
        if self.ack:
            h = protocol.decode(data, {self.node_id: self.key}).header
            self._acks += protocol.encode_ack(self.node_id, h.boot_id, [h.seq], self.key)

    def receive(self, sim) -> bytes | None:
        return self._acks.pop(0) if self._acks else None


class UdpLink(Link):
    """Datagrams to a real collector (127.0.0.1 only); ACKs come back to this socket.

    ack_wait_s: after a pass that sent frames, wait up to this long (real time) for ACKs,
    so an accelerated clock does not outrun the collector's replies.
    """

    def __init__(self, collector: tuple[str, int], speed: float | None = None,
                 ack_wait_s: float = 0.2):
        super().__init__(speed)
        self.collector = collector
        self.ack_wait_s = ack_wait_s
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self._sent_since_sleep = 0
        self.sent = 0
        self.acks_received = 0
        # (boot id, seq) sent and not yet named by an ACK: one ACK datagram may name many
        # frames (a burst after an outage), so counting datagrams would wait forever after.
        self._owed: set[tuple[bytes, int]] = set()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    def transmit(self, sim, data: bytes) -> None:
        self._record(sim, data)
        self.sock.sendto(data, self.collector)
        self._sent_since_sleep += 1
        self.sent += 1
        if len(data) >= 10:  # header: type, node (2), boot (4), seq (3)
            self._owed.add((data[3:7], data[7] << 16 | data[8] << 8 | data[9]))

    def receive(self, sim) -> bytes | None:
        try:
            data = self.sock.recv(256)
        except BlockingIOError:
            return None
        self.acks_received += 1
        if len(data) >= 14:  # ACK: type, node (2), boot (4), base seq (3), bitmap (4)
            boot, base = data[3:7], data[7] << 16 | data[8] << 8 | data[9]
            bitmap = int.from_bytes(data[10:14], "big")
            self._owed.discard((boot, base))
            while bitmap:
                low = bitmap & -bitmap
                self._owed.discard((boot, base + low.bit_length()))
                bitmap ^= low
        return data

    def on_sleep(self, sim) -> None:
        # wait only for ACKs still owed: the node may have read them in the same pass
        if self._sent_since_sleep and self.ack_wait_s and self._owed:
            select.select([self.sock], [], [], self.ack_wait_s)
        self._sent_since_sleep = 0
        super().on_sleep(sim)

    def close(self) -> None:
        self.sock.close()


class PtyLink(Link):
    """The node's serial console as a pty: open `port` (e.g. /dev/pts/5) with pyserial like a
    USB serial adapter. The node writes 0x00, COBS(frame), 0x00 and reads ACKs the same way."""

    def __init__(self, speed: float | None = None, ack_wait_s: float = 0.2):
        import tty

        super().__init__(speed)
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self.ack_wait_s = ack_wait_s
        self._deframer = protocol.SerialDeframer()
        self._wrote = False

    def serial_out(self, sim, data: bytes) -> None:
        for chunk in self._deframer.feed(data):
            if not isinstance(chunk, ProtocolError):
                self._record(sim, chunk)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.master, view)
            except BlockingIOError:
                select.select([], [self.master], [], 0.5)
                continue
            view = view[n:]
        self._wrote = True

    def serial_in(self, sim, n: int) -> bytes:
        try:
            return os.read(self.master, n)
        except (BlockingIOError, OSError):
            return b""

    def serial_waiting(self, sim) -> bool:
        return bool(select.select([self.master], [], [], 0)[0])

    def on_sleep(self, sim) -> None:
        if self._wrote and self.ack_wait_s:
            select.select([self.master], [], [], self.ack_wait_s)
        self._wrote = False
        super().on_sleep(sim)

    def close(self) -> None:
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

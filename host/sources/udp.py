"""UDP listener (asyncio): datagrams -> Collector.submit; ACKs go back to each sender.

The socket is read in bursts: on each readiness callback every queued datagram (up to
`burst`) is submitted, then the collector flushes once, so under load one journal
transaction carries many frames. (asyncio's DatagramProtocol reads one datagram per event
loop turn, which would make batches of one; add_reader on the raw socket avoids that.)
Under a steady load (frames arriving less than `linger_s` after the last commit) the commit
waits up to `linger_s` for more frames, and the frames that come meanwhile are read in one
burst when it ends: one fsync and one wake-up per batch instead of one per few frames, at
most `linger_s` more before the ACK. A frame after a quiet spell is committed at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import NamedTuple

from ..protocol import MAX_FRAME

__all__ = ["UdpReply", "UdpSource"]

log = logging.getLogger(__name__)

_READ_SIZE = MAX_FRAME + 56  # longer datagrams arrive cut but still > MAX_FRAME: "oversized"
_RCVBUF_BYTES = 4 << 20
# Datagrams per readiness callback, so per journal transaction under load. A commit costs an
# fsync plus every page of the frames' UNIQUE(node, boot, seq) index it touches, and frames
# of many nodes touch a page per node: 2048 frames of 1000 nodes write about the same pages
# as 1024, at half the cost per frame (and one ACK carries two seqs instead of one). At
# ~35 us a frame a full burst is ~70 ms before its ACKs; at 1 frame/s per node bursts are
# a few frames.
_BURST = 2048
# A commit costs ~200 us of CPU (and an fsync), whatever its size: at 10,000 frames/s,
# committing each readiness callback's few frames would spend most of a core on commits.
_LINGER_S = 0.005


class UdpReply(NamedTuple):
    """Sends an ACK to one sender; equal for equal addresses, so ACKs group per sender."""

    sock: socket.socket
    addr: tuple

    def __call__(self, data: bytes) -> None:
        self.sock.sendto(data, self.addr)


class UdpSource:
    """Listens on (host, port); port 0 picks a free one (see `address` after `start`).

    Args:
        collector: the Collector frames go to (submit, flush).
        host, port: where to listen. burst: datagrams read per readiness callback at most.
    """

    def __init__(self, collector, host: str, port: int, *, burst: int = _BURST,
                 linger_s: float = _LINGER_S):
        self.collector, self.host, self.port, self.burst = collector, host, port, burst
        self.linger_s = linger_s
        self._timer: asyncio.TimerHandle | None = None
        self._committed_at = float("-inf")  # loop time of the last commit
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._names: dict[tuple, tuple[str, str, UdpReply]] = {}

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()[:2]

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        infos = await self._loop.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF_BYTES)
            sock.setblocking(False)
            sock.bind(addr)
        except OSError:
            sock.close()
            raise
        self.sock = sock
        self._names.clear()  # their replies hold the socket
        self._loop.add_reader(sock.fileno(), self._drain)
        log.info("listening for nodes on udp %s:%d", *self.address)

    def stop(self) -> None:
        if self._timer is not None:  # the caller commits what is pending (runtime.stop)
            self._timer.cancel()
            self._timer = None
        if self.sock is not None:
            self._loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None

    def _name(self, addr: tuple) -> tuple[str, str, UdpReply]:
        """Source name for frames (`udp:ip:port`), for reject counts (`udp:ip`), and the
        sender's reply (made once per sender, not per datagram)."""
        names = self._names.get(addr)
        if names is None:
            if len(self._names) > 4096:
                self._names.clear()
            names = self._names[addr] = (f"udp:{addr[0]}:{addr[1]}", f"udp:{addr[0]}",
                                         UdpReply(self.sock, addr))
        return names

    def _drain(self) -> None:
        sock, submit = self.sock, self.collector.submit
        try:
            for _ in range(self.burst):
                try:
                    data, addr = sock.recvfrom(_READ_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # e.g. ICMP port unreachable from an earlier ACK
                    log.debug("udp receive error: %s", exc)
                    continue
                source, reject_source, reply = self._name(addr)
                submit(data, source, reply, reject_source)
        finally:
            self._commit()

    def _commit(self) -> None:
        """Commit now, or at linger_s after the last commit if that was less ago and the
        batch is not full (module docstring). Meanwhile the socket is not watched: what
        arrives is read in one burst when the wait ends, not one wake-up per datagram."""
        pending = self.collector.pending
        if not pending:
            return
        due = self._committed_at + self.linger_s
        if self._loop.time() >= due or pending >= self.burst:
            self._flush()
        elif self._timer is None:
            self._loop.remove_reader(self.sock.fileno())
            self._timer = self._loop.call_at(due, self._wait_over)

    def _wait_over(self) -> None:
        self._timer = None
        if self.sock is not None:
            self._loop.add_reader(self.sock.fileno(), self._drain)
            self._drain()  # what came meanwhile, then the commit (due now)

    def _flush(self) -> None:
        self._committed_at = self._loop.time()
        self.collector.flush()

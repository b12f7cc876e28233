"""Serial listener: COBS frames from a USB UART -> Collector.submit, ACKs back on the line.

A reader thread owns the port: it opens it through `serial.serial_for_url` (device paths,
socket:// and rfc2217:// alike) so that DTR / RTS never reset the node (`open_port`),
deframes with protocol.SerialDeframer and hands the chunks
to the event loop. When the adapter is unplugged the read fails; the thread closes the port
and reopens it with capped exponential backoff until it is back (or `stop()`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading

import serial

from ..errors import ProtocolError
from ..protocol import SerialDeframer, serial_frame

__all__ = ["SerialSource", "open_port"]

log = logging.getLogger(__name__)

_READ_TIMEOUT_S = 0.2     # how soon the reader notices stop()
_WRITE_TIMEOUT_S = 0.1    # an ACK that cannot leave in this time is dropped (node resends)


def open_port(port: str, baud: int) -> serial.SerialBase:
    """Open a node's port without ever resetting it through DTR / RTS.

    On an ESP32-DevKitC (and most boards wired for esptool's auto-reset) RTS asserted with
    DTR released pulls EN low: the chip resets. pyserial asserts both by default and, on
    open, sets DTR before RTS, so releasing both would pass through exactly that state. The
    lines go instead from (DTR, RTS) asserted, as the OS opens the port, to DTR asserted
    only (GPIO0 low, which matters only during a reset), to both released.
    """
    ser = serial.serial_for_url(port, baudrate=baud, timeout=_READ_TIMEOUT_S,
                                do_not_open=True)
    if not port.startswith("rfc2217://"):  # pyserial's RFC 2217 client refuses one
        ser.write_timeout = _WRITE_TIMEOUT_S
    ser.dtr = True
    ser.rts = False
    ser.open()
    try:
        ser.dtr = False
    except OSError as exc:  # a pty or a link without modem lines: nothing to release
        if exc.errno not in (errno.EINVAL, errno.ENOTTY):
            ser.close()
            raise
    return ser


class SerialSource:
    """One serial port.

    Args:
        collector: the Collector (submit, reject, flush), used from the event loop only.
        port: device path or pyserial URL. baud: baud rate.
        backoff_s: (first, max) wait between reopen attempts, seconds.
    """

    def __init__(self, collector, port: str, baud: int = 115200, *,
                 backoff_s: tuple[float, float] = (0.5, 10.0)):
        self.collector, self.port, self.baud, self.backoff_s = collector, port, baud, backoff_s
        self.source = f"serial:{port}"
        self.opens = 0  # successful opens, for tests and the board
        self._ser: serial.SerialBase | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"serial {self.port}",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    @property
    def connected(self) -> bool:
        return self._ser is not None

    def _reply(self, data: bytes) -> None:
        ser = self._ser
        if ser is None:
            raise OSError(f"{self.port} is not open")
        try:
            ser.write(serial_frame(data))
        except serial.SerialException as exc:  # includes write timeouts
            raise OSError(str(exc)) from None

    def _deliver(self, chunks: list) -> None:
        """On the event loop: submit the chunks of one read, then flush once."""
        for chunk in chunks:
            if isinstance(chunk, ProtocolError):
                self.collector.reject(self.source, chunk)
            else:
                self.collector.submit(chunk, self.source, self._reply)
        self.collector.flush()

    def _run(self) -> None:
        delay = self.backoff_s[0]
        failed_before = False
        while not self._stop.is_set():
            try:
                ser = open_port(self.port, self.baud)
            except (serial.SerialException, OSError, ValueError) as exc:
                if not failed_before:
                    log.warning("serial %s cannot be opened (retrying): %s", self.port, exc)
                    failed_before = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            log.info("serial %s open at %d baud", self.port, self.baud)
            self.opens += 1
            self._ser, delay, failed_before = ser, self.backoff_s[0], False
            try:
                self._read(ser)
            except (serial.SerialException, OSError) as exc:
                log.warning("serial %s lost (reopening): %s", self.port, exc)
            finally:
                self._ser = None
                try:
                    ser.close()
                except (serial.SerialException, OSError):
                    pass
            self._stop.wait(delay)

    def _read(self, ser) -> None:
        deframer = SerialDeframer()
        while not self._stop.is_set():
            data = ser.read(max(1, min(ser.in_waiting, 4096)))
            if not data:
                continue
            chunks = deframer.feed(data)
            if chunks:
                try:
                    self._loop.call_soon_threadsafe(self._deliver, chunks)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return

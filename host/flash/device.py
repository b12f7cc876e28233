"""A board on a serial port, through mpremote's transport: probe it, write and remove files.

Every mpremote and pyserial failure a technician can meet becomes one FlashError line here
(port not found or busy, no MicroPython raw REPL, file system full), the one place that knows
mpremote's exceptions.
"""

from __future__ import annotations

import ast
import contextlib
import errno
import io
import logging
import os

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport
from typing_extensions import Self

from ..errors import LampwatchError

log = logging.getLogger(__name__)

CHUNK_BYTES = 256  # per raw-REPL exec, as mpremote's own `fs cp`
ENTER_TIMEOUT_S = 5.0

# One exec that tells everything flashing needs: the .mpy version the board loads, its
# MicroPython version, free flash and the sha256 of the files we may replace.
_PROBE = """
import os, sys, hashlib, binascii
def _lw_h(n):
    try:
        f = open(n, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    b = bytearray(512)
    m = memoryview(b)
    while True:
        k = f.readinto(b)
        if not k:
            break
        h.update(m[:k])
    f.close()
    return binascii.hexlify(h.digest()).decode()
_lw_s = os.statvfs('/')
print(repr({'mpy': getattr(sys.implementation, '_mpy', None),
    'version': tuple(sys.implementation.version[:3]),
    'machine': getattr(sys.implementation, '_machine', sys.platform),
    'free': _lw_s[0] * _lw_s[4], 'files': [e[0] for e in os.ilistdir('/') if e[1] == 0x8000],
    'hashes': {n: _lw_h(n) for n in %r}}))
"""


class FlashError(LampwatchError):
    """Flashing a node failed; the message is one line a technician can act on."""


def port_error(port: str) -> FlashError:
    """Why `port` cannot be opened: not found or busy (pyserial's own reason, one line)."""
    try:
        s = serial.serial_for_url(port, do_not_open=True, exclusive=True, timeout=1)
        s.open()
    except (serial.SerialException, OSError, ValueError) as exc:
        text = str(exc)
        code = getattr(exc, "errno", None)
        if code in (errno.EBUSY, errno.EAGAIN) or "exclusively lock" in text or "busy" in text:
            return FlashError(f"port {port} is busy: close the other program using it "
                              "(a serial monitor, another mpremote, the collector)")
        if port.startswith(("socket://", "rfc2217://")):
            return FlashError(f"port {port} not found: nothing accepts connections there")
        return FlashError(f"port {port} not found: is the board plugged in? "
                          f"({text.splitlines()[0] if text else 'cannot open'})")
    s.close()
    return FlashError(f"port {port} could not be opened by mpremote")


class Device:
    """An open board in the raw REPL. Use as a context manager; close() leaves the raw REPL.

    Raises FlashError from every method.
    """

    def __init__(self, port: str):
        self.port = port
        self._t: SerialTransport | None = None

    def open(self) -> Self:
        try:
            self._t = SerialTransport(self.port, baudrate=115200)
        except TransportError:
            raise port_error(self.port) from None
        try:
            # mpremote prints what it got when the raw REPL does not answer: not for us.
            with contextlib.redirect_stdout(io.StringIO()):
                self._t.enter_raw_repl(soft_reset=True, timeout_overall=ENTER_TIMEOUT_S)
        except (TransportError, OSError, serial.SerialException):
            self.close()
            raise FlashError(f"no MicroPython raw REPL on {self.port}: the board is not "
                             "running MicroPython (flash MicroPython first, or reset the "
                             "board: firmware before 0.3 on the serial transport ignores "
                             "Ctrl-C)") from None
        return self

    def probe(self, names: list[str]) -> dict:
        """{"mpy", "version", "machine", "free" (bytes), "files", "hashes" {name: hex|None}}."""
        return ast.literal_eval(self._exec(_PROBE % (list(names),)).decode().strip())

    def write(self, name: str, data: bytes) -> None:
        """Write a file so that a power cut never leaves a half-written one under its name."""
        tmp = name + ".tmp"
        try:
            self._t.fs_writefile(tmp, data, chunk_size=CHUNK_BYTES)
            self._exec(f"import os\nos.rename({tmp!r}, {name!r})")
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                with contextlib.suppress(OSError, FlashError):
                    self._t.fs_rmfile(tmp)
                raise FlashError(f"the board's file system is full while writing {name}: "
                                 "remove files from it (mpremote fs rm) or erase its flash"
                                 ) from None
            raise FlashError(f"cannot write {name} on the board: "
                             f"{os.strerror(exc.errno) if exc.errno else exc}") from None
        except TransportError as exc:
            raise FlashError(f"the board stopped answering while writing {name}: "
                             f"{_one_line(exc)}") from None

    def remove(self, name: str) -> None:
        try:
            self._t.fs_rmfile(name)
        except (OSError, TransportError) as exc:
            raise FlashError(f"cannot remove {name} from the board: {_one_line(exc)}") from None

    def _exec(self, code: str) -> bytes:
        try:
            return self._t.exec(code)
        except TransportExecError as exc:
            raise FlashError(f"the board failed a command: {_one_line(exc.error_output)}"
                             ) from None
        except (TransportError, OSError, serial.SerialException) as exc:
            raise FlashError(f"the board stopped answering: {_one_line(exc)}") from None

    def close(self, reset: bool = False) -> None:
        """Leave the raw REPL; with reset, soft-reset so the board runs main.py."""
        if self._t is None:
            return
        try:
            if self._t.in_raw_repl:
                self._t.exit_raw_repl()
            if reset:
                self._t.serial.write(b"\x04")  # Ctrl-D in the friendly REPL: soft reboot
            self._t.close()
        except (OSError, serial.SerialException) as exc:
            log.debug("closing %s: %s", self.port, exc)
        self._t = None

    def __enter__(self) -> Self:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _one_line(exc: object) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__

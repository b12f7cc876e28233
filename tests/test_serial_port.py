"""The host opens a node's serial port without resetting it: DTR / RTS as an ESP32-DevKitC's
auto-reset circuit sees them, through a real RFC 2217 port server on loopback."""

import socket
import threading

import pytest
import serial
from lampwatch.sources.serial import open_port
from serial.rfc2217 import PortManager
from serial.urlhandler.protocol_loop import Serial as LoopSerial

# pyserial's RFC 2217 client starts its reader thread with the deprecated setDaemon()
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:serial.rfc2217")


class BoardLines(LoopSerial):
    """The board's end of the port: records every DTR / RTS level it is given."""

    def __init__(self, *a, **kw):
        self.lines = []
        super().__init__(*a, **kw)

    def _update_dtr_state(self):
        self.lines.append(("dtr", self._dtr_state))

    def _update_rts_state(self):
        self.lines.append(("rts", self._rts_state))


class _Conn:
    """The TCP connection as PortManager writes to it."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(data)


def serve(board, listener, done):
    conn, _ = listener.accept()
    conn.settimeout(0.1)
    pm = PortManager(board, _Conn(conn))
    while not done.is_set():
        try:
            data = conn.recv(1024)
        except TimeoutError:
            continue
        if not data:
            break
        for _ in pm.filter(data):
            pass
    conn.close()


def states(lines, start):
    """(dtr, rts) after each change, from the state the port opened in."""
    dtr, rts = start
    out = [start]
    for name, v in lines:
        if name == "dtr":
            dtr = v
        else:
            rts = v
        out.append((dtr, rts))
    return out


def run(opener):
    board = BoardLines()
    board.port = "loop://"
    board.open()
    board.lines.clear()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        done = threading.Event()
        t = threading.Thread(target=serve, args=(board, listener, done), daemon=True)
        t.start()
        port = opener(f"rfc2217://127.0.0.1:{listener.getsockname()[1]}")
        port.write(b"\x00frame\x00")
        port.close()
        done.set()
        t.join(5)
    return board.lines


def test_open_port_releases_dtr_and_rts_without_passing_the_reset_state():
    lines = run(lambda url: open_port(url, 115200))
    assert lines, "the client set no line at all"
    # on a DevKitC, RTS asserted with DTR released is EN low: a reset. Whether the OS opens
    # the port with both lines asserted or both released, that state never occurs
    for start in ((True, True), (False, False)):
        seen = states(lines, start)
        assert (False, True) not in seen, seen
        assert seen[-1] == (False, False)


def test_pyserials_defaults_leave_both_lines_asserted():
    # what the collector did before: both lines asserted for as long as the port is open,
    # so any tool that releases DTR first resets the board
    lines = run(lambda url: serial.serial_for_url(url, baudrate=115200, timeout=0.2))
    assert states(lines, (False, False))[-1] == (True, True)

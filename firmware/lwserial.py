# lwserial: the serial frame link: 0x00, COBS(frame), 0x00 on a UART of the node's own (not
# UART0, the REPL console); ACKs come back the same way. Pure: lwmain.py builds the UART.
# Imported only for the serial transport.
import lwproto


class SerialLink:
    """The link for app.App over `uart` (machine.UART, read timeout 0). send() writes only
    when the previous frame has left the line, so a write never blocks the loop."""

    serial = True
    up = True
    rssi = 0
    reconnects = 0

    def __init__(self, uart):
        self._u = uart
        self._buf = bytearray()
        self._frames = []

    def poll(self, now):
        pass

    def send(self, frame):
        u = self._u
        if not u.txdone():
            return False
        u.write(b"\x00" + lwproto.cobs_encode(frame) + b"\x00")
        return True

    def recv(self):
        q = self._frames
        if not q:
            u = self._u
            n = u.any()
            data = u.read(min(n, 128)) if n else None
            for b in data or ():  # at most 128 bytes a call: bounded work per pass
                if b:
                    if len(self._buf) < 64:
                        self._buf.append(b)
                elif self._buf:
                    frame = cobs_decode(bytes(self._buf))
                    self._buf = bytearray()
                    if frame is not None:
                        q.append(frame)
        return q.pop(0) if q else None


def cobs_decode(data):
    """Inverse of cobs_encode; None if data is not valid COBS."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0 or i + code > n:
            return None
        out += data[i + 1:i + code]
        i += code
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)

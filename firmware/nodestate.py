# nodestate: the boot identity and counters kept in RTC memory across soft/watchdog resets.
# RTC memory survives soft and watchdog resets but not power loss; a block that fails its
# magic or checksum means power loss (or a new firmware layout): a new boot starts.
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MAGIC = b"LWN3"
# magic, boot_id, next_seq, good, ng, uptime_ms, lamps, health counters (7 x u16 and the
# short pulses as u32, in the order of HEALTH), checksum
_FMT = ">4sIIIIQBHHHHHIHHH"
SIZE = const(49)
SEQ_LIMIT = const(0x1000000)
_H = const(8)  # health counters
_HEALTH0 = (0, 0, 0, 0, 0, 0, 0, 0)


def fletcher16(buf, n):
    a = 0
    b = 0
    for i in range(n):
        a = (a + buf[i]) % 255
        b = (b + a) % 255
    return (b << 8) | a


class NodeState:
    """boot_id, the next sequence number, GOOD / NG counts, uptime, lamp states and the
    per-boot health counters: frames dropped, reconnects, IRQ resyncs, edge records dropped,
    count edges the IRQ path missed, short pulses rejected, parts inferred across stalls,
    LAMP frames dropped.

    save() packs them into one preallocated block for RTC.memory(); load() accepts a block
    only if magic and checksum hold.
    """

    def __init__(self, boot_id, next_seq=0, good=0, ng=0, uptime_ms=0, lamps=0,
                 health=_HEALTH0):
        self.boot_id = boot_id
        self.next_seq = next_seq
        self.good = good
        self.ng = ng
        self.uptime_ms = uptime_ms
        self.lamps = lamps
        self.health = health
        self.buf = bytearray(SIZE)

    @classmethod
    def load(cls, data):
        """The state in an RTC memory block, or None if the block is not valid."""
        if data is None or len(data) < SIZE:
            return None
        f = struct.unpack_from(_FMT, data, 0)
        if f[0] != _MAGIC or f[-1] != fletcher16(data, SIZE - 2):
            return None
        if f[2] >= SEQ_LIMIT or f[6] > 242:
            return None
        return cls(f[1], f[2], f[3], f[4], f[5], f[6], f[7:7 + _H])

    def pack(self):
        """The state as a block for RTC.memory() (the same bytearray every time)."""
        b = self.buf
        h = self.health
        struct.pack_into(_FMT, b, 0, _MAGIC, self.boot_id, self.next_seq,
                         self.good & 0xFFFFFFFF, self.ng & 0xFFFFFFFF, self.uptime_ms,
                         self.lamps, min(h[0], 0xFFFF), min(h[1], 0xFFFF), min(h[2], 0xFFFF),
                         min(h[3], 0xFFFF), min(h[4], 0xFFFF), min(h[5], 0xFFFFFFFF),
                         min(h[6], 0xFFFF), min(h[7], 0xFFFF), 0)
        struct.pack_into(">H", b, SIZE - 2, fletcher16(b, SIZE - 2))
        return b

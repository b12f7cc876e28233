# lwproto: the node side of the lampwatch wire protocol (docs/protocol.md).
# Plain MicroPython (struct, hashlib); also imports under CPython so the tests and
# the virtual node run the very same bytes the ESP32 sends.
import hashlib
import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)
T_HELLO = const(1)
T_LAMP = const(2)
T_HEARTBEAT = const(3)
T_HEALTH = const(4)
T_ACK = const(5)

TAG_LEN = const(8)
HEADER_LEN = const(15)
MAX_FRAME = const(200)
MAX_LAMP_EVENTS = const(24)
LAMP_PERIOD = const(0x20)  # chan_state bit 5: a u16 blink period (ms) follows the event
SEQ_LIMIT = const(0x1000000)  # u24: a node starts a new boot before its sequence wraps
U40 = const(0x10000000000)

# Lamp channels and states as they travel on the wire.
GREEN = const(0)
YELLOW = const(1)
RED = const(2)
BLUE = const(3)
WHITE = const(4)
N_LAMPS = const(5)
OFF = const(0)
ON = const(1)
BLINK = const(2)

# Reset causes (protocol codes; lwmain.py maps the port's machine.*_RESET onto them).
RESET_UNKNOWN = const(0)
RESET_POWER_ON = const(1)
RESET_HARD = const(2)
RESET_WATCHDOG = const(3)
RESET_DEEPSLEEP = const(4)
RESET_SOFT = const(5)

_BLOCK = const(64)


def hmac_sha256(key, msg):
    """HMAC-SHA256 (RFC 2104); MicroPython has no hmac module, only hashlib.sha256."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    ipad = bytearray(_BLOCK)
    opad = bytearray(_BLOCK)
    for i in range(len(key)):
        ipad[i] = key[i]
        opad[i] = key[i]
    for i in range(_BLOCK):
        ipad[i] ^= 0x36
        opad[i] ^= 0x5C
    inner = hashlib.sha256(ipad)
    inner.update(msg)
    outer = hashlib.sha256(opad)
    outer.update(inner.digest())
    return outer.digest()


def pack_lamps(states):
    """Five lamp states (0..2 each) as one base-3 byte: green is the least significant digit."""
    v = 0
    m = 1
    for i in range(N_LAMPS):
        s = states[i]
        if s < 0 or s > BLINK:
            raise ValueError("lamp state out of range")
        v += s * m
        m *= 3
    return v


def unpack_lamps(v):
    out = []
    for _ in range(N_LAMPS):
        out.append(v % 3)
        v //= 3
    return out


def is_ip(host):
    """True for a dotted IPv4 address (no DNS needed)."""
    parts = host.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or int(p) > 255:
            return False
    return True


def cobs_encode(data):
    """COBS-encode data (no 0x00 in the result); the caller adds the 0x00 delimiters."""
    out = bytearray()
    code_at = 0
    out.append(0)
    code = 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at = len(out)
            out.append(0)
            code = 1
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at = len(out)
                out.append(0)
                code = 1
    out[code_at] = code
    return bytes(out)


class Codec:
    """Builds authenticated frames for one node and checks the host's ACKs.

    The header fields (boot id, sequence, uptime) come in as arguments: the node's
    state owns them, so this stays pure and the golden vectors can pin its bytes.
    """

    def __init__(self, node_id, key):
        if not 0 < node_id < 0x10000:
            raise ValueError("node_id must be 1..65535")
        if len(key) < 16:
            raise ValueError("key must be at least 16 bytes")
        self.node_id = node_id
        self.key = bytes(key)

    def _header(self, ftype, boot_id, seq, uptime_ms):
        if not 0 <= seq < SEQ_LIMIT:
            raise ValueError("seq out of range")
        if not 0 <= uptime_ms < U40:
            raise ValueError("uptime out of range")
        return struct.pack(
            ">BHIBHBI",
            (VERSION << 4) | ftype,
            self.node_id,
            boot_id,
            seq >> 16,
            seq & 0xFFFF,
            uptime_ms >> 32,
            uptime_ms & 0xFFFFFFFF,
        )

    def _seal(self, msg):
        return msg + hmac_sha256(self.key, msg)[:TAG_LEN]

    def hello(self, boot_id, seq, uptime_ms, fw, reset_cause, config_hash, flags, lamp_mask,
              hb_period_ms):
        """HELLO: fw is (major, minor, patch); config_hash is 4 bytes."""
        body = struct.pack(
            ">BBBB4sBBH",
            fw[0], fw[1], fw[2], reset_cause, config_hash, flags, lamp_mask,
            hb_period_ms // 100,
        )
        return self._seal(self._header(T_HELLO, boot_id, seq, uptime_ms) + body)

    def lamp(self, boot_id, seq, uptime_ms, events):
        """LAMP: events is a sequence of (channel, state, began_uptime_ms) or, for BLINK,
        (channel, state, began_uptime_ms, period_ms), oldest first. A period > 0 adds 2
        bytes to its event; the whole frame must stay within MAX_FRAME."""
        n = len(events)
        if not 0 < n <= MAX_LAMP_EVENTS:
            raise ValueError("1..24 lamp events per frame")
        size = 1 + 6 * n
        for ev in events:
            if len(ev) > 3 and ev[3]:
                size += 2
        if HEADER_LEN + size + TAG_LEN > MAX_FRAME:
            raise ValueError("LAMP frame over 200 bytes")
        body = bytearray(size)
        body[0] = n
        o = 1
        for ev in events:
            ch, st, t = ev[0], ev[1], ev[2]
            p = ev[3] if len(ev) > 3 else 0
            if not (0 <= ch < N_LAMPS and 0 <= st <= BLINK and 0 <= t < U40 and p >= 0
                    and (p == 0 or st == BLINK)):
                raise ValueError("bad lamp event")
            struct.pack_into(">BBI", body, o, (ch << 2) | st | (LAMP_PERIOD if p else 0),
                             t >> 32, t & 0xFFFFFFFF)
            o += 6
            if p:
                struct.pack_into(">H", body, o, min(p, 0xFFFF))
                o += 2
        return self._seal(self._header(T_LAMP, boot_id, seq, uptime_ms) + body)

    def heartbeat(self, boot_id, seq, uptime_ms, good, ng, lamps):
        """HEARTBEAT: cumulative per-boot counts (sent modulo 2**32) and the lamp states."""
        body = struct.pack(">IIB", good & 0xFFFFFFFF, ng & 0xFFFFFFFF, pack_lamps(lamps))
        return self._seal(self._header(T_HEARTBEAT, boot_id, seq, uptime_ms) + body)

    def health(self, boot_id, seq, uptime_ms, rssi, free_heap, reconnects, frames_dropped,
               irq_resyncs, events_dropped, unacked, counts=None):
        """HEALTH: counters are cumulative per boot and saturate at their field size.
        counts: (edges_missed, short_pulses, inferred_parts, lamp_frames_dropped), the
        extension of firmware 0.3; None sends the 15-byte body of older firmware."""
        body = struct.pack(
            ">bIHHHHB",
            max(-128, min(127, rssi)),
            min(free_heap, 0xFFFFFFFF),
            min(reconnects, 0xFFFF),
            min(frames_dropped, 0xFFFF),
            min(irq_resyncs, 0xFFFF),
            min(events_dropped, 0xFFFF),
            min(unacked, 0xFF),
        )
        if counts is not None:
            body += struct.pack(">HIHH", min(counts[0], 0xFFFF), min(counts[1], 0xFFFFFFFF),
                                min(counts[2], 0xFFFF), min(counts[3], 0xFFFF))
        return self._seal(self._header(T_HEALTH, boot_id, seq, uptime_ms) + body)

    def parse_ack(self, data, boot_id):
        """Check an ACK from the host. Returns the list of acknowledged sequence numbers,
        or None when the frame is not a valid ACK for this node and boot (wrong length,
        type, node, boot or tag): the caller counts it and carries on."""
        if len(data) != ACK_LEN:
            return None
        vt, node, boot, base_hi, base_lo, bitmap = struct.unpack_from(">BHIBHI", data, 0)
        if vt != (VERSION << 4) | T_ACK or node != self.node_id or boot != boot_id:
            return None
        tag = hmac_sha256(self.key, data[:ACK_LEN - TAG_LEN])[:TAG_LEN]
        if not _same(tag, data[ACK_LEN - TAG_LEN:]):
            return None
        base = (base_hi << 16) | base_lo
        acked = [base]
        for i in range(32):
            if bitmap & (1 << i):
                acked.append((base + 1 + i) % SEQ_LIMIT)
        return acked


ACK_LEN = const(22)


def _same(a, b):
    # Constant-time compare: do not leak how many tag bytes matched.
    if len(a) != len(b):
        return False
    d = 0
    for i in range(len(a)):
        d |= a[i] ^ b[i]
    return d == 0

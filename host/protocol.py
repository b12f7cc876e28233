"""The host side of the lampwatch wire protocol (docs/protocol.md): decode, verify, ACK.

Every malformed input raises ProtocolError (with a machine-readable `reason`) and nothing
else, so a listener can count rejections by reason and carry on.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import ackcodec
from .ackcodec import T_ACK, TAG_LEN, VERSION
from .errors import ProtocolError

# VERSION, T_ACK and TAG_LEN live with the ACK encoder, which runs in the MicroPython VM too.
T_HELLO, T_LAMP, T_HEARTBEAT, T_HEALTH = 1, 2, 3, 4
TYPE_NAMES = {T_HELLO: "HELLO", T_LAMP: "LAMP", T_HEARTBEAT: "HEARTBEAT",
              T_HEALTH: "HEALTH", T_ACK: "ACK"}
HEADER_LEN = 15
MAX_FRAME = 200
MAX_LAMP_EVENTS = 24
LAMP_PERIOD = 0x20  # chan_state bit 5: a u16 blink period in ms follows the event
SEQ_LIMIT = 1 << 24
COUNT_MOD = 1 << 32

LAMP_NAMES = ("green", "yellow", "red", "blue", "white")
LAMP_STATES = ("OFF", "ON", "BLINK")
RESET_CAUSES = ("unknown", "power_on", "hard", "watchdog", "deepsleep", "soft")

_HEADER = struct.Struct(">BHIBHBI")
_HELLO = struct.Struct(">BBBB4sBBH")
_HEARTBEAT = struct.Struct(">IIB")
_HEALTH = struct.Struct(">bIHHHHB")
_HEALTH_COUNTS = struct.Struct(">HIHH")  # firmware 0.3+: appended to the HEALTH body

# Reasons a frame is rejected: the collector counts rejections under these names.
REASONS = ("truncated", "oversized", "bad_cobs", "bad_version", "bad_type", "bad_body",
           "unknown_node", "bad_tag", "duplicate", "replay")


@dataclass(frozen=True)
class Header:
    type: int
    node_id: int
    boot_id: int
    seq: int
    uptime_ms: int

    @property
    def type_name(self) -> str:
        return TYPE_NAMES[self.type]


@dataclass(frozen=True)
class Hello:
    fw_version: tuple[int, int, int]
    reset_cause: str
    config_hash: bytes
    has_hw_counter: bool
    transport_serial: bool
    lamp_mask: int
    heartbeat_ms: int


@dataclass(frozen=True)
class LampEvent:
    channel: int
    state: int
    uptime_ms: int
    period_ms: int | None = None  # BLINK only: the period the node measured, if it sent one

    @property
    def hz(self) -> float | None:
        return 1000.0 / self.period_ms if self.period_ms else None

    @property
    def lamp(self) -> str:
        return LAMP_NAMES[self.channel]

    @property
    def state_name(self) -> str:
        return LAMP_STATES[self.state]


@dataclass(frozen=True)
class Lamp:
    events: tuple[LampEvent, ...]


@dataclass(frozen=True)
class Heartbeat:
    good: int
    ng: int
    lamps: tuple[int, ...]


@dataclass(frozen=True)
class Health:
    rssi: int
    free_heap: int
    reconnects: int
    frames_dropped: int
    irq_resyncs: int
    events_dropped: int
    unacked: int
    # the count extension (firmware 0.3+); None in a HEALTH from older firmware
    edges_missed: int | None = None  # count edges the IRQ path missed (hardware vs software)
    short_pulses: int | None = None  # count pulses rejected as shorter than the minimum width
    inferred_parts: int | None = None  # parts counted by the line-rate rule across a stall
    lamp_frames_dropped: int | None = None  # LAMP frames dropped from the full retransmit ring


@dataclass(frozen=True)
class Frame:
    header: Header
    body: Hello | Lamp | Heartbeat | Health
    raw: bytes


# HMAC-SHA256 (RFC 2104) with nothing kept per key: each frame hashes the key's inner and
# outer blocks again (two SHA-256 blocks more) where hash objects of them kept per key (the
# pads, copied per frame) took 3.95 MB of RSS at 10,000 nodes (issue 14: under 60 MB), for
# ~0.5 % of a frame's CPU (ad hoc, 2026-12-02: 0.90 us a tag against 0.66). OpenSSL's
# one-shot SHA-256 (hashlib) is the faster here: 0.90 us a tag against 1.06 with CPython's
# own, whose objects were the smaller to keep.
_sha256 = hashlib.sha256
_IPAD = bytes(b ^ 0x36 for b in range(256))  # translate tables: key block XOR the pad byte
_OPAD = bytes(b ^ 0x5C for b in range(256))


def hmac_tag(key: bytes, msg: bytes) -> bytes:
    """The frame tag: the first TAG_LEN bytes of HMAC-SHA256(key, msg); the host's one HMAC."""
    block = (key if len(key) <= 64 else _sha256(key).digest()).ljust(64, b"\0")
    inner = _sha256(block.translate(_IPAD) + msg).digest()
    return _sha256(block.translate(_OPAD) + inner).digest()[:TAG_LEN]


def unpack_lamps(v: int) -> tuple[int, ...]:
    out = []
    for _ in range(5):
        out.append(v % 3)
        v //= 3
    return tuple(out)


_LAMP_BYTES = tuple(unpack_lamps(v) for v in range(3 ** 5))  # a heartbeat's lamp byte, unpacked


_new = object.__new__
_FUNCTIONS = (types.MethodType, types.FunctionType, types.BuiltinMethodType)


def peek_node_id(data: bytes) -> int:
    """The node id of a frame, to look up its key before verifying it."""
    if len(data) < HEADER_LEN + TAG_LEN:
        raise ProtocolError("truncated", f"frame of {len(data)} bytes is shorter than a header")
    return struct.unpack_from(">H", data, 1)[0]


def decode(data: bytes, keys: Mapping[int, bytes] | Callable[[int], bytes | None]) -> Frame:
    """Decode and authenticate one node -> host frame.

    Args:
        data: the frame bytes (one UDP datagram, or one COBS-decoded serial frame).
        keys: node id -> key, as a mapping or a lookup function returning None if unknown.
    Raises:
        ProtocolError: on any malformed, unauthenticated or unknown-node frame.
    """
    data = bytes(data)
    return decode_body(decode_header(data, keys), data)


def decode_body(header: Header, data: bytes) -> Frame:
    """The frame of `data` (bytes) whose header `decode_header` gave: its body read and
    checked, its tag not checked again. Raises ProtocolError."""
    try:
        body = _BODY_DECODERS[header.type](data[HEADER_LEN:-TAG_LEN])
    except ProtocolError as exc:
        exc.node_id = header.node_id  # the tag is valid: the node sent this malformed body
        raise
    frame = _new(Frame)
    d = frame.__dict__
    d["header"], d["body"], d["raw"] = header, body, data
    return frame


def decode_header(data: bytes, keys: Mapping[int, bytes] | Callable[[int], bytes | None]
                  ) -> Header:
    """A frame's header, authenticated as `decode` does, its body not read (a restart's
    older frames, which only a clock anchor takes: runtime.replay). Raises ProtocolError."""
    n = len(data)
    if n > MAX_FRAME:
        raise ProtocolError("oversized", f"frame of {n} bytes exceeds {MAX_FRAME}")
    node_id = peek_node_id(data)
    vt = data[0]
    if vt >> 4 != VERSION:
        raise ProtocolError("bad_version", f"unsupported protocol version {vt >> 4}")
    ftype = vt & 0x0F
    if ftype not in (T_HELLO, T_LAMP, T_HEARTBEAT, T_HEALTH):
        raise ProtocolError("bad_type", f"unknown frame type {ftype}")
    # a function first: isinstance against the Mapping ABC costs ~0.4 us a frame
    key = (keys(node_id) if type(keys) in _FUNCTIONS or not isinstance(keys, Mapping)
           else keys.get(node_id))
    if key is None:
        raise ProtocolError("unknown_node", f"frame from unknown node {node_id}")
    msg, tag = data[:-TAG_LEN], data[-TAG_LEN:]
    if not hmac.compare_digest(hmac_tag(key, msg), tag):
        raise ProtocolError("bad_tag", f"bad authentication tag on a frame from node {node_id}")
    _, _, boot_id, seq_hi, seq_lo, up_hi, up_lo = _HEADER.unpack_from(msg, 0)
    # Header, body and Frame are frozen dataclasses; their __init__ sets each field through
    # object.__setattr__, ~4 us a frame of the collector's ~20 us of necessary work. The same
    # objects are built here by filling their __dict__ (equal, hashable, frozen as ever).
    header = _new(Header)
    d = header.__dict__
    d["type"], d["node_id"], d["boot_id"] = ftype, node_id, boot_id
    d["seq"], d["uptime_ms"] = (seq_hi << 16) | seq_lo, (up_hi << 32) | up_lo
    return header


def _need(body: bytes, size: int, what: str) -> None:
    if len(body) != size:
        raise ProtocolError("bad_body", f"{what} body is {len(body)} bytes, expected {size}")


def _hello(body: bytes) -> Hello:
    _need(body, _HELLO.size, "HELLO")
    major, minor, patch, cause, chash, flags, mask, hb = _HELLO.unpack(body)
    if cause >= len(RESET_CAUSES) or flags & ~0x03 or mask & ~0x1F or hb == 0:
        raise ProtocolError("bad_body", "HELLO has an invalid field")
    return Hello((major, minor, patch), RESET_CAUSES[cause], chash, bool(flags & 1),
                 bool(flags & 2), mask, hb * 100)


def _lamp(body: bytes) -> Lamp:
    if not body or not 0 < body[0] <= MAX_LAMP_EVENTS:
        raise ProtocolError("bad_body", "LAMP frame must carry 1..24 events")
    n, o, end = body[0], 1, len(body)
    events = []
    for i in range(n):
        if o + 6 > end:
            raise ProtocolError("bad_body", f"LAMP body of {end} bytes is short of {n} events")
        cs, hi, lo = struct.unpack_from(">BBI", body, o)
        o += 6
        ch, st = (cs >> 2) & 0x07, cs & 0x03
        if cs & 0xC0 or ch >= 5 or st > 2 or (cs & LAMP_PERIOD and st != 2):
            raise ProtocolError("bad_body", f"LAMP event {i} has an invalid chan_state {cs:#04x}")
        period = None
        if cs & LAMP_PERIOD:
            if o + 2 > end:
                raise ProtocolError("bad_body", f"LAMP event {i} is missing its blink period")
            period = struct.unpack_from(">H", body, o)[0]
            o += 2
            if period == 0:
                raise ProtocolError("bad_body", f"LAMP event {i} has a blink period of 0 ms")
        events.append(LampEvent(ch, st, (hi << 32) | lo, period))
    if o != end:
        raise ProtocolError("bad_body", f"LAMP body is {end} bytes, its {n} events take {o}")
    return Lamp(tuple(events))


def _heartbeat(body: bytes) -> Heartbeat:
    _need(body, _HEARTBEAT.size, "HEARTBEAT")
    good, ng, lamps = _HEARTBEAT.unpack(body)
    if lamps >= 3 ** 5:
        raise ProtocolError("bad_body", f"HEARTBEAT lamp byte {lamps} is out of range")
    hb = _new(Heartbeat)  # as in decode: the most frequent frame
    d = hb.__dict__
    d["good"], d["ng"], d["lamps"] = good, ng, _LAMP_BYTES[lamps]
    return hb


def _health(body: bytes) -> Health:
    if len(body) == _HEALTH.size:  # firmware before 0.3
        return Health(*_HEALTH.unpack(body))
    if len(body) != _HEALTH.size + _HEALTH_COUNTS.size:
        raise ProtocolError("bad_body", f"HEALTH body is {len(body)} bytes, expected "
                            f"{_HEALTH.size} or {_HEALTH.size + _HEALTH_COUNTS.size}")
    return Health(*_HEALTH.unpack_from(body), *_HEALTH_COUNTS.unpack_from(body, _HEALTH.size))


_BODY_DECODERS = {T_HELLO: _hello, T_LAMP: _lamp, T_HEARTBEAT: _heartbeat, T_HEALTH: _health}


def encode_ack(node_id: int, boot_id: int, seqs, key: bytes) -> list[bytes]:
    """ACK frames acknowledging `seqs` of one node's boot, as few frames as possible.

    Each ACK names a base sequence and a 32-bit map of the 32 sequences after it
    (ackcodec.encode_acks, which the MicroPython VM runs too, tagged with hmac_tag).
    """
    return ackcodec.encode_acks(node_id, boot_id, seqs, key, hmac_tag)


# --- COBS framing for serial links -------------------------------------------------------

def cobs_encode(data: bytes) -> bytes:
    out = bytearray([0])
    code_at, code = 0, 1
    for b in data:
        if b == 0:
            out[code_at] = code
            code_at, code = len(out), 1
            out.append(0)
        else:
            out.append(b)
            code += 1
            if code == 0xFF:
                out[code_at] = code
                code_at, code = len(out), 1
                out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """Inverse of cobs_encode. Raises ProtocolError('bad_cobs') on invalid input."""
    out = bytearray()
    i, n = 0, len(data)
    if n == 0:
        raise ProtocolError("bad_cobs", "empty COBS frame")
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError("bad_cobs", "zero byte inside a COBS frame")
        end = i + code
        if end > n:
            raise ProtocolError("bad_cobs", "COBS block runs past the end of the frame")
        chunk = data[i + 1:end]
        if 0 in chunk:
            raise ProtocolError("bad_cobs", "zero byte inside a COBS frame")
        out += chunk
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


def serial_frame(data: bytes) -> bytes:
    """A frame as sent on a serial line: 0x00, COBS(frame), 0x00."""
    return b"\x00" + cobs_encode(data) + b"\x00"


class SerialDeframer:
    """Splits a serial byte stream into frames at 0x00 delimiters.

    Noise between frames (a boot banner, a REPL line) makes one bad chunk, which `feed`
    reports as a ProtocolError in its output instead of raising, so the stream goes on.
    """

    def __init__(self, max_chunk: int = 2 * MAX_FRAME):
        self._buf = bytearray()
        self._max = max_chunk
        self._overflowed = False

    def feed(self, data: bytes) -> list[bytes | ProtocolError]:
        out: list[bytes | ProtocolError] = []
        for b in data:
            if b != 0:
                if len(self._buf) < self._max:
                    self._buf.append(b)
                else:
                    self._overflowed = True
                continue
            if self._overflowed:
                out.append(ProtocolError("oversized", "serial chunk longer than any frame"))
            elif self._buf:
                try:
                    out.append(cobs_decode(bytes(self._buf)))
                except ProtocolError as exc:
                    out.append(exc)
            self._buf.clear()
            self._overflowed = False
        return out

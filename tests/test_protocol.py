"""Wire protocol: golden vectors on both sides, rejection rules, and fuzzing of the decoder."""

import hashlib
import hmac
import json
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lampwatch import ackcodec
from lampwatch import protocol as P
from lampwatch.errors import ProtocolError
from lampwatch.node_files import firmware_dir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(firmware_dir()))
sys.path.insert(0, str(ROOT / "tests" / "vectors"))

import lwproto
import make_vectors

VECTORS = json.loads((ROOT / "tests" / "vectors" / "frames.json").read_text())
NODE_FRAMES = VECTORS["node_frames"]
ACKS = VECTORS["acks"]
KEY = bytes(range(16))


def _keys(v):
    return {v["node_id"]: bytes.fromhex(v["key"])}


@pytest.mark.parametrize("v", NODE_FRAMES, ids=lambda v: v["name"])
def test_firmware_encoder_produces_golden_bytes(v):
    codec = lwproto.Codec(v["node_id"], bytes.fromhex(v["key"]))
    assert make_vectors.encode(codec, v).hex() == v["frame"]


@pytest.mark.parametrize("v", NODE_FRAMES, ids=lambda v: v["name"])
def test_host_decodes_golden_frame(v):
    frame = P.decode(bytes.fromhex(v["frame"]), _keys(v))
    h = frame.header
    assert (P.TYPE_NAMES[h.type], h.node_id, h.boot_id, h.seq, h.uptime_ms) == (
        v["type"], v["node_id"], v["boot_id"], v["seq"], v["uptime_ms"])
    want = dict(v["fields"], **v.get("decoded", {}))
    b = frame.body
    if v["type"] == "HEARTBEAT":
        assert (b.good, b.ng, list(b.lamps)) == (want["good"], want["ng"], want["lamps"])
    elif v["type"] == "HELLO":
        assert list(b.fw_version) == want["fw"]
        assert b.reset_cause == P.RESET_CAUSES[want["reset_cause"]]
        assert b.config_hash.hex() == want["config_hash"]
        assert (b.has_hw_counter, b.transport_serial) == (
            bool(want["flags"] & 1), bool(want["flags"] & 2))
        assert (b.lamp_mask, b.heartbeat_ms) == (want["lamp_mask"], want["hb_period_ms"])
    elif v["type"] == "LAMP":
        assert [[e.channel, e.state, e.uptime_ms] + ([e.period_ms] if e.period_ms else [])
                for e in b.events] == want["events"]
    elif v["type"] == "HEALTH":
        for name in ("rssi", "free_heap", "reconnects", "frames_dropped", "irq_resyncs",
                     "events_dropped", "unacked"):
            assert getattr(b, name) == want[name], name
        counts = [b.edges_missed, b.short_pulses, b.inferred_parts, b.lamp_frames_dropped]
        # a frame of older firmware decodes with the extension absent (compatibility)
        assert counts == want.get("counts", [None] * 4)


@pytest.mark.parametrize("v", NODE_FRAMES, ids=lambda v: v["name"])
def test_serial_framing_matches_golden_bytes(v):
    frame = bytes.fromhex(v["frame"])
    assert P.serial_frame(frame).hex() == v["serial"]
    assert (b"\x00" + lwproto.cobs_encode(frame) + b"\x00").hex() == v["serial"]
    assert P.SerialDeframer().feed(bytes.fromhex(v["serial"])) == [frame]


@pytest.mark.parametrize("v", ACKS, ids=lambda v: v["name"])
def test_ack_golden_vectors_both_sides(v):
    key = bytes.fromhex(v["key"])
    frames = P.encode_ack(v["node_id"], v["boot_id"], v["seqs"], key)
    assert [f.hex() for f in frames] == v["frames"]
    codec = lwproto.Codec(v["node_id"], key)
    acked = []
    for f in v["frames"]:
        acked += codec.parse_ack(bytes.fromhex(f), v["boot_id"])
    assert sorted(acked) == sorted(v["seqs"])


def test_heartbeat_matches_an_independent_encoding_of_the_spec_table():
    # Built from docs/protocol.md's tables with CPython's struct and hmac, not lwproto.
    msg = (bytes([0x13]) + struct.pack(">H", 7) + struct.pack(">I", 0xDEADBEEF)
           + (5).to_bytes(3, "big") + (123456789).to_bytes(5, "big")
           + struct.pack(">II", 10000, 300) + bytes([1 + 27 * 2]))
    tag = hmac.new(KEY, msg, hashlib.sha256).digest()[:8]
    assert (msg + tag).hex() == NODE_FRAMES[0]["frame"]


def test_blink_period_matches_an_independent_encoding_of_the_spec_table():
    # LAMP with a blink period, from docs/protocol.md's table: chan_state bit 5, then u16 ms.
    v = next(v for v in NODE_FRAMES if v["name"] == "lamp-blink-period")
    body = bytes([3])
    body += bytes([1 << 2 | 0]) + (40_000).to_bytes(5, "big")
    body += bytes([0x20 | 0 << 2 | 2]) + (40_000).to_bytes(5, "big") + struct.pack(">H", 500)
    body += bytes([0x20 | 3 << 2 | 2]) + (40_250).to_bytes(5, "big") + struct.pack(">H", 2500)
    msg = (bytes([0x12]) + struct.pack(">HI", 7, 0xDEADBEEF) + (10).to_bytes(3, "big")
           + (41_000).to_bytes(5, "big") + body)
    assert (msg + hmac.new(KEY, msg, hashlib.sha256).digest()[:8]).hex() == v["frame"]
    events = P.decode(bytes.fromhex(v["frame"]), _keys(v)).body.events
    assert [e.hz for e in events] == [None, 2.0, 0.4]


def test_a_lamp_frame_full_of_periods_is_exactly_max_frame():
    v = next(v for v in NODE_FRAMES if v["name"] == "lamp-max-events-with-period")
    assert len(bytes.fromhex(v["frame"])) == P.MAX_FRAME
    with pytest.raises(ValueError):  # a 23rd event with a period would not fit
        lwproto.Codec(9, KEY).lamp(77, 0, 0, [(0, 2, 0, 500)] * 23)


def _lamp_frame(events_body, n):
    return _resign(bytes([0x12]) + HB[1:15] + bytes([n]) + events_body)


@pytest.mark.parametrize("body, n", [
    (bytes([0x20 | 1]) + bytes(5) + b"\x01\xf4", 1),  # a period on an ON event
    (bytes([0x20 | 2]) + bytes(5), 1),  # the period is missing
    (bytes([0x20 | 2]) + bytes(5) + b"\x00\x00", 1),  # a period of 0 ms
    (bytes([0x40 | 2]) + bytes(5), 1),  # bit 6 is reserved
    (bytes([2]) + bytes(5) + b"\x01\xf4", 1),  # 2 bytes too many without the bit
    (bytes([0x20 | 2]) + bytes(5) + b"\x01\xf4" + bytes([1]) + bytes(5), 3),  # n too big
])
def test_malformed_blink_periods_are_bad_body(body, n):
    with pytest.raises(ProtocolError) as err:
        P.decode(_lamp_frame(body, n), {7: KEY})
    assert err.value.reason == "bad_body"


def test_encoder_puts_a_period_on_blink_only():
    codec = lwproto.Codec(7, KEY)
    with pytest.raises(ValueError):
        codec.lamp(1, 0, 0, [(0, 1, 0, 500)])
    # a period of 0 means "not measured": the 6-byte event of version 1 as before
    assert codec.lamp(1, 0, 0, [(0, 2, 0, 0)]) == codec.lamp(1, 0, 0, [(0, 2, 0)])


def test_every_heartbeat_is_at_most_32_bytes():
    beats = [v for v in NODE_FRAMES if v["type"] == "HEARTBEAT"]
    assert beats and all(len(bytes.fromhex(v["frame"])) <= 32 for v in beats)


def test_protocol_doc_shows_the_golden_heartbeat_bytes():
    doc = (ROOT / "docs" / "protocol.md").read_text()
    serial = bytes.fromhex(NODE_FRAMES[0]["serial"])
    assert " ".join(f"{b:02x}" for b in serial) in doc


# --- rejections ---------------------------------------------------------------------------

HB = bytes.fromhex(NODE_FRAMES[0]["frame"])


def _resign(msg, key=KEY):
    return msg + hmac.new(key, msg, hashlib.sha256).digest()[:8]


@pytest.mark.parametrize("data, keys, reason", [
    (HB, {7: bytes(16)}, "bad_tag"),
    (HB[:-1] + bytes([HB[-1] ^ 1]), {7: KEY}, "bad_tag"),
    (HB, {8: KEY}, "unknown_node"),
    (HB[:22], {7: KEY}, "truncated"),
    (b"", {7: KEY}, "truncated"),
    (HB + bytes(200), {7: KEY}, "oversized"),
    (_resign(bytes([0x23]) + HB[1:-8]), {7: KEY}, "bad_version"),
    (_resign(bytes([0x19]) + HB[1:-8]), {7: KEY}, "bad_type"),
    (_resign(bytes([0x15]) + HB[1:-8]), {7: KEY}, "bad_type"),  # an ACK is not for the host
    (_resign(HB[:-8] + b"\x00"), {7: KEY}, "bad_body"),
    (_resign(HB[:-9] + bytes([243])), {7: KEY}, "bad_body"),
    (_resign(bytes([0x12]) + HB[1:15] + bytes([1, 5 << 2, 0, 0, 0, 0, 0])), {7: KEY}, "bad_body"),
    (_resign(bytes([0x12]) + HB[1:15] + bytes([0])), {7: KEY}, "bad_body"),
])
def test_malformed_frames_are_rejected_with_their_reason(data, keys, reason):
    with pytest.raises(ProtocolError) as err:
        P.decode(data, keys)
    assert err.value.reason == reason
    assert reason in P.REASONS
    assert "\n" not in str(err.value)


def test_the_header_alone_is_rejected_as_decode_rejects_it_except_for_its_body():
    """decode_header (a restart's older frames: runtime.replay) checks all decode does but
    the body; decode_body then reads the body of the header it gave."""
    header = P.decode_header(HB, {7: KEY})
    assert header == P.decode(HB, {7: KEY}).header
    assert P.decode_body(header, HB) == P.decode(HB, {7: KEY})
    for data, keys, reason in [(HB, {7: bytes(16)}, "bad_tag"), (HB, {8: KEY}, "unknown_node"),
                               (HB[:22], {7: KEY}, "truncated"),
                               (_resign(bytes([0x19]) + HB[1:-8]), {7: KEY}, "bad_type")]:
        with pytest.raises(ProtocolError) as err:
            P.decode_header(data, keys)
        assert err.value.reason == reason
    bad_body = _resign(HB[:-8] + b"\x00")
    header = P.decode_header(bad_body, {7: KEY})  # authentic: its body is not read
    with pytest.raises(ProtocolError) as err:
        P.decode_body(header, bad_body)
    assert (err.value.reason, err.value.node_id) == ("bad_body", 7)


def test_key_lookup_function_is_accepted():
    assert P.decode(HB, lambda node: KEY if node == 7 else None).header.seq == 5
    with pytest.raises(ProtocolError, match="unknown node 7"):
        P.decode(HB, lambda node: None)


def test_firmware_rejects_acks_for_another_boot_node_or_key():
    codec = lwproto.Codec(7, KEY)
    ack = P.encode_ack(7, 0xDEADBEEF, [5], KEY)[0]
    assert codec.parse_ack(ack, 0xDEADBEEF) == [5]
    assert codec.parse_ack(ack, 0xDEADBEEE) is None
    assert lwproto.Codec(8, KEY).parse_ack(ack, 0xDEADBEEF) is None
    assert lwproto.Codec(7, bytes(16)).parse_ack(ack, 0xDEADBEEF) is None
    assert codec.parse_ack(ack[:-1], 0xDEADBEEF) is None
    assert codec.parse_ack(HB[:22], 0xDEADBEEF) is None  # a node frame is not an ACK


def test_the_one_ack_encoder_makes_the_same_bytes_in_the_micropython_vm(micropython_vm):
    # ackcodec encodes every ACK the host makes: protocol.encode_ack in CPython, and the
    # virtual node's stand-in collector inside the VM (with the VM's hmac), where
    # lampwatch.protocol cannot be imported. The node's own codec reads what both made.
    seqs = [41, 5, 100, 6, 9, 40, 6]
    code = (f"import ackcodec, hashlib, hmac\n"
            f"for a in ackcodec.encode_acks(7, 0xDEADBEEF, {seqs}, {KEY!r},\n"
            f"        lambda k, m: hmac.new(k, m, hashlib.sha256).digest()):\n"
            f"    print(a.hex())\n")
    in_vm = micropython_vm(code, files={"ackcodec.py": Path(ackcodec.__file__).read_text()})
    acks = P.encode_ack(7, 0xDEADBEEF, seqs, KEY)
    assert in_vm.split() == [a.hex() for a in acks]
    codec = lwproto.Codec(7, KEY)
    assert [codec.parse_ack(a, 0xDEADBEEF) for a in acks] == [[5, 6, 9], [40, 41], [100]]


def test_encoder_refuses_values_the_wire_cannot_carry():
    codec = lwproto.Codec(7, KEY)
    with pytest.raises(ValueError):
        codec.heartbeat(1, P.SEQ_LIMIT, 0, 0, 0, [0] * 5)
    with pytest.raises(ValueError):
        codec.lamp(1, 0, 0, [])
    with pytest.raises(ValueError):
        codec.lamp(1, 0, 0, [(5, 0, 0)])
    with pytest.raises(ValueError):
        lwproto.Codec(0, KEY)
    with pytest.raises(ValueError):
        lwproto.Codec(7, b"short")


# --- property-based -----------------------------------------------------------------------

ANY_KEYS = {v["node_id"]: bytes.fromhex(v["key"]) for v in NODE_FRAMES}
VALID = [bytes.fromhex(v["frame"]) for v in NODE_FRAMES]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=260))
def test_random_bytes_only_ever_raise_protocol_error(data):
    with pytest.raises(ProtocolError):
        P.decode(data, ANY_KEYS)


@st.composite
def mutated(draw):
    frame = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "extend", "insert", "delete"]))
        if op == "flip" and frame:
            i = draw(st.integers(0, len(frame) - 1))
            frame[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del frame[draw(st.integers(0, len(frame))):]
        elif op == "extend":
            frame += draw(st.binary(min_size=1, max_size=40))
        elif op == "insert":
            frame.insert(draw(st.integers(0, len(frame))), draw(st.integers(0, 255)))
        elif op == "delete" and frame:
            del frame[draw(st.integers(0, len(frame) - 1))]
    return bytes(frame)


@FUZZ
@given(mutated())
def test_mutated_frames_are_rejected_never_misread(data):
    if data in VALID:
        return  # the mutations cancelled out: a valid frame must decode, checked elsewhere
    with pytest.raises(ProtocolError):
        P.decode(data, ANY_KEYS)


@FUZZ
@given(st.binary(max_size=600))
def test_cobs_round_trips_and_never_emits_zero(data):
    enc = P.cobs_encode(data)
    assert 0 not in enc
    assert lwproto.cobs_encode(data) == enc
    assert P.cobs_decode(enc) == data


@FUZZ
@given(st.binary(min_size=1, max_size=300))
def test_cobs_decode_of_garbage_only_raises_protocol_error(data):
    try:
        P.cobs_decode(data)
    except ProtocolError as exc:
        assert exc.reason == "bad_cobs"


@FUZZ
@given(st.lists(st.sampled_from(VALID), min_size=1, max_size=6),
       st.lists(st.binary(max_size=30), min_size=7, max_size=7),
       st.lists(st.integers(1, 64), min_size=1, max_size=20))
def test_serial_stream_with_noise_and_any_chunking_yields_every_frame(frames, noise, cuts):
    stream = bytearray()
    for i, f in enumerate(frames):
        stream += noise[i] + P.serial_frame(f)
    stream += noise[-1]
    deframer = P.SerialDeframer()
    out = []
    pos = 0
    for c in cuts * (len(stream) // max(1, sum(cuts)) + 1):
        out += deframer.feed(bytes(stream[pos:pos + c]))
        pos += c
        if pos >= len(stream):
            break
    good = [x for x in out if isinstance(x, bytes)]
    decoded = []
    for g in good:
        try:
            decoded.append(P.decode(g, ANY_KEYS).raw)
        except ProtocolError:
            pass
    assert decoded == frames
    assert all(isinstance(x, (bytes, ProtocolError)) for x in out)


def test_serial_deframer_survives_an_endless_line_without_zero():
    d = P.SerialDeframer()
    assert d.feed(b"x" * 5000) == []
    out = d.feed(b"\x00" + P.serial_frame(HB)[1:])
    assert isinstance(out[0], ProtocolError) and out[0].reason == "oversized"
    assert out[1:] == [HB]


@FUZZ
@given(st.binary(min_size=1, max_size=100), st.binary(max_size=200))
def test_both_hmac_implementations_match_the_standard_library(key, msg):
    want = hmac.new(key, msg, hashlib.sha256).digest()
    assert P.hmac_tag(key, msg) == want[:8]
    assert P.hmac_tag(bytearray(key), msg) == want[:8]
    assert lwproto.hmac_sha256(key, msg) == want



# Bodies re-signed with the right key get past the tag check, so the body parsers see them.
VALID_BODIES = {}
for _v in NODE_FRAMES:
    _f = bytes.fromhex(_v["frame"])
    VALID_BODIES.setdefault(_f[0] & 0x0F, []).append(_f[P.HEADER_LEN:-P.TAG_LEN])
# reasons a correctly signed frame from a known node can still earn
SIGNED_REASONS = {"bad_type", "bad_body", "oversized"}


@st.composite
def lamp_bodies(draw):
    """A LAMP body of 0..30 events with any chan_state byte, an optional period and an
    event count byte that may disagree with them."""
    events = b""
    for _ in range(draw(st.integers(0, 30))):
        cs = draw(st.one_of(st.integers(0, 255),
                            st.sampled_from([0x00, 0x05, 0x0A, 0x22, 0x26, 0x12, 0x03])))
        events += bytes([cs]) + draw(st.binary(min_size=5, max_size=5))
        if draw(st.booleans()):
            events += draw(st.binary(min_size=2, max_size=2))
    n = draw(st.one_of(st.integers(0, 255), st.just(len(events) // 6)))
    return bytes([n]) + events


@st.composite
def signed_frames(draw):
    """(frame type, frame bytes) with a random header and body, tagged with node 7's key."""
    ftype = draw(st.one_of(st.integers(0, 15), st.sampled_from(sorted(VALID_BODIES))))
    header = (bytes([(1 << 4) | ftype]) + struct.pack(">H", 7)
              + draw(st.binary(min_size=12, max_size=12)))  # boot, seq, uptime
    kind = draw(st.sampled_from(["random", "lamp", "mutated"]))
    if kind == "lamp":
        body = draw(lamp_bodies())
    elif kind == "mutated" and ftype in VALID_BODIES:
        body = bytearray(draw(st.sampled_from(VALID_BODIES[ftype])))
        for _ in range(draw(st.integers(1, 3))):
            op = draw(st.sampled_from(["flip", "cut", "extend"]))
            if op == "flip" and body:
                body[draw(st.integers(0, len(body) - 1))] ^= draw(st.integers(1, 255))
            elif op == "cut":
                del body[draw(st.integers(0, len(body))):]
            else:
                body += draw(st.binary(min_size=1, max_size=12))
        body = bytes(body)
    else:
        body = draw(st.binary(max_size=draw(st.sampled_from([8, 14, 40, 200]))))
    return ftype, _resign(header + body)


@FUZZ
@given(signed_frames())
def test_resigned_bodies_raise_protocol_error_or_decode_whole(case):
    ftype, data = case
    try:
        frame = P.decode(data, {7: KEY})
    except ProtocolError as exc:
        assert exc.reason in SIGNED_REASONS, exc.reason
        if len(data) <= P.MAX_FRAME:
            assert (exc.reason == "bad_type") == (ftype not in P.TYPE_NAMES or ftype == P.T_ACK)
        return
    # Accepted: every field is within what the wire allows, and it is what was sent.
    assert len(data) <= P.MAX_FRAME and frame.raw == data
    h = frame.header
    assert (h.type, h.node_id) == (ftype, 7) and h.seq < P.SEQ_LIMIT and h.uptime_ms < 1 << 40
    b = frame.body
    if ftype == P.T_HEARTBEAT:
        assert isinstance(b, P.Heartbeat) and len(b.lamps) == 5 and max(b.lamps) <= 2
    elif ftype == P.T_LAMP:
        assert isinstance(b, P.Lamp) and 1 <= len(b.events) <= P.MAX_LAMP_EVENTS
        for e in b.events:
            assert e.channel < 5 and e.state <= 2 and e.lamp and e.state_name
            assert e.period_ms is None or (e.state == 2 and e.period_ms > 0)
    elif ftype == P.T_HELLO:
        assert isinstance(b, P.Hello) and b.reset_cause in P.RESET_CAUSES
        assert b.heartbeat_ms > 0 and b.lamp_mask < 32
    else:
        assert ftype == P.T_HEALTH and isinstance(b, P.Health)

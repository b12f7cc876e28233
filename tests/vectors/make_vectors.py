"""Regenerate tests/vectors/frames.json from the inputs below (only when the protocol changes).

The bytes are produced by the firmware encoder once, checked by hand against
docs/protocol.md (the heartbeat vector is dissected there byte by byte), and then pinned:
from then on both the firmware encoder and the host decoder are tested against them.
Run: .venv/bin/python tests/vectors/make_vectors.py
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "firmware"))

import lwproto

KEY16 = "000102030405060708090a0b0c0d0e0f"
KEY32 = "c0ffee00" * 8

NODE_FRAMES = [
    {"name": "heartbeat-basic", "key": KEY16, "node_id": 7, "type": "HEARTBEAT",
     "boot_id": 0xDEADBEEF, "seq": 5, "uptime_ms": 123456789,
     "fields": {"good": 10000, "ng": 300, "lamps": [1, 0, 0, 2, 0]}},
    {"name": "heartbeat-after-ticks-wrap", "key": KEY32, "node_id": 65535, "type": "HEARTBEAT",
     "boot_id": 1, "seq": 0xFFFFFE, "uptime_ms": 5_000_000_000,
     "fields": {"good": 0, "ng": 0, "lamps": [0, 0, 0, 0, 0]}},
    {"name": "heartbeat-count-modulo", "key": KEY16, "node_id": 1, "type": "HEARTBEAT",
     "boot_id": 0, "seq": 0, "uptime_ms": 0,
     "fields": {"good": 2 ** 32 + 5, "ng": 2 ** 32 - 1, "lamps": [2, 2, 2, 2, 2]},
     "decoded": {"good": 5, "ng": 2 ** 32 - 1}},
    {"name": "hello-power-on", "key": KEY16, "node_id": 7, "type": "HELLO",
     "boot_id": 0xDEADBEEF, "seq": 0, "uptime_ms": 812,
     "fields": {"fw": [0, 1, 0], "reset_cause": 1, "config_hash": "a1b2c3d4", "flags": 1,
                "lamp_mask": 7, "hb_period_ms": 5000}},
    {"name": "hello-watchdog-serial", "key": KEY32, "node_id": 300, "type": "HELLO",
     "boot_id": 0x01020304, "seq": 4711, "uptime_ms": 3_600_000,
     "fields": {"fw": [1, 2, 3], "reset_cause": 3, "config_hash": "00000000", "flags": 3,
                "lamp_mask": 31, "hb_period_ms": 60000}},
    {"name": "lamp-one-event", "key": KEY16, "node_id": 7, "type": "LAMP",
     "boot_id": 0xDEADBEEF, "seq": 6, "uptime_ms": 12_250,
     "fields": {"events": [[2, 1, 12_000]]}},
    {"name": "lamp-blink-and-off", "key": KEY16, "node_id": 7, "type": "LAMP",
     "boot_id": 0xDEADBEEF, "seq": 7, "uptime_ms": 34_100,
     "fields": {"events": [[2, 0, 30_000], [0, 2, 30_000], [1, 1, 2 ** 39]]}},
    {"name": "lamp-max-events", "key": KEY16, "node_id": 9, "type": "LAMP",
     "boot_id": 77, "seq": 100, "uptime_ms": 1_000_000,
     "fields": {"events": [[i % 5, i % 3, 900_000 + 1000 * i] for i in range(24)]}},
    {"name": "lamp-blink-period", "key": KEY16, "node_id": 7, "type": "LAMP",
     "boot_id": 0xDEADBEEF, "seq": 10, "uptime_ms": 41_000,
     "fields": {"events": [[1, 0, 40_000], [0, 2, 40_000, 500], [3, 2, 40_250, 2500]]}},
    {"name": "lamp-max-events-with-period", "key": KEY16, "node_id": 9, "type": "LAMP",
     "boot_id": 77, "seq": 101, "uptime_ms": 1_100_000,
     "fields": {"events": [[i % 5, 2, 1_000_000 + 1000 * i, 67 + 100 * i] for i in range(22)]}},
    {"name": "health-basic", "key": KEY16, "node_id": 7, "type": "HEALTH",
     "boot_id": 0xDEADBEEF, "seq": 8, "uptime_ms": 60_000,
     "fields": {"rssi": -67, "free_heap": 81_234, "reconnects": 2, "frames_dropped": 0,
                "irq_resyncs": 1, "events_dropped": 0, "unacked": 3}},
    {"name": "health-saturated", "key": KEY16, "node_id": 7, "type": "HEALTH",
     "boot_id": 0xDEADBEEF, "seq": 9, "uptime_ms": 61_000,
     "fields": {"rssi": -200, "free_heap": 5_000_000_000, "reconnects": 70_000,
                "frames_dropped": 65_535, "irq_resyncs": 0, "events_dropped": 1, "unacked": 999},
     "decoded": {"rssi": -128, "free_heap": 4294967295, "reconnects": 65535, "unacked": 255}},
    # firmware 0.3: the count extension (edges missed, short pulses, inferred parts, LAMP
    # frames dropped) after the 15 bytes above
    {"name": "health-counts", "key": KEY16, "node_id": 7, "type": "HEALTH",
     "boot_id": 0xDEADBEEF, "seq": 12, "uptime_ms": 120_000,
     "fields": {"rssi": -58, "free_heap": 79_872, "reconnects": 0, "frames_dropped": 31,
                "irq_resyncs": 0, "events_dropped": 0, "unacked": 2,
                "counts": [3, 70_000, 12, 1]}},
    {"name": "health-counts-saturated", "key": KEY32, "node_id": 300, "type": "HEALTH",
     "boot_id": 0x01020304, "seq": 4712, "uptime_ms": 3_660_000,
     "fields": {"rssi": 0, "free_heap": 81_000, "reconnects": 0, "frames_dropped": 0,
                "irq_resyncs": 0, "events_dropped": 0, "unacked": 0,
                "counts": [65_536, 2 ** 32, 0, 70_000]},
     "decoded": {"counts": [65_535, 2 ** 32 - 1, 0, 65_535]}},
]

ACKS = [
    {"name": "ack-single", "key": KEY16, "node_id": 7, "boot_id": 0xDEADBEEF, "seqs": [5]},
    {"name": "ack-window", "key": KEY16, "node_id": 7, "boot_id": 0xDEADBEEF,
     "seqs": [5, 6, 7, 9, 37]},
    {"name": "ack-high-seq", "key": KEY32, "node_id": 65535, "boot_id": 1,
     "seqs": [0xFFFFFE, 0xFFFFFF]},
]


def encode(codec, v):
    f = v["fields"]
    head = (v["boot_id"], v["seq"], v["uptime_ms"])
    if v["type"] == "HEARTBEAT":
        return codec.heartbeat(*head, f["good"], f["ng"], f["lamps"])
    if v["type"] == "HELLO":
        return codec.hello(*head, tuple(f["fw"]), f["reset_cause"],
                           bytes.fromhex(f["config_hash"]), f["flags"], f["lamp_mask"],
                           f["hb_period_ms"])
    if v["type"] == "LAMP":
        return codec.lamp(*head, [tuple(e) for e in f["events"]])
    if v["type"] == "HEALTH":
        return codec.health(*head, f["rssi"], f["free_heap"], f["reconnects"],
                            f["frames_dropped"], f["irq_resyncs"], f["events_dropped"],
                            f["unacked"], f.get("counts"))
    raise ValueError(v["type"])


def main():
    from lampwatch.protocol import encode_ack, serial_frame

    out = {"protocol_version": lwproto.VERSION, "node_frames": [], "acks": []}
    for v in NODE_FRAMES:
        frame = encode(lwproto.Codec(v["node_id"], bytes.fromhex(v["key"])), v)
        out["node_frames"].append(dict(v, frame=frame.hex(), serial=serial_frame(frame).hex()))
    for v in ACKS:
        frames = encode_ack(v["node_id"], v["boot_id"], v["seqs"], bytes.fromhex(v["key"]))
        out["acks"].append(dict(v, frames=[f.hex() for f in frames]))
    (HERE / "frames.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

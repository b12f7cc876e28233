"""UNS topic names and message payloads (docs/uns.md); pure: no I/O, no clock reads.

Every message says where it came from so a subscriber can drop a copy it already has: a
`_raw` message carries its frame's node, boot and seq; an event message carries the node and
`event`, the site collector's journal id of the event (increasing per topic), and a count
also its boot and per-boot totals.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from ..errors import ProtocolError
from ..protocol import TYPE_NAMES

__all__ = ["EVENT_KINDS", "Message", "Places", "RawMessage", "event_message", "level_problem",
           "msg_id", "parse_raw", "places", "raw_message", "raw_topic", "rfc3339", "subject"]

# Event kinds published, and how: (QoS 1 always) retained or not.
EVENT_KINDS = {"state": True, "count": False, "oee": True, "reason": False}
_BAD_LEVEL = frozenset("/+#\x00")
_BAD_SUBJECT = frozenset(".*> \t\r\n")
_to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_RAW_FIELDS = ("node", "boot", "seq", "rx_s", "frame")


class Message(NamedTuple):
    """One publication: MQTT topic, payload, retained or not, and its dedupe id."""

    topic: str
    payload: bytes
    retain: bool
    id: str


class RawMessage(NamedTuple):
    """A `_raw` message as a central collector reads it."""

    node: int
    boot: int
    seq: int
    rx_s: float
    source: str
    frame: bytes


def rfc3339(ts_s: float, digits: int = 3) -> str:
    """Epoch seconds as RFC 3339 UTC text, e.g. 2026-12-01T06:00:00.125Z (digits: 3 or 6)."""
    spec = "microseconds" if digits == 6 else "milliseconds"
    return datetime.fromtimestamp(ts_s, timezone.utc).isoformat(timespec=spec)[:-6] + "Z"


def level_problem(text: str, nats: bool = False) -> str | None:
    """Why `text` cannot be one topic level (None if it can).

    MQTT forbids '/', '+', '#' and NUL in a level, and a leading '$' is for the broker. A
    level that also becomes part of a NATS subject (`nats`) may not hold '.', '*', '>' or
    white space (NATS's MQTT listener maps '/' to '.').
    """
    if not text:
        return "is empty"
    if text.startswith("$"):
        return "starts with '$'"
    bad = sorted(set(text) & (_BAD_LEVEL | (_BAD_SUBJECT if nats else frozenset())))
    if bad:
        return "contains " + " ".join(repr(c) for c in bad)
    return None


def subject(topic: str) -> str:
    """The NATS subject of an MQTT topic (what NATS's MQTT listener maps it to)."""
    return topic.replace("/", ".")


def raw_topic(root: str, plant: str, node_id: int | str) -> str:
    return f"{root}/{plant}/_raw/{node_id}"


def msg_id(node_id: int, boot_id: int, seq: int) -> str:
    """A frame's identity as text: JetStream's Nats-Msg-Id and the `_raw` message id."""
    return f"{node_id}.{boot_id}.{seq}"


class Places(NamedTuple):
    """Where the registry puts things: machine -> (plant, line); node id -> plant."""

    machines: Mapping[str, tuple[str, str]]
    plants: Mapping[int, str]


def places(nodes: Iterable[Any]) -> Places:
    """Places from registry entries (node_id, plant, line, machine)."""
    nodes = list(nodes)
    return Places({n.machine: (n.plant, n.line) for n in nodes},
                  {n.node_id: n.plant for n in nodes})


def raw_message(root: str, plant: str, node_id: int, boot_id: int, seq: int, ftype: int,
                rx_s: float, source: str, raw: bytes) -> Message:
    """The `_raw` message of one journaled frame: the exact bytes received, and when."""
    payload = (f'{{"node":{node_id},"boot":{boot_id},"seq":{seq},'
               f'"type":"{TYPE_NAMES.get(ftype, ftype)}","rx":"{rfc3339(rx_s, 6)}",'
               f'"rx_s":{float(rx_s)!r},"source":{_to_json(source)},'
               f'"frame":"{base64.b64encode(raw).decode()}"}}')
    return Message(raw_topic(root, plant, node_id), payload.encode(), False,
                   msg_id(node_id, boot_id, seq))


def parse_raw(payload: bytes) -> RawMessage:
    """A `_raw` payload back to its parts. Raises ProtocolError("bad_message")."""
    try:
        doc = json.loads(payload)
        frame = base64.b64decode(doc["frame"], validate=True)
        node, boot, seq, rx_s = doc["node"], doc["boot"], doc["seq"], doc["rx_s"]
        source = doc.get("source", "")
    except (ValueError, TypeError, KeyError, binascii.Error) as exc:
        raise ProtocolError("bad_message", f"not a lampwatch _raw message: {exc}") from None
    if not (all(type(v) is int for v in (node, boot, seq)) and type(rx_s) in (int, float)
            and math.isfinite(rx_s) and isinstance(source, str)):
        raise ProtocolError("bad_message", "a _raw message field has the wrong type")
    return RawMessage(node, boot, seq, float(rx_s), source, frame)


def event_message(root: str, at: Places, event_id: int, ts_s: float, kind: str,
                  node_id: int | None, machine: str | None, data: Mapping) -> Message | None:
    """The message for one journal event, or None for kinds not published (lamp, hello,
    health) and machines not in the registry.

    Raises ValueError or TypeError on data that is not what the deriver writes.
    """
    retain = EVENT_KINDS.get(kind)
    where = at.machines.get(machine) if machine is not None else None
    if retain is None or where is None:
        return None
    body: dict[str, Any] = {}
    if kind == "state":
        body = {"state": data["state"], "since": rfc3339(ts_s), "since_s": ts_s,
                "reason": data.get("reason"), "prev": data.get("prev")}
    elif kind == "count":
        body = {"good": int(data["good"]), "ng": int(data["ng"]), "ts": rfc3339(ts_s),
                "ts_s": ts_s, "boot": data.get("boot_id"), "good_total": data.get("good_total"),
                "ng_total": data.get("ng_total")}
    elif kind == "oee":
        body = dict(data, ts=rfc3339(ts_s), ts_s=ts_s)
        if isinstance(body.get("shift_start_s"), (int, float)):
            body["shift_start"] = rfc3339(body["shift_start_s"])
    elif kind == "reason":
        body = {"reason": data["reason"], "start": _time(data.get("start_s")),
                "end": _time(data.get("end_s")), "start_s": data.get("start_s"),
                "end_s": data.get("end_s"), "by": data.get("by"), "ts": rfc3339(ts_s),
                "ts_s": ts_s}
    body.update(node=node_id, machine=machine, event=event_id)
    plant, line = where
    return Message(f"{root}/{plant}/{line}/{machine}/{kind}", _to_json(body).encode(), retain,
                   f"{machine}.{event_id}")


def _time(ts_s: Any) -> str | None:
    return rfc3339(ts_s) if isinstance(ts_s, (int, float)) else None

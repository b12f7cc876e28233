"""Derived journal events -> InfluxDB points (line protocol); pure, schema in docs/influxdb.md."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from influxdb_client import Point, WritePrecision

from ..errors import SinkError

__all__ = [
    "LAMP_CODES",
    "MEASUREMENTS",
    "STATE_CODES",
    "EventDataError",
    "Placement",
    "event_lines",
    "event_points",
    "placements_from",
    "rejects_points",
    "ts_ns",
]

log = logging.getLogger(__name__)

# Numeric twins of the string fields: Grafana value mappings and stores without string fields
# (VictoriaMetrics keeps only numbers) can still draw a state timeline. Higher = more productive.
STATE_CODES = {"UNKNOWN": 0, "OFF": 1, "STOP": 2, "IDLE": 3, "RUN": 4}
_OTHER_STATE_CODE = -1
LAMP_CODES = {"OFF": 0, "ON": 1, "BLINK": 2}

MEASUREMENTS = ("machine_state", "lamp", "counts", "node_hello", "node_health", "stop_reason",
                "oee", "oee_loss", "frames_rejected")

# Field types are fixed per measurement: InfluxDB 1.x refuses a point whose field changes type
# within a shard, and JSON does not tell 12 from 12.0, so every value is coerced here.
_F, _I, _S, _B = float, int, str, bool
_COUNTS = {"good": _I, "ng": _I, "good_total": _I, "ng_total": _I, "boot_id": _I}
_HELLO = {"boot_id": _I, "fw": _S, "reset_cause": _S, "config_hash": _S}
_HEALTH = {"rssi": _I, "free_heap": _I, "reconnects": _I, "frames_dropped": _I,
           "irq_resyncs": _I, "events_dropped": _I, "unacked": _I,
           "clock_offset_ms": _F, "clock_uncertainty_ms": _F,
           "edges_missed": _I, "short_pulses": _I, "inferred_parts": _I,
           "lamp_frames_dropped": _I}
_OEE = {"availability": _F, "performance": _F, "quality": _F, "oee": _F, "teep": _F,
        "utilization": _F, "coverage": _F, "planned_coverage": _F, "good": _F, "ng": _F,
        "unknown_good": _F, "unknown_ng": _F, "planned_s": _F, "run_s": _F, "unknown_s": _F,
        "shift_start_s": _F}


class EventDataError(SinkError):
    """A journal event that cannot become a point (bad JSON, a value of the wrong type)."""


class Placement(NamedTuple):
    """Where a machine stands, from the node registry."""

    plant: str
    line: str


def placements_from(nodes: Iterable[Any]) -> dict[str, Placement]:
    """Machine name -> Placement from registry entries with .machine, .plant and .line."""
    return {n.machine: Placement(str(n.plant), str(n.line)) for n in nodes}


def ts_ns(ts_s: float) -> int:
    """Epoch seconds -> integer nanoseconds, exactly and reproducibly.

    The float's shortest decimal form is scaled, so 1700000000.123 gives ...123000000 (not the
    ...122999808 of binary float arithmetic) and a replay yields the very same timestamp.
    """
    if isinstance(ts_s, bool) or not isinstance(ts_s, (int, float)) or not math.isfinite(ts_s):
        raise EventDataError(f"event time is not a finite number: {ts_s!r}")
    scaled = Decimal(repr(float(ts_s))) * 1_000_000_000
    return int(scaled.to_integral_value(rounding=ROUND_HALF_EVEN))


def _coerce(name: str, value: Any, kind: type) -> Any:
    if kind is _S:
        return str(value)
    if kind is _B:
        if isinstance(value, bool):
            return value
        raise EventDataError(f"field {name}: {value!r} is not a boolean")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EventDataError(f"field {name}: {value!r} is not a number")
    if not math.isfinite(value):
        raise EventDataError(f"field {name}: {value!r} is not finite")
    if kind is _I:
        if value != int(value):
            raise EventDataError(f"field {name}: {value!r} is not an integer")
        return int(value)
    return float(value)


def _fields(point: Point, data: Mapping, spec: Mapping[str, type]) -> Point:
    for name, kind in spec.items():
        value = data.get(name)
        if value is not None:
            point.field(name, _coerce(name, value, kind))
    return point


def _get(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row[name]
    try:
        return getattr(row, name)
    except AttributeError:
        return row[name]  # sqlite3.Row


def _data(row: Any) -> dict:
    raw = _get(row, "data")
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        data = json.loads(raw) if raw else {}
    except (TypeError, ValueError) as exc:
        raise EventDataError(f"event data is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EventDataError("event data is not a JSON object")
    return data


def _require(data: Mapping, key: str, kind: str) -> Any:
    if data.get(key) is None:
        raise EventDataError(f"{kind} event without {key!r}")
    return data[key]


def event_points(row: Any, placements: Mapping[str, Placement]) -> list[Point]:
    """The points one derived event becomes (empty for kinds not exported).

    Args:
        row: an `events` row: mapping, sqlite3.Row or object with ts_s, kind, node_id,
            machine and data (JSON text or dict).
        placements: machine name -> Placement; a machine not in it gets no plant/line tags.
    Returns:
        Points with nanosecond timestamps taken from the event's ts_s only, so writing the
        same row again addresses the same series and time (an idempotent overwrite).
    Raises:
        EventDataError: the row cannot be represented (the caller skips and counts it).
    """
    kind = _get(row, "kind")
    data = _data(row)
    t = ts_ns(_get(row, "ts_s"))
    machine = _get(row, "machine")
    node_id = _get(row, "node_id")
    base: dict[str, str] = {}
    if machine:
        place = placements.get(machine)
        if place is not None:
            base.update(plant=place.plant, line=place.line)
        base["machine"] = str(machine)
    node_tags = dict(base, node=str(node_id)) if node_id is not None else dict(base)

    def point(measurement: str, tags: Mapping[str, str]) -> Point:
        p = Point(measurement).time(t, WritePrecision.NS)
        for key, value in tags.items():
            p.tag(key, value)
        return p

    if kind == "state":
        state = str(_require(data, "state", kind))
        p = point("machine_state", node_tags).field("state", state)
        p.field("code", STATE_CODES.get(state, _OTHER_STATE_CODE))
        if data.get("prev") is not None:
            p.field("prev", str(data["prev"]))
        return [p]
    if kind == "lamp":
        lamp = str(_require(data, "lamp", kind))
        state = str(_require(data, "state", kind))
        p = point("lamp", dict(node_tags, lamp=lamp)).field("state", state)
        return [p.field("code", LAMP_CODES.get(state, _OTHER_STATE_CODE))]
    if kind == "count":
        return [_fields(point("counts", node_tags), data, _COUNTS)]
    if kind == "hello":
        return [_fields(point("node_hello", node_tags), data, _HELLO)]
    if kind == "health":
        p = _fields(point("node_health", node_tags), data, _HEALTH)
        return [p.field("last_seen_ms", t // 1_000_000)]
    if kind == "reason":
        reason = str(_require(data, "reason", kind))
        p = point("stop_reason", dict(base, reason=reason))
        _fields(p, data, {"start_s": _F, "end_s": _F, "by": _S})
        if data.get("start_s") is not None and data.get("end_s") is not None:
            # to the microsecond: 59.999, not the 59.9990000725 of float subtraction
            duration_s = (_coerce("end_s", data["end_s"], _F)
                          - _coerce("start_s", data["start_s"], _F))
            p.field("duration_s", round(duration_s, 6))
        return [p]
    if kind == "oee":
        tags = dict(base, shift=str(_require(data, "shift", kind)))
        final = _coerce("final", data.get("final", False), _B)
        points = [_fields(point("oee", tags), data, _OEE).field("final", final)]
        losses = data.get("losses") or {}
        if not isinstance(losses, Mapping):
            raise EventDataError("oee event: losses is not an object")
        for name in sorted(losses):
            if losses[name] is None:
                continue
            loss = name.removesuffix("_s")
            p = point("oee_loss", dict(tags, loss=loss))
            points.append(p.field("seconds", _coerce(name, losses[name], _F)).field("final", final))
        return points
    log.debug("event kind %r is not exported to InfluxDB", kind)
    return []


def _source_tag(source: str) -> str:
    # A UDP sender's port changes with every socket it opens; the host is what identifies it,
    # so "udp:10.0.0.5:4210" -> "udp:10.0.0.5" keeps the series count bounded.
    if source.startswith("udp:") and source.count(":") >= 2:
        return source.rpartition(":")[0]
    return source


def rejects_points(rejects: Mapping[tuple[str, str], tuple[int, float]]) -> list[Point]:
    """frames_rejected points from the journal's rejects table (Journal.rejects()).

    Args:
        rejects: (source, reason) -> (cumulative count, last time seen in epoch seconds).
    Returns:
        One point per source host and reason: the summed count, at the latest last_s, so
        sending an unchanged table again rewrites the same points.
    """
    merged: dict[tuple[str, str], tuple[int, float]] = {}
    for (source, reason), (count, last_s) in rejects.items():
        key = (_source_tag(str(source)), str(reason))
        n, t = merged.get(key, (0, float("-inf")))
        merged[key] = (n + _coerce("count", count, _I), max(t, _coerce("last_s", last_s, _F)))
    return [Point("frames_rejected").tag("reason", reason).tag("source", source)
            .field("count", n).time(ts_ns(t), WritePrecision.NS)
            for (source, reason), (n, t) in sorted(merged.items())]


def event_lines(rows: Iterable[Any], placements: Mapping[str, Placement],
                on_error: Callable[[Any, EventDataError], None] | None = None) -> list[str]:
    """Line protocol (ns precision) for many rows, e.g. to load InfluxDB 1.x through /write.

    A row that cannot be represented raises EventDataError, or is passed to on_error and
    skipped when on_error is given.
    """
    lines = []
    for row in rows:
        try:
            points = event_points(row, placements)
        except EventDataError as exc:
            if on_error is None:
                raise
            on_error(row, exc)
            continue
        lines.extend(p.to_line_protocol() for p in points)
    return lines

"""The derivation settings of a config as a versioned document: what the journal records.

A config version is what derivation and the report read of a collector config: per node
its machine, ideal cycle, lamp map, heartbeat and unit; the calendar; the [oee] options.
Never keys, secrets, addresses or paths: the document is safe to keep in the journal and
to show. `settings_of(config)` makes it, `settings_hash` names it, `changes` says in one
line what differs between two, and `DerivedSettings.from_doc` turns a stored one back into
what Deriver and the report take, so history is recomputed under the settings that were
valid then, whatever collector.toml says today.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

from .oee import Break, Calendar, Shift

__all__ = ["DerivedSettings", "NodeSettings", "changes", "segments", "settings_hash",
           "settings_of", "valid_at"]

_NODE_KEYS = ("machine", "ideal_cycle_s", "lamp_map", "heartbeat_s", "unit")
_OEE_KEYS = ("heartbeat_s", "oee_interval_s", "short_stop_s", "startup_window_s",
             "planned_maintenance", "lamp_change_s")


_DEFAULTS = {"heartbeat_s": 10.0, "oee_interval_s": 60.0, "short_stop_s": 300.0,
             "startup_window_s": 0.0, "planned_maintenance": "availability_loss",
             "lamp_change_s": 1.0}


def _wall_text(value: time | str) -> str:
    return value.isoformat() if isinstance(value, time) else str(value)


def settings_of(config: Any) -> dict:
    """The versioned document of a Config (or a DerivedSettings): JSON-ready, keys sorted."""
    cal = getattr(config, "calendar", None) or Calendar("UTC")
    return {
        "nodes": {str(n.node_id): {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in
                                   ((k, getattr(n, k, None)) for k in _NODE_KEYS)}
                  for n in sorted(_nodes(config), key=lambda n: n.node_id)},
        "calendar": {"time_zone": cal.tz, "planned_stops": [list(p) for p in cal.planned_stops],
                     "shifts": [{"name": s.name, "start": _wall_text(s.start),
                                 "end": _wall_text(s.end), "weekdays": list(s.weekdays),
                                 "breaks": [[_wall_text(b.start), _wall_text(b.end)]
                                            for b in s.breaks]} for s in cal.shifts]},
        **{k: getattr(config, k, _DEFAULTS[k]) for k in _OEE_KEYS},
    }


def _nodes(config: Any) -> list:
    nodes = getattr(config, "nodes", ())
    return list(nodes.values() if isinstance(nodes, Mapping) else nodes)


def settings_text(doc: dict) -> str:
    """The canonical text of a document (what is stored and hashed)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def settings_hash(doc: dict) -> str:
    """A short stable name for a document: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(settings_text(doc).encode()).hexdigest()[:16]


def changes(old: dict | None, new: dict) -> str:
    """What changed from `old` to `new`, as one line ("first version" when there is none)."""
    if old is None:
        return "first version"
    out = []
    old_nodes, new_nodes = old.get("nodes", {}), new.get("nodes", {})
    for nid in sorted(set(old_nodes) | set(new_nodes), key=int):
        a, b = old_nodes.get(nid), new_nodes.get(nid)
        if a is None:
            out.append(f"node {nid} added ({b.get('machine')})")
        elif b is None:
            out.append(f"node {nid} removed ({a.get('machine')})")
        else:
            out += [f"node {nid} {k} {a.get(k)!r} -> {b.get(k)!r}" for k in _NODE_KEYS
                    if a.get(k) != b.get(k)]
    if old.get("calendar") != new.get("calendar"):
        out.append("calendar changed")
    out += [f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in _OEE_KEYS
            if old.get(k) != new.get(k)]
    return "; ".join(out) or "no change"


def _no_key(node_id: int) -> bytes | None:
    return None


def valid_at(versions: Sequence[Any], t: float) -> Any:
    """The version valid at `t`: of those effective by then, the last recorded (a config
    given to a recompute "from WHEN" overrides every older one from WHEN on; a collector
    started later with another config overrides it from then). None before the first."""
    best = None
    for v in versions:
        if v.effective_from_s <= t and (best is None or v.version > best.version):
            best = v
    return best


def segments(versions: Sequence[Any], start_s: float,
             end_s: float) -> list[tuple[float, float, Any]]:
    """[start_s, end_s) cut where the valid version changes: (from, to, version)."""
    cuts = sorted({v.effective_from_s for v in versions if start_s < v.effective_from_s < end_s})
    out: list[tuple[float, float, Any]] = []
    for a, b in zip([start_s, *cuts], [*cuts, end_s]):
        v = valid_at(versions, a)
        if out and out[-1][2] == v:
            out[-1] = (out[-1][0], b, v)
        else:
            out.append((a, b, v))
    return out


@dataclass(frozen=True)
class NodeSettings:
    """One node of a stored version: what Deriver and the report read of a registry entry."""

    node_id: int
    machine: str
    ideal_cycle_s: float | None = None
    lamp_map: Mapping[str, str] | None = None
    heartbeat_s: float = 10.0
    unit: str = "pcs"


@dataclass(frozen=True)
class DerivedSettings:
    """A stored version as the Deriver's config (derive_api.DeriveConfig's attributes)."""

    nodes: Mapping[int, NodeSettings]
    calendar: Calendar
    heartbeat_s: float = 10.0
    oee_interval_s: float = 60.0
    short_stop_s: float = 300.0
    startup_window_s: float = 0.0
    planned_maintenance: str = "availability_loss"
    lamp_change_s: float = 1.0
    # The node keys are never stored with a version: the config given to a recompute
    # supplies them (Config.key_of), so frames are verified as they were live.
    key_of: Callable[[int], bytes | None] = _no_key

    @classmethod
    def from_doc(cls, doc: dict, key_of: Callable[[int], bytes | None] = _no_key
                 ) -> DerivedSettings:
        """Raises KeyError, TypeError, ValueError or OEEInputError on a document it cannot
        read."""
        nodes = {int(nid): NodeSettings(int(nid), **{k: n.get(k) for k in _NODE_KEYS
                                                     if n.get(k) is not None})
                 for nid, n in doc["nodes"].items()}
        c = doc["calendar"]
        shifts = tuple(Shift(s["name"], time.fromisoformat(s["start"]),
                             time.fromisoformat(s["end"]), tuple(s["weekdays"]),
                             tuple(Break(time.fromisoformat(a), time.fromisoformat(b))
                                   for a, b in s["breaks"])) for s in c["shifts"])
        cal = Calendar(c["time_zone"], shifts, tuple(tuple(p) for p in c["planned_stops"]))
        return cls(nodes, cal, **{k: doc[k] for k in _OEE_KEYS if k in doc}, key_of=key_of)

"""The derived event: what host/derive.py emits and the journal's `events` table stores."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One derived event (docs/architecture.md, "Derived events").

    `ts_s` is the wall time the event happened (node uptime mapped through the clock
    anchor), not when it was received. `data` is JSON-serialisable.
    """

    ts_s: float
    kind: str
    node_id: int | None
    machine: str | None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, ts_s: float, kind: str, node_id: int | None, machine: str | None,
                 data: str | dict | None) -> Event:
        """An Event from an `events` row (data as JSON text or a dict)."""
        if isinstance(data, str):  # (a restart decodes a million or more: no second copy)
            data = {} if not data or data == "{}" else json.loads(data)
            if type(data) is dict:
                return cls(float(ts_s), kind, node_id, machine, data)
        return cls(float(ts_s), kind, node_id, machine, dict(data or {}))
